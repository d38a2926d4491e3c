//! cgroup v2 device rules: v2 has no devices.allow/deny files, the kernel asks an eBPF program
//! of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the cgroup. This module compiles the OCI
//! rules (the same effective list v1 gets: "deny all", the spec's rules, the default
//! devices) into that program; [`crate::sys`] loads and attaches
//! it. Runs in the runtime process. Pure, unit-tested; the kernel's verifier and the effect
//! are checked by an integration test on this host's cgroup2 hierarchy.

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// dst_reg (low nibble) and src_reg (high nibble).
    pub regs: u8,
    /// Jump offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// The 8-byte wire form.
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// A device rule as the program checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// 'a', 'b' or 'c'.
    pub kind: char,
    /// Major number, None = any.
    pub major: Option<i64>,
    /// Minor number, None = any.
    pub minor: Option<i64>,
    /// Any of "rwm".
    pub access: String,
}

/// Parses a v1-style rule line ("c 1:3 rwm") as [`crate::cgroups::v1_writes`] emits it.
pub fn parse_rule(allow: bool, line: &str) -> Option<Rule> {
    let mut parts = line.split(' ');
    let kind = parts.next()?.chars().next()?;
    let (maj, min) = parts.next()?.split_once(':')?;
    let num = |s: &str| if s == "*" { None } else { s.parse().ok() };
    Some(Rule {
        allow,
        kind,
        major: num(maj),
        minor: num(min),
        access: parts.next()?.to_string(),
    })
}

/// Compiles `rules` (later rules win, as in the spec) into a device program: the last matching
/// rule decides; with no match the access is denied (the rules start from "deny all") unless
/// the list is empty.
pub fn compile(rules: &[Rule]) -> Vec<Insn> {
    // r1 = ctx: { u32 access_type (access << 16 | type); u32 major; u32 minor; }
    let mut p = vec![
        ins(LDX_W, 2, 1, 0, 0),
        ins(ALU_AND_K, 2, 0, 0, 0xffff), // r2 = type (1 block, 2 char)
        ins(LDX_W, 3, 1, 0, 0),
        ins(ALU_RSH_K, 3, 0, 0, 16), // r3 = access (1 mknod, 2 read, 4 write)
        ins(LDX_W, 4, 1, 4, 0),      // r4 = major
        ins(LDX_W, 5, 1, 8, 0),      // r5 = minor
    ];
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        match r.kind {
            'b' => block.push(ins(JNE_K, 2, 0, 0, 1)),
            'c' => block.push(ins(JNE_K, 2, 0, 0, 2)),
            _ => {}
        }
        let mask = r.access.chars().fold(0, |m, c| {
            m | match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            }
        });
        if mask != 7 {
            // Every requested bit must be in the rule: (access & !mask) == 0.
            block.push(ins(MOV64_X, 0, 3, 0, 0));
            block.push(ins(ALU_AND_K, 0, 0, 0, !mask & 7));
            block.push(ins(JNE_K, 0, 0, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(ins(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(ins(JNE_K, 5, 0, 0, m as i32));
        }
        let unconditional = block.is_empty();
        block.push(ins(MOV64_K, 0, 0, 0, i32::from(r.allow)));
        block.push(ins(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.code == JNE_K {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
        if unconditional {
            // Matches everything: what follows could never run, and the verifier refuses
            // unreachable instructions.
            return p;
        }
    }
    p.push(ins(MOV64_K, 0, 0, 0, i32::from(rules.is_empty())));
    p.push(ins(EXIT, 0, 0, 0, 0));
    p
}

/// A tiny interpreter of exactly the instructions [`compile`] emits, for the unit tests.
#[cfg(test)]
fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [(access << 16) | typ, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = p[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        match i.code {
            LDX_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
            ALU_AND_K => r[dst] = (r[dst] as u32 & i.imm as u32) as u64,
            ALU_RSH_K => r[dst] = ((r[dst] as u32) >> i.imm) as u64,
            MOV64_X => r[dst] = r[src],
            MOV64_K => r[dst] = i.imm as i64 as u64,
            JNE_K => {
                if r[dst] != i.imm as i64 as u64 {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0],
            c => panic!("unknown opcode {c:#x}"),
        }
        pc += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_matching_rule_wins_and_default_is_deny() {
        let rules = vec![
            parse_rule(false, "a *:* rwm").unwrap(),
            parse_rule(true, "c 1:3 rwm").unwrap(),
            parse_rule(true, "c 136:* rw").unwrap(),
            parse_rule(false, "c 1:3 w").unwrap(),
        ];
        let p = compile(&rules);
        let (blk, chr) = (1, 2);
        let (m, r, w) = (1, 2, 4);
        assert_eq!(run(&p, chr, r, 1, 3), 1, "read /dev/null");
        assert_eq!(
            run(&p, chr, w, 1, 3),
            0,
            "write /dev/null denied by the last rule"
        );
        assert_eq!(run(&p, chr, r | w, 136, 7), 1, "pty");
        assert_eq!(run(&p, chr, m, 136, 7), 0, "no mknod for ptys");
        assert_eq!(run(&p, blk, r, 8, 0), 0, "disk denied");
        assert_eq!(run(&p, chr, r, 1, 5), 0, "zero not listed");
        assert_eq!(run(&compile(&[]), blk, r, 8, 0), 1, "no rules: all allowed");
        let deny_all = compile(&rules[..1]);
        assert_eq!(
            deny_all.len(),
            8,
            "no unreachable tail after an unconditional rule"
        );
        assert_eq!(run(&deny_all, chr, r, 1, 3), 0);
    }

    #[test]
    fn encoding_is_little_endian_struct_bpf_insn() {
        let i = ins(JNE_K, 4, 0, 3, 136);
        assert_eq!(i.encode(), [0x55, 0x04, 3, 0, 136, 0, 0, 0]);
    }
}

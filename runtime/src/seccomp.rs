//! Seccomp filters from the OCI format (`linux.seccomp`), compiled with libseccomp into a BPF
//! program in the container's init (or exec'd process) and loaded just before the program runs.
//!
//! Like runc (1.1), a filter whose default action denies gets a stub in front of libseccomp's
//! program: a native-architecture syscall numbered above every syscall the profile names
//! fails with ENOSYS instead of the default action, so that libc falls back from syscalls
//! newer than the profile (clone3, close_range, openat2, …) as it does on an older kernel.

use std::str::FromStr;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Errors of building or loading a filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// libseccomp refused something.
    #[error("seccomp: {what}: {source}")]
    Lib {
        /// What was being done.
        what: String,
        /// The cause.
        source: libseccomp::error::SeccompError,
    },
    /// The compiled program could not be read back.
    #[error("seccomp: {0}")]
    Export(String),
    /// The kernel refused the filter.
    #[error("seccomp: loading filter: {0}")]
    Load(nix::Error),
    /// Part of the format this runtime does not implement.
    #[error("seccomp: unsupported: {0}")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, SeccompError>;

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Lib { what, source }
}

/// The libseccomp action of an OCI action.
pub fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported("SCMP_ACT_NOTIFY".into()));
        }
    })
}

/// The libseccomp comparison of an OCI argument rule. For `SCMP_CMP_MASKED_EQ`, `value` is the
/// mask and `valueTwo` the value the masked argument must equal, as runc (libseccomp-golang's
/// operand order) reads them: Docker's profile allows `clone` with `value` 0x7E020000 (the
/// namespace flags) and `valueTwo` 0.
fn compare(
    index: u32,
    o: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> ScmpArgCompare {
    let (op, datum) = match o {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0))
        }
    };
    ScmpArgCompare::new(index, op, datum)
}

/// A filter ready to load: the BPF program and the seccomp(2) flags.
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    flags: u32,
}

/// Builds the filter of `spec`: libseccomp's program behind the ENOSYS stub (see the module
/// doc). Everything that allocates or opens files happens here, so [`load`] is one syscall.
pub fn build(spec: &LinuxSeccomp) -> Result<Filter> {
    let ctx = compile(spec)?;
    let mut flags = 0u32;
    for (on, f) in [
        (ctx.get_ctl_tsync(), libc::SECCOMP_FILTER_FLAG_TSYNC),
        (ctx.get_ctl_log(), libc::SECCOMP_FILTER_FLAG_LOG),
        (ctx.get_ctl_ssb(), libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW),
    ] {
        if on.unwrap_or(false) {
            flags |= f as u32;
        }
    }
    let mem = nix::sys::memfd::memfd_create(c"seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(format!("memfd_create: {e}")))?;
    let mut file = std::fs::File::from(mem);
    ctx.export_bpf(&file)
        .map_err(lib("exporting the BPF program"))?;
    let mut bytes = Vec::new();
    {
        use std::io::{Read, Seek};
        file.rewind()
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| SeccompError::Export(format!("reading the BPF program: {e}")))?;
    }
    let mut prog = match (native_audit_arch(), permissive(spec.default_action())) {
        (Some(arch), false) => max_named_syscall(spec)
            .map(|max| enosys_stub(arch, max))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    prog.extend(bytes.chunks_exact(8).map(|c| libc::sock_filter {
        code: u16::from_ne_bytes([c[0], c[1]]),
        jt: c[2],
        jf: c[3],
        k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
    }));
    Ok(Filter { prog, flags })
}

/// Default actions that let unknown syscalls through get no ENOSYS stub (runc's list: a tracer
/// handles new syscalls itself).
fn permissive(a: LinuxSeccompAction) -> bool {
    matches!(
        a,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    )
}

/// The audit architecture of this build's target, which the stub compares with `seccomp_data`'s
/// `arch`; None where berth does not know it (no stub then).
fn native_audit_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(0xC000_003E)
    } else if cfg!(target_arch = "aarch64") {
        Some(0xC000_00B7)
    } else {
        None
    }
}

/// The highest native syscall number among the profile's names (any rule, any action).
fn max_named_syscall(spec: &LinuxSeccomp) -> Option<u32> {
    spec.syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .flat_map(|r| r.names())
        .filter_map(|n| ScmpSyscall::from_name_by_arch(n, ScmpArch::Native).ok())
        .filter_map(|s| u32::try_from(s.as_raw_syscall()).ok())
        .max()
}

/// The stub: for the native architecture, a syscall number above `max` returns ENOSYS; x32
/// numbers (bit 30) and other architectures go on to libseccomp's program, which follows.
pub fn enosys_stub(arch: u32, max: u32) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let i = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        i(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        i(JEQ_K, 0, 4, arch),
        i(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        i(JGE_K, 2, 0, 0x4000_0000),
        i(JGT_K, 0, 1, max),
        i(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ]
}

/// Compiles `spec` with libseccomp (not loaded). Syscall names unknown to libseccomp are skipped,
/// as runc does, so one profile serves several kernels. The no_new_privs bit is left to the
/// caller (the spec's `noNewPrivileges` decides it, not the filter).
pub fn compile(spec: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(spec.default_action(), spec.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("creating filter"))?;
    ctx.set_ctl_nnp(false)
        .map_err(lib("clearing the nnp attribute"))?;
    for arch in spec.architectures().as_deref().unwrap_or_default() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let name = name.unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(lib(format!("architecture {name}")))?;
        ctx.add_arch(a)
            .map_err(lib(format!("adding architecture {name}")))?;
    }
    for f in spec.flags().as_deref().unwrap_or_default() {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                ctx.set_ctl_log(true)
                    .map_err(lib("flag SECCOMP_FILTER_FLAG_LOG"))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true)
                    .map_err(lib("flag SECCOMP_FILTER_FLAG_SPEC_ALLOW"))?;
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                ctx.set_ctl_tsync(true)
                    .map_err(lib("flag SECCOMP_FILTER_FLAG_TSYNC"))?;
            }
            // Changes how a notifying filter's supervisor is waited for; SCMP_ACT_NOTIFY is
            // refused above, so there is nothing to wait for.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {}
        }
    }
    for rule in spec.syscalls().as_deref().unwrap_or_default() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue; // libseccomp rejects rules that repeat the default action
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| compare(a.index() as u32, a.op(), a.value(), a.value_two()))
            .collect();
        // Several conditions on one argument cannot be ANDed by libseccomp; like runc, they
        // become one rule each (ORed).
        let mut idx: Vec<u32> = rule
            .args()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|a| a.index() as u32)
            .collect();
        idx.sort_unstable();
        let split = idx.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let what = || format!("rule for {name}");
            if conds.is_empty() {
                ctx.add_rule(act, sc).map_err(lib(what()))?;
            } else if split {
                for c in &conds {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map_err(lib(what()))?;
                }
            } else {
                ctx.add_rule_conditional(act, sc, &conds)
                    .map_err(lib(what()))?;
            }
        }
    }
    Ok(ctx)
}

/// Loads a built filter into the calling process (one seccomp(2) call, nothing allocated).
pub fn load(f: &Filter) -> Result<()> {
    crate::sys::seccomp_set_filter(f.flags, &f.prog).map_err(SeccompError::Load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_profile_with_args_flags_and_unknown_names() {
        let spec: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],"flags":["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls":[{"names":["read","write","no_such_syscall"],"action":"SCMP_ACT_ALLOW"},
              {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                {"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
              {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["getpid"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .unwrap();
        let ctx = compile(&spec).unwrap();
        assert!(ctx.get_ctl_log().unwrap());
        assert!(!ctx.get_ctl_nnp().unwrap());
        assert_eq!(ctx.get_act_default().unwrap(), ScmpAction::Errno(1));
    }

    /// The ENOSYS stub goes in front of denying profiles only, with the highest named syscall.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn denying_profiles_get_the_enosys_stub_above_their_newest_syscall() {
        let deny: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
              {"names":["read","openat2","no_such_syscall"],"action":"SCMP_ACT_ALLOW"},
              {"names":["getpid"],"action":"SCMP_ACT_KILL"}]}"#,
        )
        .unwrap();
        assert_eq!(max_named_syscall(&deny), Some(437));
        let f = build(&deny).unwrap();
        let stub = enosys_stub(0xC000_003E, 437);
        assert!(f.prog.len() > stub.len());
        let key = |i: &libc::sock_filter| (i.code, i.jt, i.jf, i.k);
        assert!(f.prog.iter().zip(&stub).all(|(a, b)| key(a) == key(b)));
        let allow: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let f = build(&allow).unwrap();
        assert!(!f.prog.iter().any(|i| key(i) == key(&stub[5])));
    }

    #[test]
    fn notify_is_refused() {
        let spec: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).unwrap();
        assert!(matches!(compile(&spec), Err(SeccompError::Unsupported(_))));
    }
}

//! Seccomp filters from the OCI format (`linux.seccomp`), compiled and loaded with libseccomp in
//! the container's init (or exec'd process) just before the program runs.

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

fn op(o: LinuxSeccompOperator, value_two: Option<u64>) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value_two.unwrap_or(0)),
    }
}

/// Compiles `spec` into a filter (not loaded). Syscall names unknown to libseccomp are skipped,
/// as runc does, so one profile serves several kernels. The no_new_privs bit is left to the
/// caller (the spec's `noNewPrivileges` decides it, not the filter).
pub fn build(spec: &LinuxSeccomp) -> Result<ScmpFilterContext> {
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
            .map(|a| ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value_two()), a.value()))
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

/// Loads a compiled filter into the calling process.
pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(lib("loading filter"))
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
        let ctx = build(&spec).unwrap();
        assert!(ctx.get_ctl_log().unwrap());
        assert!(!ctx.get_ctl_nnp().unwrap());
        assert_eq!(ctx.get_act_default().unwrap(), ScmpAction::Errno(1));
    }

    #[test]
    fn notify_is_refused() {
        let spec: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).unwrap();
        assert!(matches!(build(&spec), Err(SeccompError::Unsupported(_))));
    }
}

//! The container processes the runtime clones, and what they share. Roles:
//! - [`init`]: the container's init, cloned by `create` straight from the caller (a direct child,
//!   PID 1 of its new PID namespace); sets up the container, then waits for `start` and execs.
//! - [`tenant`]: a process `exec` adds to a running container; joins its namespaces and cgroup.
//!
//! Both talk to the runtime over [`channel`]. Neither ever execs the runtime binary: they are
//! fork-like clones that exec only the user's program (see [`crate::sys::clone`] and the
//! CVE-2019-5736 notes in [`init`]).

pub mod channel;
pub mod init;
pub mod tenant;

use std::path::{Path, PathBuf};

use nix::sys::resource::Resource;
use oci_spec::runtime::{PosixRlimitType, Process, User};

/// Errors of setting up a container process; the message goes back to the runtime.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A step failed.
    #[error("{what}: {source}")]
    Sys {
        /// The step and its object.
        what: String,
        /// The cause.
        source: nix::Error,
    },
    /// A step failed with another error type.
    #[error("{0}")]
    Other(String),
}

/// Wraps a nix error with what was being done.
pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Sys { what, source }
}

impl From<crate::rootfs::RootfsError> for ProcessError {
    fn from(e: crate::rootfs::RootfsError) -> Self {
        ProcessError::Other(e.to_string())
    }
}
impl From<crate::capabilities::CapsError> for ProcessError {
    fn from(e: crate::capabilities::CapsError) -> Self {
        ProcessError::Other(e.to_string())
    }
}
impl From<crate::seccomp::SeccompError> for ProcessError {
    fn from(e: crate::seccomp::SeccompError) -> Self {
        ProcessError::Other(e.to_string())
    }
}
impl From<crate::console::ConsoleError> for ProcessError {
    fn from(e: crate::console::ConsoleError) -> Self {
        ProcessError::Other(e.to_string())
    }
}
impl From<crate::hooks::HookError> for ProcessError {
    fn from(e: crate::hooks::HookError) -> Self {
        ProcessError::Other(e.to_string())
    }
}
impl From<channel::ChannelError> for ProcessError {
    fn from(e: channel::ChannelError) -> Self {
        ProcessError::Other(e.to_string())
    }
}

fn resource(t: PosixRlimitType) -> Option<Resource> {
    use PosixRlimitType::*;
    Some(match t {
        RlimitCpu => Resource::RLIMIT_CPU,
        RlimitFsize => Resource::RLIMIT_FSIZE,
        RlimitData => Resource::RLIMIT_DATA,
        RlimitStack => Resource::RLIMIT_STACK,
        RlimitCore => Resource::RLIMIT_CORE,
        RlimitRss => Resource::RLIMIT_RSS,
        RlimitNproc => Resource::RLIMIT_NPROC,
        RlimitNofile => Resource::RLIMIT_NOFILE,
        RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        RlimitAs => Resource::RLIMIT_AS,
        RlimitLocks => Resource::RLIMIT_LOCKS,
        RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        RlimitNice => Resource::RLIMIT_NICE,
        RlimitRtprio => Resource::RLIMIT_RTPRIO,
        RlimitRttime => Resource::RLIMIT_RTTIME,
    })
}

/// Applies `process.rlimits` (before the user switch: raising needs CAP_SYS_RESOURCE).
pub fn apply_rlimits(p: &Process) -> Result<(), ProcessError> {
    for r in p.rlimits().as_deref().unwrap_or_default() {
        if let Some(res) = resource(r.typ()) {
            nix::sys::resource::setrlimit(res, r.soft(), r.hard())
                .map_err(sys(format!("setrlimit {:?}", r.typ())))?;
        }
    }
    Ok(())
}

/// Applies `process.scheduler` and `process.ioPriority` (before the user switch: raising
/// them needs CAP_SYS_NICE / CAP_SYS_ADMIN).
pub fn apply_scheduling(p: &Process) -> Result<(), ProcessError> {
    use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerFlag, LinuxSchedulerPolicy};
    if let Some(io) = p.io_priority() {
        let class = match io.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        crate::sys::set_io_priority(class, io.priority() as u32).map_err(sys("ioprio_set"))?;
    }
    if let Some(s) = p.scheduler() {
        let policy = match s.policy() {
            LinuxSchedulerPolicy::SchedOther => 0,
            LinuxSchedulerPolicy::SchedFifo => 1,
            LinuxSchedulerPolicy::SchedRr => 2,
            LinuxSchedulerPolicy::SchedBatch => 3,
            LinuxSchedulerPolicy::SchedIso => 4,
            LinuxSchedulerPolicy::SchedIdle => 5,
            LinuxSchedulerPolicy::SchedDeadline => 6,
        };
        let flags = s
            .flags()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .fold(0u64, |f, x| {
                f | match x {
                    LinuxSchedulerFlag::SchedResetOnFork => 0x01,
                    LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
                    LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
                    LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
                    LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
                    LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
                    LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
                }
            });
        let mut attr = crate::sys::SchedAttr {
            policy,
            flags,
            nice: s.nice().unwrap_or(0),
            priority: s.priority().unwrap_or(0) as u32,
            runtime: s.runtime().unwrap_or(0),
            deadline: s.deadline().unwrap_or(0),
            period: s.period().unwrap_or(0),
            ..Default::default()
        };
        crate::sys::sched_setattr(&mut attr).map_err(sys("sched_setattr"))?;
    }
    Ok(())
}

/// Writes `process.oomScoreAdj` to our own proc entry.
pub fn apply_oom_score_adj(p: &Process) -> Result<(), ProcessError> {
    if let Some(v) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", v.to_string())
            .map_err(|e| ProcessError::Other(format!("writing oom_score_adj {v}: {e}")))?;
    }
    Ok(())
}

/// Cuts the bounding set, switches to `user` keeping the permitted capabilities across the uid
/// change, then sets the capability sets the spec asks for.
pub fn switch_user(p: &Process, in_user_ns_without_setgroups: bool) -> Result<(), ProcessError> {
    let user: &User = p.user();
    give_stdio_to(user.uid())?;
    if let Some(c) = p.capabilities() {
        crate::capabilities::apply_bounding(c)?;
    }
    nix::sys::prctl::set_keepcaps(true).map_err(sys("PR_SET_KEEPCAPS"))?;
    if !in_user_ns_without_setgroups {
        let groups: Vec<nix::unistd::Gid> = user
            .additional_gids()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups).map_err(sys("setgroups"))?;
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).map_err(sys(format!("setresgid {gid}")))?;
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).map_err(sys(format!("setresuid {uid}")))?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys("PR_SET_KEEPCAPS"))?;
    if let Some(c) = p.capabilities() {
        crate::capabilities::apply_sets(c)?;
    }
    Ok(())
}

/// Makes the container's user own its stdio (the pty slave with a terminal, else what the
/// caller lent), so that it can reopen /dev/stdout or use its terminal, as runc does: only the
/// owner changes (the tty group stays), /dev/null is left alone, and a file whose owner or
/// group the user namespace does not map (EINVAL, EPERM) is skipped.
fn give_stdio_to(uid: u32) -> Result<(), ProcessError> {
    use std::os::fd::AsFd;
    let null = nix::sys::stat::stat("/dev/null").ok().map(|s| s.st_rdev);
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let fds = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    for (n, fd) in fds.into_iter().enumerate() {
        let Ok(st) = nix::sys::stat::fstat(fd) else {
            continue;
        };
        if st.st_uid == uid || Some(st.st_rdev) == null {
            continue;
        }
        match nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(st.st_gid)),
        ) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::EPERM) => {}
            Err(e) => return Err(sys(format!("giving stdio fd {n} to uid {uid}"))(e)),
        }
    }
    Ok(())
}

/// The process environment: the spec's, minus `NOTIFY_SOCKET` unless kept, plus `HOME` (from
/// the container's /etc/passwd, else `/`) when missing.
pub fn environment(p: &Process, keep_notify_socket: bool) -> Vec<String> {
    let mut env: Vec<String> = p
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|e| keep_notify_socket || !e.starts_with("NOTIFY_SOCKET="))
        .cloned()
        .collect();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            home_of(p.user().uid()).unwrap_or_else(|| "/".into())
        ));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// Finds `arg0` as execvp would, in the PATH of `env` (the container's, not ours).
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if nix::unistd::access(&cand, nix::unistd::AccessFlags::X_OK).is_ok() && cand.is_file() {
            return Ok(cand);
        }
    }
    Err(ProcessError::Other(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}

/// The container's program, ready to exec (see [`crate::sys::ExecImage`]).
pub fn exec_image(
    path: &Path,
    args: &[String],
    env: &[String],
) -> Result<crate::sys::ExecImage, ProcessError> {
    crate::sys::ExecImage::new(path, args, env).map_err(sys(format!(
        "exec {}: a NUL byte in the path, args or env",
        path.display()
    )))
}

/// The last steps before the seccomp filter and exec, done while every system call is still
/// allowed: the program must not inherit the runtime's signal dispositions and masks, nor any
/// fd above the preserved ones.
pub fn prepare_exec(preserve_fds: u32) -> Result<(), ProcessError> {
    crate::sys::reset_signals();
    crate::sys::cloexec_from(3 + preserve_fds).map_err(sys("marking fds close-on-exec"))?;
    #[allow(unsafe_code)]
    // SAFETY: `preserve_fds` is CreateOptions/ExecOptions::preserve_fds, the fds 3.. the caller
    // lent to the container; everything of the runtime's is close-on-exec since the line above.
    unsafe {
        crate::sys::keep_fds(preserve_fds)
    };
    Ok(())
}

/// Replaces this process with the container's program. Only returns on failure, with runc's
/// wording (`exec /bin/x: exec format error`).
pub fn exec(image: &crate::sys::ExecImage, path: &Path) -> ProcessError {
    let e = image.exec();
    ProcessError::Other(format!(
        "exec {}: {}",
        path.display(),
        e.desc().to_lowercase()
    ))
}

/// Duplicates the caller-given stdio fds onto 0, 1, 2.
pub fn dup_stdio(stdio: Option<[std::os::fd::RawFd; 3]>) -> Result<(), ProcessError> {
    if let Some(fds) = stdio {
        for (target, fd) in fds.into_iter().enumerate() {
            if fd as usize == target {
                continue;
            }
            #[allow(unsafe_code)]
            // SAFETY: runs in the freshly cloned child, where no Rust object owns 0, 1 or 2.
            let r = unsafe { crate::sys::dup_onto(fd, target as i32) };
            r.map_err(sys(format!("dup2 of stdio fd {fd}")))?;
        }
    }
    Ok(())
}

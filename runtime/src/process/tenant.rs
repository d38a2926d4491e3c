//! A process `exec` adds to a running container: runs in the process cloned from the caller
//! (inside the container's PID namespace, which the runtime entered for its children around the
//! clone). Moves itself into the container's cgroup, joins the container's other namespaces,
//! applies the process's user, capabilities, rlimits, no_new_privs and the container's
//! seccomp filter, then execs. Non-dumpable from the first instruction (see [`super::init`] on
//! CVE-2019-5736).

use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::channel::{Channel, Message};
use super::{ProcessError, sys};

/// What the exec'd process needs, prepared before the clone.
pub struct TenantArgs<'a> {
    /// The process to run.
    pub process: &'a Process,
    /// The container's seccomp profile.
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// How the process puts itself into the container's cgroup.
    pub join: &'a crate::cgroups::Join,
    /// The clone already placed it in the v2 cgroup.
    pub in_cgroup: bool,
    /// Namespaces to join, user first, mount last.
    pub join_fds: Vec<(CloneFlags, OwnedFd)>,
    /// The child end of the channel.
    pub chan: &'a Channel,
    /// The console socket, when the process has a terminal.
    pub console: Option<&'a OwnedFd>,
    /// Caller-lent stdio.
    pub stdio: Option<[RawFd; 3]>,
    /// How many fds above stdio pass to the program.
    pub preserve_fds: u32,
    /// Keep NOTIFY_SOCKET.
    pub keep_notify_socket: bool,
}

/// Runs the exec'd process's set-up and execs; never returns. Errors go over the channel; a
/// successful exec closes the channel (close-on-exec), which the runtime takes as success.
pub fn run(a: TenantArgs<'_>) -> ! {
    let e = setup(&a);
    let _ = a.chan.send(&Message::Error(e.to_string()));
    crate::sys::exit_now(1);
}

fn setup(a: &TenantArgs<'_>) -> ProcessError {
    match try_setup(a) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_setup(a: &TenantArgs<'_>) -> Result<std::convert::Infallible, ProcessError> {
    nix::sys::prctl::set_dumpable(false).map_err(sys("PR_SET_DUMPABLE"))?;
    // Into the container's cgroup before joining its cgroup namespace (see `Join`).
    a.join
        .join_self(a.in_cgroup)
        .map_err(|e| ProcessError::Other(format!("joining the container's cgroup: {e}")))?;
    super::dup_stdio(a.stdio)?;
    let mut in_user_ns = false;
    for (flag, fd) in &a.join_fds {
        nix::sched::setns(fd.as_fd(), *flag).map_err(sys(format!(
            "joining {} namespace",
            crate::namespaces::proc_name(*flag)
        )))?;
        in_user_ns |= *flag == CloneFlags::CLONE_NEWUSER;
    }
    let p = a.process;
    super::apply_rlimits(p)?;
    super::apply_oom_score_adj(p)?;
    super::apply_scheduling(p)?;
    // Its own session and process group, as runc gives it (console set-up does it for a
    // terminal).
    if p.terminal() != Some(true) {
        nix::unistd::setsid().map_err(sys("setsid"))?;
    }
    if p.terminal() == Some(true) {
        let sock = a.console.ok_or_else(|| {
            ProcessError::Other("terminal requested without a console socket".into())
        })?;
        let size = p
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::console::setup(sock, size, false)?;
    }
    nix::unistd::chdir(p.cwd()).map_err(sys(format!("chdir to cwd {:?}", p.cwd())))?;
    let env = super::environment(p, a.keep_notify_socket);
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err(ProcessError::Other("args must not be empty".into()));
    }
    let nnp = p.no_new_privileges() == Some(true);
    let filter = a.seccomp.map(crate::seccomp::build).transpose()?;
    // Before any filter is loaded: it may deny close_range, fcntl or rt_sigaction.
    super::prepare_exec(a.preserve_fds)?;
    if !nnp && let Some(f) = &filter {
        crate::seccomp::load(f)?;
    }
    let setgroups_denied = in_user_ns
        && std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    super::switch_user(p, setgroups_denied)?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    }
    let umask = p.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    let path = super::find_executable(&args[0], &env)?;
    let image = super::exec_image(&path, &args, &env)?;
    // Only the filter load and execve from here: the filter may deny anything else.
    if nnp && let Some(f) = &filter {
        crate::seccomp::load(f)?;
    }
    Err(super::exec(&image, &path))
}

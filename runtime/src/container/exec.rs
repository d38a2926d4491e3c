//! `exec`: runs in the caller. Clones a process (a direct child of the caller) into a running
//! container: the PID namespace is entered for the clone by the caller around it, the others
//! by the child; the caller moves it into the cgroup, then the child applies the process spec
//! and execs. The exec closing the channel tells the caller it worked.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use super::{Status, load, write_atomic};
use crate::process::channel::{self, ChannelError, Message};
use crate::process::tenant::{TenantArgs, run as tenant_run};
use crate::sys::{Forked, clone};
use crate::{Error, ExecOptions, Result, Runtime};

const JOIN_ORDER: [CloneFlags; 6] = [
    CloneFlags::CLONE_NEWUSER,
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWNET,
    CloneFlags::CLONE_NEWCGROUP,
    CloneFlags::CLONE_NEWNS,
];

fn ns_file(pid: i32, f: CloneFlags) -> String {
    format!("/proc/{pid}/ns/{}", crate::namespaces::proc_name(f))
}

fn open(path: &str) -> Result<OwnedFd> {
    nix::fcntl::open(
        Path::new(path),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("opening {path}"), e))
}

fn same_ns(a: &str, b: &str) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}

/// See [`Runtime::exec`], whose contract (a single-threaded caller) this relies on: crate-only,
/// so that it is the one way in.
pub(crate) fn exec(rt: &Runtime, id: &str, process: &Process, opts: &ExecOptions) -> Result<i32> {
    let c = load(rt, id)?;
    match c.status() {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => {
            return Err(Error::State(
                "cannot exec in a paused container (use --ignore-paused to override)".into(),
            ));
        }
        _ => return Err(Error::State("cannot exec in a stopped container".into())),
    }
    // What the process does not say, it takes from the container's process.
    let mut p = process.clone();
    let base = c.p.spec.process().as_ref();
    if p.capabilities().is_none() {
        p.set_capabilities(base.and_then(|b| b.capabilities().clone()));
    }
    if p.no_new_privileges().is_none() {
        p.set_no_new_privileges(base.and_then(|b| b.no_new_privileges()));
    }
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidProcess("args must not be empty"));
    }
    if p.terminal() == Some(true) && opts.console_socket.is_none() {
        return Err(Error::InvalidProcess("a terminal needs a console socket"));
    }
    let pid = c.p.pid;
    // A pidfd pins the init while we read its namespaces.
    let _pin = c
        .init_pidfd()
        .ok_or_else(|| Error::State("container not running".into()))?;
    let mut join_fds = Vec::new();
    for f in JOIN_ORDER {
        let theirs = ns_file(pid, f);
        if !same_ns(
            &theirs,
            &format!("/proc/self/ns/{}", crate::namespaces::proc_name(f)),
        ) {
            join_fds.push((f, open(&theirs)?));
        }
    }
    let pid_ns = ns_file(pid, CloneFlags::CLONE_NEWPID);
    let pid_restore = if same_ns(&pid_ns, "/proc/self/ns/pid") {
        None
    } else {
        let own = open("/proc/self/ns/pid")?;
        let target = open(&pid_ns)?;
        nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::sys(format!("joining pid namespace of container {id}"), e))?;
        Some(own)
    };
    let console = match (&opts.console_socket, p.terminal()) {
        (Some(path), Some(true)) => Some(crate::console::connect(path)?),
        _ => None,
    };
    let seccomp = c.p.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let join = c.p.cgroup.sub(&opts.sub_cgroups)?.prepare_join()?;
    let (parent_end, child_end) = channel::pair()?;
    crate::capabilities::warn_unraisable(p.capabilities().as_ref());
    crate::debug!(
        "container {id}: cloning a process to exec {:?}",
        p.args().as_deref().unwrap_or_default()
    );
    #[allow(unsafe_code)]
    // SAFETY: the runtime is single-threaded, which `Runtime::exec`'s callers guarantee.
    let forked = unsafe { clone(CloneFlags::empty(), join.clone_into()) };
    if let Some(own) = &pid_restore {
        let _ = nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWPID);
    }
    let (child, pidfd) = match forked.map_err(|e| Error::sys("clone of the exec process", e))? {
        Forked::Child { in_cgroup } => {
            // The caller's end must close here so the child notices if the caller dies.
            drop(parent_end);
            tenant_run(TenantArgs {
                join: &join,
                in_cgroup,
                process: &p,
                seccomp,
                join_fds,
                chan: &child_end,
                console: console.as_ref(),
                stdio: opts.stdio,
                preserve_fds: opts.preserve_fds,
                keep_notify_socket: opts.keep_notify_socket,
            })
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // Only the child may hold its end: its exec (close-on-exec) must read as EOF here.
    drop(child_end);
    drop(console);
    let fail = |e: Error| {
        super::kill_and_reap(child, pidfd.as_ref());
        e
    };
    drop(join);
    crate::debug!("container {id}: process cloned, pid {child}");
    match parent_end.recv_within(super::SETUP_TIMEOUT) {
        Err(ChannelError::Closed) => crate::debug!("container {id}: pid {child} executed"),
        Ok(Message::Error(e)) => return Err(fail(Error::Init(e))),
        Ok(got) => {
            return Err(fail(
                ChannelError::Unexpected {
                    expected: "the exec or an error",
                    got,
                }
                .into(),
            ));
        }
        Err(e) => return Err(fail(e.into())),
    }
    if let Some(pf) = &opts.pid_file {
        write_atomic(pf, child.to_string().as_bytes())?;
        crate::debug!("container {id}: pid file {} written", pf.display());
    }
    Ok(child.as_raw())
}

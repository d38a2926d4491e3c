//! `delete`: runs in the runtime process. Stops what still runs (created containers always,
//! running ones with `force`), waits for the processes to be gone, runs poststop hooks and
//! removes the cgroup and the state directory. Mounts need no work: they live in the
//! container's mount namespace, which dies with its last process, and none propagated out (the
//! init made its tree a slave before mounting).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Container, Status, load};
use crate::{Error, Result, Runtime};

/// See [`Runtime::delete`].
pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<()> {
    let c = load(rt, id)?;
    let status = c.status();
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        s => {
            return Err(Error::State(format!(
                "cannot delete container {id} that is not stopped: {s}"
            )));
        }
    }
    if status != Status::Stopped {
        crate::debug!("container {id}: {status}, killing its processes");
        stop(&c, status)?;
    }
    destroy(&c)?;
    crate::debug!("container {id}: deleted");
    Ok(())
}

/// Kills every process of the container and waits until the init is gone.
fn stop(c: &Container, status: Status) -> Result<()> {
    let pidfd = c.init_pidfd();
    if let Some(fd) = &pidfd {
        let _ = crate::sys::pidfd_send_signal(fd, libc::SIGKILL);
    }
    if !c.p.own_pid_ns || status == Status::Paused {
        let _ = c.p.cgroup.kill_all(libc::SIGKILL);
    }
    if status == Status::Paused {
        let _ = c.p.cgroup.freeze(false);
    }
    if let Some(fd) = &pidfd {
        // A pidfd turns readable when the process exits (a zombie counts), whoever reaps it.
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(10_000u16));
    }
    Ok(())
}

fn destroy(c: &Container) -> Result<()> {
    // Processes outside the init's PID namespace may still be exiting, and a process of the
    // host may have been put into the container's cgroup (or a sub-cgroup of it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.pids().map(|p| !p.is_empty()).unwrap_or(false) && Instant::now() < deadline {
        let _ = c.p.cgroup.kill_all(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(1));
    }
    // While a cgroup remains, so does the state: a later delete can try again.
    c.p.cgroup.destroy()?;
    crate::debug!("container {}: cgroup removed", c.p.id);
    if let Some(h) =
        c.p.spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststop().as_deref())
        && let Err(e) = super::run_hooks(&c.p.id, "poststop", h, &c.state_json(Status::Stopped))
    {
        crate::warn!("{e}");
    }
    match std::fs::remove_dir_all(&c.dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", c.dir.display()), e))
        }
        _ => Ok(()),
    }
}

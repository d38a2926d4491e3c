//! `kill`: runs in the runtime process. Signals the init through a pidfd (never a recycled PID)
//! or, with `all`, every process of the container's cgroup.

use super::{Status, load};
use crate::{Error, Result, Runtime};

/// See [`Runtime::kill`].
pub fn kill(rt: &Runtime, id: &str, signal: i32, all: bool) -> Result<()> {
    let c = load(rt, id)?;
    let status = c.status();
    if all {
        crate::debug!("container {id}: signal {signal} to every process of its cgroup");
        c.p.cgroup.kill_all(signal)?;
        if status == Status::Paused && signal == libc::SIGKILL {
            let _ = c.p.cgroup.freeze(false);
        }
        return Ok(());
    }
    if status == Status::Stopped {
        return Err(Error::State("container not running".into()));
    }
    let fd = c
        .init_pidfd()
        .ok_or_else(|| Error::State("container not running".into()))?;
    crate::debug!("container {id}: signal {signal} to init pid {}", c.p.pid);
    crate::sys::pidfd_send_signal(&fd, signal)
        .map_err(|e| Error::sys(format!("signalling container {id} init"), e))?;
    if status == Status::Paused && signal == libc::SIGKILL {
        let _ = c.p.cgroup.freeze(false);
    }
    Ok(())
}

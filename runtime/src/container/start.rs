//! `start`: runs in the runtime process. Releases a created container's init by writing to its
//! exec fifo, then runs the poststart hooks.

use std::io::Write;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{Status, load};
use crate::{Error, Result, Runtime};

/// See [`Runtime::start`].
pub fn start(rt: &Runtime, id: &str) -> Result<()> {
    let c = load(rt, id)?;
    match c.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::State(
                "cannot start a container that has stopped".into(),
            ));
        }
        Status::Running | Status::Paused => {
            return Err(Error::State(
                "cannot start an already running container".into(),
            ));
        }
        Status::Creating => {
            return Err(Error::State(
                "cannot start a container that is being created".into(),
            ));
        }
    }
    let fifo = c.dir.join("exec.fifo");
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("opening {}", fifo.display()), e))?;
    std::fs::File::from(fd)
        .write_all(b"0")
        .map_err(|e| Error::io(format!("writing {}", fifo.display()), e))?;
    let _ = std::fs::remove_file(&fifo);
    if let Some(h) =
        c.p.spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().as_deref())
        && let Err(e) = crate::hooks::run("poststart", h, &c.state_json(Status::Running))
    {
        // The spec: a failing poststart hook is logged, the container keeps running.
        eprintln!("berth-runtime: warning: {e}");
    }
    Ok(())
}

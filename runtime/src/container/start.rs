//! `start`: runs in the runtime process. Releases a created container's init by writing to its
//! exec fifo, then runs the poststart hooks (a failing one stops the container again).

use std::io::Write;
use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

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
    let mut f = std::fs::File::from(fd);
    f.write_all(b"0")
        .map_err(|e| Error::io(format!("writing {}", fifo.display()), e))?;
    let _ = std::fs::remove_file(&fifo);
    crate::debug!("container {id}: init released through {}", fifo.display());
    // The init's fifo fd is close-on-exec: once no reader is left (POLLERR on our write end)
    // the user's program runs, so `start` returns with the container really running.
    let mut fds = [PollFd::new(f.as_fd(), PollFlags::empty())];
    let _ = poll(&mut fds, PollTimeout::from(10_000u16));
    // The init failed instead (a startContainer hook, the seccomp load, the exec): it wrote
    // why before exiting, and so before the fifo lost its reader.
    let late = c.dir.join(super::create::LATE_ERROR_FILE);
    if let Ok(msg) = std::fs::read_to_string(&late)
        && !msg.is_empty()
    {
        crate::debug!("container {id}: init failed before the program ran");
        return Err(Error::Init(msg));
    }
    if let Some(h) =
        c.p.spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().as_deref())
        && let Err(e) = super::run_hooks(id, "poststart", h, &c.state_json(Status::Running))
    {
        // The spec: a failing poststart hook is an error and stops the container (`delete`
        // then destroys it and runs the poststop hooks).
        if let Some(fd) = c.init_pidfd() {
            let _ = crate::sys::pidfd_send_signal(&fd, libc::SIGKILL);
        }
        let _ = c.p.cgroup.kill_all(libc::SIGKILL);
        return Err(e.into());
    }
    crate::debug!("container {id}: started (init pid {})", c.p.pid);
    Ok(())
}

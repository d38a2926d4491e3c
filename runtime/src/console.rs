//! Terminals for container processes: the runtime connects to the caller's console socket
//! before the clone; the container process (init or exec'd) opens a pty inside the container's
//! own devpts, sends the master over that socket with SCM_RIGHTS (as runc does: one message,
//! the fd plus a name as payload) and makes the slave its controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// Errors of terminal set-up.
#[derive(Debug, thiserror::Error)]
#[error("console: {what}: {source}")]
pub struct ConsoleError {
    what: String,
    source: nix::Error,
}

fn err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ConsoleError {
    let what = what.into();
    move |source| ConsoleError { what, source }
}

/// Connects to the console socket at `path` (in the runtime, before the clone: the container
/// cannot reach host paths afterwards).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|e| ConsoleError {
            what: format!("connecting to console socket {}", path.display()),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })
}

/// In the container process: opens a pty, sends its master over `socket`, and makes the slave
/// the controlling terminal and stdin/stdout/stderr. With `console`, the slave is also bind
/// mounted on /dev/console (the container's init only).
pub fn setup(
    socket: &OwnedFd,
    size: Option<(u16, u16)>,
    console: bool,
) -> Result<(), ConsoleError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(err("opening /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(err("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(err("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(err("ptsname"))?;
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err(format!("opening {name}")))?;
    if let Some((rows, cols)) = size {
        crate::sys::set_winsize(slave.as_raw_fd(), rows, cols)
            .map_err(err("setting window size"))?;
    }
    if console {
        let dev_console = Path::new("/dev/console");
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dev_console);
        nix::mount::mount(
            Some(Path::new(&name)),
            dev_console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err("bind mounting the pty on /dev/console"))?;
    }
    let fds = [master.as_raw_fd()];
    let payload = b"/dev/ptmx";
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(err("sending the pty master to the console socket"))?;
    drop(master);
    nix::unistd::setsid().map_err(err("setsid"))?;
    crate::sys::set_controlling_tty(slave.as_raw_fd()).map_err(err("TIOCSCTTY"))?;
    nix::unistd::dup2_stdin(&slave).map_err(err("dup2 of the pty slave"))?;
    nix::unistd::dup2_stdout(&slave).map_err(err("dup2 of the pty slave"))?;
    nix::unistd::dup2_stderr(&slave).map_err(err("dup2 of the pty slave"))?;
    Ok(())
}

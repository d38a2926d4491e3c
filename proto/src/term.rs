//! Terminal window sizes on both ends of a tty exec: the client reads its own terminal's size
//! and, when it changes (SIGWINCH), sets it on the pty master it received; the shim applies the
//! size an exec or resize request carries. Runs in the `berth` CLI, tests and berth-shim.
#![allow(unsafe_code)]

use crate::protocol::ConsoleSize;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

impl ConsoleSize {
    /// The window size of terminal `fd`; `None` when it is not a terminal or has no size yet.
    pub fn of_terminal(fd: BorrowedFd<'_>) -> Option<Self> {
        let mut ws = nix::pty::Winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a local
        // of that type valid for the call; `fd` is open for the call's duration.
        let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCGWINSZ, &mut ws) };
        (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(ConsoleSize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        })
    }

    /// Sets this size on terminal `fd` (a pty master or slave): the kernel sends SIGWINCH to
    /// the terminal's foreground process group.
    pub fn set_on(self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let ws = nix::pty::Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ only reads one `winsize` through the pointer, a local valid for the
        // call; `fd` is open for the call's duration.
        let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn sizes_travel_through_a_pty() {
        let pty = nix::pty::openpty(None, None).unwrap();
        assert_eq!(ConsoleSize::of_terminal(pty.slave.as_fd()), None);
        let s = ConsoleSize {
            rows: 37,
            cols: 101,
        };
        s.set_on(pty.master.as_fd()).unwrap();
        assert_eq!(ConsoleSize::of_terminal(pty.slave.as_fd()), Some(s));
        let f = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(ConsoleSize::of_terminal(f.as_fd()), None);
    }
}

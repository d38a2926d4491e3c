//! Lines of JSON on a unix stream socket, with file descriptors passed alongside (SCM_RIGHTS).
//! Runs in both ends of the control socket (berthd, the CLI, tests; berth-shim). The one place
//! of this crate that adopts raw fds, hence allowed `unsafe`.
#![allow(unsafe_code)]

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::Serialize;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Sends one JSON line, with `fds` attached (SCM_RIGHTS) when not empty.
pub fn send_line<T: Serialize>(sock: RawFd, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut off = 0;
    while off < line.len() {
        let iov = [IoSlice::new(&line[off..])];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cm: &[ControlMessage] = if off == 0 && !fds.is_empty() {
            &cmsg
        } else {
            &[]
        };
        off += sendmsg::<()>(sock, &iov, cm, MsgFlags::MSG_NOSIGNAL, None)?;
    }
    Ok(())
}

/// Reads into `buf`, collecting received fds. Returns 0 at end of stream.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    // A signal (SIGWINCH while an exec has a terminal) must not end a wait for the shim's reply.
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r?,
        }
    };
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(rs) = c {
            for r in rs {
                // SAFETY: SCM_RIGHTS installed `r` in this process's fd table during the
                // recvmsg above; nothing else knows of it, so it is ours to own and close.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    Ok(msg.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn lines_carry_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        send_line(a.as_raw_fd(), &"state", &[f.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 256];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_raw_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"\"state\"\n");
        assert_eq!(fds.len(), 1);
    }
}

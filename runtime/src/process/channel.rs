//! The typed channel between the runtime process and a container process it cloned (init or
//! exec'd): one [`Message`] per datagram on a `SOCK_SEQPACKET` socketpair, so a dead peer shows
//! as end-of-file instead of a hang. A peer that exits right after sending its error may leave
//! messages of ours unread; [`Channel::recv`] still delivers its error (see there).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};
use serde::{Deserialize, Serialize};

/// What the two sides tell each other during set-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Message {
    /// Runtime → child: the new user namespace's id maps are written (sent first, only then).
    Mapped,
    /// Runtime → child: the runtime's part of the set-up is done (id maps written, the state
    /// known); carries the state JSON for the hooks the child runs itself.
    Go(String),
    /// Child → runtime: mounts are done, run prestart and createRuntime hooks now.
    RunHooks,
    /// Runtime → child: those hooks succeeded.
    HooksDone,
    /// Child → runtime: set-up done, now waiting for `start` (init) or about to exec (exec'd).
    Ready,
    /// Child → runtime: set-up failed with this message.
    Error(String),
}

/// Errors on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The socket failed.
    #[error("channel: {0}")]
    Sys(#[from] nix::Error),
    /// The peer closed its end (it exited).
    #[error("container process exited during set-up")]
    Closed,
    /// The peer sent nothing for too long (it hangs: frozen, or stuck in a mount).
    #[error("container process sent nothing for {0:?} during set-up")]
    Timeout(Duration),
    /// A message did not decode.
    #[error("channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    /// A message other than the one expected.
    #[error("channel: expected {expected}, got {got:?}")]
    Unexpected {
        /// What the protocol expects next.
        expected: &'static str,
        /// What came.
        got: Message,
    },
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(OwnedFd);

/// A connected pair: (runtime end, child end). Both close-on-exec.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    /// Sends one message.
    pub fn send(&self, m: &Message) -> Result<(), ChannelError> {
        let buf = serde_json::to_vec(m)?;
        send(self.0.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Receives one message; [`ChannelError::Closed`] when the peer is gone and everything it
    /// sent before has been read.
    pub fn recv(&self) -> Result<Message, ChannelError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut reset_seen = false;
        let n = loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                // A peer that closes its end with messages of ours unread (a child that failed
                // before reading `Go`, say) makes the kernel report ECONNRESET on our next
                // call, ahead of what the peer queued before closing. Reading it clears it:
                // the peer's messages (its error) and then end-of-file follow.
                Err(nix::Error::ECONNRESET) if !reset_seen => reset_seen = true,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        Ok(serde_json::from_slice(&buf[..n])?)
    }

    /// [`Channel::recv`], giving up after `timeout` without a message: the runtime's waits on
    /// a container process all end, whatever state the process is in.
    pub fn recv_within(&self, timeout: Duration) -> Result<Message, ChannelError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) if left.is_zero() => return Err(ChannelError::Timeout(timeout)),
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => return self.recv(),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Child side: waits for [`Message::Go`] and returns the state JSON it carries.
    pub fn wait_for_go(&self) -> Result<String, ChannelError> {
        match self.recv()? {
            Message::Go(s) => Ok(s),
            got => Err(ChannelError::Unexpected {
                expected: "Go",
                got,
            }),
        }
    }

    /// Child side: waits for [`Message::Mapped`].
    pub fn wait_for_mapped(&self) -> Result<(), ChannelError> {
        match self.recv()? {
            Message::Mapped => Ok(()),
            got => Err(ChannelError::Unexpected {
                expected: "Mapped",
                got,
            }),
        }
    }

    /// Child side: asks the runtime to run its hooks and waits until it did.
    pub fn request_hooks(&self) -> Result<(), ChannelError> {
        self.send(&Message::RunHooks)?;
        match self.recv()? {
            Message::HooksDone => Ok(()),
            got => Err(ChannelError::Unexpected {
                expected: "HooksDone",
                got,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_within_gives_up_on_a_silent_peer() {
        let (parent, child) = pair().unwrap();
        let t0 = Instant::now();
        let e = parent.recv_within(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, ChannelError::Timeout(_)), "{e}");
        assert!(t0.elapsed() >= Duration::from_millis(50));
        child.send(&Message::Ready).unwrap();
        assert_eq!(
            parent.recv_within(Duration::from_secs(5)).unwrap(),
            Message::Ready
        );
    }

    /// The child failed and exited with a message of ours still unread: its error, queued
    /// before it closed, must still come through (the kernel reports the reset first).
    #[test]
    fn error_of_a_peer_that_exited_with_unread_messages_is_delivered() {
        let (parent, child) = pair().unwrap();
        parent.send(&Message::Go("{}".into())).unwrap();
        child.send(&Message::Error("it broke".into())).unwrap();
        drop(child);
        assert_eq!(parent.recv().unwrap(), Message::Error("it broke".into()));
        assert!(matches!(parent.recv(), Err(ChannelError::Closed)));
    }

    /// Sending to a peer that exited fails, with or without unread messages of ours, and its
    /// error is still there to read afterwards.
    #[test]
    fn error_of_a_peer_that_exited_is_readable_after_a_failed_send() {
        for unread in [false, true] {
            let (parent, child) = pair().unwrap();
            if unread {
                parent.send(&Message::Mapped).unwrap();
            }
            child.send(&Message::Error("it broke".into())).unwrap();
            drop(child);
            assert!(parent.send(&Message::Go(String::new())).is_err());
            assert_eq!(parent.recv().unwrap(), Message::Error("it broke".into()));
            assert!(matches!(parent.recv(), Err(ChannelError::Closed)));
        }
    }
}

//! The socket under a peer-to-peer connection to systemd's private socket (/run/systemd/private),
//! in berthd (tokio). systemd stamps every message it sends there with the sender
//! `org.freedesktop.systemd1` (sd_bus_set_sender), a well-known name; zbus 5 parses the sender
//! header field as a unique name only and closes the connection on the first reply. The read
//! half here rewrites such a sender in place to a unique name of the same length
//! (`:rg.freedesktop.systemd1`), so message sizes and alignment stay as they are.

use std::io;
use std::os::fd::OwnedFd;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use zbus::connection::socket::{BoxedSplit, ReadHalf, Split};
use zbus::fdo::ConnectionCredentials;

/// The fixed part of a message: endianness, type, flags, version, body length, serial, fields length.
const FIXED_HEADER: usize = 16;
/// Header field code of the sender.
const SENDER_FIELD: u8 = 7;
/// Sanity bound on one message (the D-Bus maximum is 128 MiB).
const MAX_MESSAGE: usize = 128 << 20;

/// The split socket to hand to `zbus::connection::Builder::socket`.
pub(crate) fn socket(stream: UnixStream) -> BoxedSplit {
    let (read, write) = stream.into_split();
    Split::new(
        Box::new(SenderFix {
            inner: read,
            framer: Framer::default(),
            out_pos: 0,
            fds: Vec::new(),
        }),
        Box::new(write),
    )
}

/// Hands zbus only whole handshake lines and whole messages, the latter with the sender fixed.
#[derive(Debug)]
struct SenderFix {
    inner: OwnedReadHalf,
    framer: Framer,
    /// How much of `framer.out` zbus has been given.
    out_pos: usize,
    fds: Vec<OwnedFd>,
}

#[derive(Debug, Default)]
struct Framer {
    /// Received, not yet complete.
    raw: Vec<u8>,
    /// Complete and fixed.
    out: Vec<u8>,
}

impl Framer {
    /// Moves every complete line or message from `raw` to `out`.
    fn frame(&mut self) -> io::Result<()> {
        loop {
            let len = match self.raw.first() {
                None => return Ok(()),
                Some(b'l' | b'B') => match message_len(&self.raw)? {
                    Some(n) if n <= self.raw.len() => n,
                    _ => return Ok(()),
                },
                // Authentication lines (OK, AGREE_UNIX_FD, REJECTED, ERROR, DATA).
                Some(_) => match self.raw.windows(2).position(|w| w == b"\r\n") {
                    Some(i) => i + 2,
                    None => return Ok(()),
                },
            };
            let mut chunk: Vec<u8> = self.raw.drain(..len).collect();
            if matches!(chunk[0], b'l' | b'B') {
                fix_sender(&mut chunk);
            }
            self.out.extend_from_slice(&chunk);
        }
    }
}

fn u32_at(msg: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = msg.get(at..at + 4)?.try_into().ok()?;
    Some(if msg[0] == b'l' {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    } as usize)
}

/// The whole length of the message starting `buf`, once its fixed header is there.
fn message_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let (Some(body), Some(fields)) = (u32_at(buf, 4), u32_at(buf, 12)) else {
        return Ok(None);
    };
    let header = (FIXED_HEADER + fields).next_multiple_of(8);
    let total = header + body;
    if total > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {total} bytes from systemd's private socket"),
        ));
    }
    Ok(Some(total))
}

/// Rewrites a well-known sender name to a unique one of the same length: ':' replaces its first
/// character. Header fields are 8-aligned structs (code, signature, value); a sender field is
/// `07 01 's' 00`, the string's length, the string and a NUL. Scanning every 8-aligned offset is
/// exact: integer values sit at offset 4 of their field and string values are ASCII names, so
/// those four bytes at an 8-aligned offset can only start the sender field.
fn fix_sender(msg: &mut [u8]) {
    let Some(fields) = u32_at(msg, 12) else {
        return;
    };
    let end = (FIXED_HEADER + fields).min(msg.len());
    let mut at = FIXED_HEADER;
    while at + 8 <= end {
        if msg[at..at + 4] == [SENDER_FIELD, 1, b's', 0] {
            let Some(n) = u32_at(msg, at + 4) else { return };
            let name = at + 8;
            if n > 0 && name + n <= end && msg[name] != b':' {
                let value = &msg[name..name + n];
                if value != b"org.freedesktop.DBus" {
                    msg[name] = b':';
                }
            }
            return;
        }
        at += 8;
    }
}

#[async_trait::async_trait]
impl ReadHalf for SenderFix {
    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        while self.out_pos == self.framer.out.len() {
            self.framer.out.clear();
            self.out_pos = 0;
            let mut chunk = vec![0u8; 64 * 1024];
            let (n, fds) = self.inner.recvmsg(&mut chunk).await?;
            self.fds.extend(fds);
            if n == 0 {
                return Ok((0, std::mem::take(&mut self.fds)));
            }
            self.framer.raw.extend_from_slice(&chunk[..n]);
            self.framer.frame()?;
        }
        let out = &self.framer.out;
        let n = buf.len().min(out.len() - self.out_pos);
        buf[..n].copy_from_slice(&out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok((n, std::mem::take(&mut self.fds)))
    }

    fn can_pass_unix_fd(&self) -> bool {
        self.inner.can_pass_unix_fd()
    }

    async fn peer_credentials(&mut self) -> io::Result<ConnectionCredentials> {
        self.inner.peer_credentials().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A method return as systemd sends it on the private socket: reply serial 1, sender, empty
    /// body.
    fn reply(sender: &str) -> Vec<u8> {
        let mut f = vec![5, 1, b'u', 0];
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&[SENDER_FIELD, 1, b's', 0]);
        f.extend_from_slice(&(sender.len() as u32).to_le_bytes());
        f.extend_from_slice(sender.as_bytes());
        f.push(0);
        let mut m = vec![b'l', 2, 1, 1];
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(&7u32.to_le_bytes());
        m.extend_from_slice(&(f.len() as u32).to_le_bytes());
        m.extend_from_slice(&f);
        m.resize(m.len().next_multiple_of(8), 0);
        m
    }

    #[test]
    fn rewrites_well_known_sender_in_place() {
        let mut m = reply("org.freedesktop.systemd1");
        let len = m.len();
        assert_eq!(message_len(&m).unwrap(), Some(len));
        fix_sender(&mut m);
        assert_eq!(m.len(), len);
        let s = String::from_utf8_lossy(&m);
        assert!(s.contains(":rg.freedesktop.systemd1"), "{s:?}");
        let mut u = reply(":1.5");
        let before = u.clone();
        fix_sender(&mut u);
        assert_eq!(u, before);
    }

    #[test]
    fn frames_lines_and_split_messages() {
        let mut f = Framer::default();
        let m = reply("org.freedesktop.systemd1");
        f.raw.extend_from_slice(b"OK 0123\r\nAGREE_UNIX_FD\r\n");
        f.raw.extend_from_slice(&m[..10]);
        f.frame().unwrap();
        assert_eq!(f.out, b"OK 0123\r\nAGREE_UNIX_FD\r\n");
        f.raw.extend_from_slice(&m[10..]);
        f.frame().unwrap();
        assert!(f.raw.is_empty());
        assert_eq!(f.out.len(), 24 + m.len());
        assert_eq!(f.out[24 + 24..].len(), m.len() - 24);
    }
}

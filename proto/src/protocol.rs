//! The shim's control socket protocol (`<bundle>/shim.sock`, root only) and a small blocking
//! client for berthd, the `berth` CLI and tests. One JSON object per line each way. Standard
//! streams travel as file descriptors (SCM_RIGHTS): an exec without tty sends its three fds with
//! the request; an exec with tty receives the pty master with the `started` reply.
//! The types run in both processes; the server side is berth-shim's `control` module.

use crate::SOCKET_FILE;
pub use crate::wire::{recv_with_fds, send_line};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
/// Longest request line the shim accepts.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The container's state and health.
    State,
    /// Sends `signal` to the container's init (or, with `all`, to all its processes).
    Kill {
        signal: i32,
        #[serde(default)]
        all: bool,
    },
    /// Runs a process in the container. Without `tty` the request carries stdin, stdout, stderr
    /// as SCM_RIGHTS; with `tty` the `started` reply carries the pty master. Replies: `started`
    /// then `exited` (the connection stays open until the process ends).
    Exec(ExecRequest),
    /// Follows the container's terminal output (tty containers) and feeds the bytes the client
    /// writes to its stdin (with `stdin_open`). After the `ok` reply the connection is raw bytes.
    /// With `stdin_once`, the end of this client's input closes the container's stdin (Docker's
    /// `StdinOnce`: `docker run -i` ends `cat` when its own input ends).
    Attach {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stdin_once: bool,
    },
    /// Sets the window size of the container's terminal.
    Resize { rows: u16, cols: u16 },
    /// Freezes (or thaws) the container's processes with the runtime's `pause`/`resume`, where
    /// systemd cannot freeze the unit (hosts without the unified cgroup hierarchy).
    Pause { paused: bool },
    /// The health check's status and last results.
    Health,
}

/// Decodes one request line (the shim's reading of what a client sent).
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: Option<String>,
    /// `uid` or `uid:gid` inside the container; the container's user when unset.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tty: bool,
    /// The terminal's size at start (with `tty`): the process sees it from its first
    /// instruction. Later changes are TIOCSWINSZ on the pty master the client holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<ConsoleSize>,
}

/// A terminal window size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    State(ShimState),
    Health(HealthReport),
    /// An exec'd process runs (host PID). With tty, the pty master comes with this line.
    Started {
        pid: i32,
    },
    /// An exec'd process ended; `status` is its exit code or 128+signal.
    Exited {
        status: i32,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimState {
    pub name: String,
    pub image: String,
    pub spec_hash: String,
    /// Host PID of the container's init.
    pub pid: i32,
    /// Host PID of the shim.
    pub shim_pid: u32,
    /// `running`, `stopping`.
    pub status: String,
    pub started_at_ms: u64,
    pub tty: bool,
    /// Frozen by a `Pause` request.
    #[serde(default)]
    pub paused: bool,
    pub health: Option<HealthReport>,
    pub oom_kills: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    /// Exit status, -1 for a time-out.
    pub exit_code: i32,
    /// The check's output, truncated.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to shim socket {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("talking to the shim: {0}")]
    Io(#[from] io::Error),
    #[error("bad reply from the shim: {0}")]
    Protocol(String),
    #[error("shim: {0}")]
    Shim(String),
}

/// A blocking connection to one shim.
pub struct ShimClient {
    sock: UnixStream,
    /// Bytes received after the last complete reply line.
    pending: Vec<u8>,
}

impl ShimClient {
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let sock = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        Ok(ShimClient {
            sock,
            pending: Vec::new(),
        })
    }

    /// The control socket of the container whose bundle is `bundle`.
    pub fn for_bundle(bundle: &Path) -> Result<Self, ClientError> {
        Self::connect(&bundle.join(SOCKET_FILE))
    }

    fn request(&mut self, req: &Request, fds: &[RawFd]) -> Result<(), ClientError> {
        send_line(self.sock.as_raw_fd(), req, fds)?;
        Ok(())
    }

    /// Reads one reply line (with the fds sent along with it); an `error` reply becomes
    /// `ClientError::Shim`.
    fn reply(&mut self) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        let mut fds = Vec::new();
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                return Self::parse(&line, fds);
            }
            if self.pending.len() > MAX_REQUEST {
                return Err(ClientError::Protocol("reply too long".into()));
            }
            let mut buf = [0u8; 4096];
            let n = recv_with_fds(self.sock.as_raw_fd(), &mut buf, &mut fds)?;
            if n == 0 {
                return Err(ClientError::Protocol("connection closed".into()));
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    fn parse(line: &[u8], fds: Vec<OwnedFd>) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        let r: Response = serde_json::from_slice(line).map_err(|e| {
            ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(line)))
        })?;
        if let Response::Error { message } = r {
            return Err(ClientError::Shim(message));
        }
        Ok((r, fds))
    }

    pub fn state(&mut self) -> Result<ShimState, ClientError> {
        self.request(&Request::State, &[])?;
        match self.reply()?.0 {
            Response::State(s) => Ok(s),
            r => Err(ClientError::Protocol(format!("unexpected {r:?}"))),
        }
    }

    pub fn health(&mut self) -> Result<HealthReport, ClientError> {
        self.request(&Request::Health, &[])?;
        match self.reply()?.0 {
            Response::Health(h) => Ok(h),
            r => Err(ClientError::Protocol(format!("unexpected {r:?}"))),
        }
    }

    pub fn kill(&mut self, signal: i32, all: bool) -> Result<(), ClientError> {
        self.request(&Request::Kill { signal, all }, &[])?;
        self.reply().map(|_| ())
    }

    pub fn pause(&mut self, paused: bool) -> Result<(), ClientError> {
        self.request(&Request::Pause { paused }, &[])?;
        self.reply().map(|_| ())
    }

    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.request(&Request::Resize { rows, cols }, &[])?;
        self.reply().map(|_| ())
    }

    /// Starts `req` (without tty) with the given stdin/stdout/stderr; returns its host PID.
    /// Then call [`Self::wait_exit`].
    pub fn exec(&mut self, req: &ExecRequest, stdio: [RawFd; 3]) -> Result<i32, ClientError> {
        let mut req = req.clone();
        req.tty = false;
        self.request(&Request::Exec(req), &stdio)?;
        match self.reply()?.0 {
            Response::Started { pid } => Ok(pid),
            r => Err(ClientError::Protocol(format!("unexpected {r:?}"))),
        }
    }

    /// Starts `req` with a terminal; returns its host PID and the pty master (the caller reads
    /// and writes it, and sets its window size with TIOCSWINSZ).
    pub fn exec_tty(&mut self, req: &ExecRequest) -> Result<(i32, OwnedFd), ClientError> {
        let mut req = req.clone();
        req.tty = true;
        self.request(&Request::Exec(req), &[])?;
        match self.reply()? {
            (Response::Started { pid }, mut fds) if !fds.is_empty() => Ok((pid, fds.remove(0))),
            (r, _) => Err(ClientError::Protocol(format!("unexpected {r:?}"))),
        }
    }

    /// Waits for the exec'd process's end; returns its status (exit code or 128+signal).
    pub fn wait_exit(&mut self) -> Result<i32, ClientError> {
        match self.reply()?.0 {
            Response::Exited { status } => Ok(status),
            r => Err(ClientError::Protocol(format!("unexpected {r:?}"))),
        }
    }

    /// Switches to attach mode; afterwards the stream carries raw terminal bytes.
    pub fn attach(self) -> Result<UnixStream, ClientError> {
        self.attach_with(false)
    }

    /// [`Self::attach`]; with `stdin_once`, shutting down the write side closes the container's
    /// stdin.
    pub fn attach_with(mut self, stdin_once: bool) -> Result<UnixStream, ClientError> {
        self.request(&Request::Attach { stdin_once }, &[])?;
        self.reply()?;
        Ok(self.sock)
    }
}

impl Write for ShimClient {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":15}"#).unwrap();
        assert_eq!(
            r,
            Request::Kill {
                signal: 15,
                all: false
            }
        );
        let r: Request =
            serde_json::from_str(r#"{"op":"exec","args":["ls","-l"],"tty":true}"#).unwrap();
        assert!(matches!(r, Request::Exec(ExecRequest { tty: true, .. })));
        assert!(serde_json::from_str::<Request>(r#"{"op":"kill","signal":1,"x":1}"#).is_err());
        // The attach of older clients reads as one without stdin_once.
        let r: Request = serde_json::from_str(r#"{"op":"attach"}"#).unwrap();
        assert_eq!(r, Request::Attach { stdin_once: false });
        assert_eq!(
            serde_json::to_string(&Request::Attach { stdin_once: false }).unwrap(),
            r#"{"op":"attach"}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::Exited { status: 3 }).unwrap(),
            r#"{"reply":"exited","status":3}"#
        );
    }
}

//! The control socket's server side: accepts clients, reads their JSON requests (with the fds
//! they pass), answers state/health/kill/resize, runs execs in the container and copies the
//! container's terminal to attached clients. The wire format is `berth_proto::protocol`. Runs in
//! berth-shim.

use super::*;
use berth_proto::CONSOLE_SOCKET_FILE;
use berth_proto::protocol::{
    ExecRequest, MAX_REQUEST, Request, ShimState, decode_request, recv_with_fds, send_line,
};
use berth_runtime::ExecOptions;
use nix::sys::socket::{MsgFlags, send};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// Write timeout towards control clients: a stuck client must not stall the container's monitor.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_CLIENTS: usize = 64;

pub(super) struct Client {
    pub(super) id: u64,
    pub(super) sock: UnixStream,
    inbuf: Vec<u8>,
    fds: Vec<OwnedFd>,
    pub(super) attached: bool,
    /// The end of this attached client's input closes the container's stdin.
    stdin_once: bool,
    pub(super) closed: bool,
}

/// The container's environment with an exec's `KEY=VALUE` pairs on top (a key given again
/// replaces the container's).
pub(super) fn merge_env(mut env: Vec<String>, extra: &[String]) -> Vec<String> {
    for kv in extra {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    env
}

/// An exec's `uid[:gid]`; the container's gid when only a uid is given.
pub(super) fn exec_user(user: &str, default_gid: u32) -> Option<(u32, u32)> {
    match user.split_once(':') {
        Some((u, g)) => Some((u.parse().ok()?, g.parse().ok()?)),
        None => Some((user.parse().ok()?, default_gid)),
    }
}

impl Shim {
    pub(super) fn reply_to(&mut self, cid: u64, r: &Response) {
        if let Some(c) = self.clients.iter_mut().find(|c| c.id == cid)
            && send_line(c.sock.as_raw_fd(), r, &[]).is_err()
        {
            c.closed = true;
        }
    }

    pub(super) fn accept_clients(&mut self) {
        while let Ok((sock, _)) = self.listener.accept() {
            if self.clients.len() >= MAX_CLIENTS {
                continue;
            }
            let _ = sock.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
            self.next_client += 1;
            self.clients.push(Client {
                id: self.next_client,
                sock,
                inbuf: Vec::new(),
                fds: Vec::new(),
                attached: false,
                stdin_once: false,
                closed: false,
            });
        }
    }

    pub(super) fn on_pty(&mut self, buf: &mut [u8]) {
        let Some(m) = &self.pty else { return };
        match nix::unistd::read(m, buf) {
            Ok(0) | Err(nix::Error::EIO) => {
                // The container closed its terminal (or exited): stop polling the master.
                self.pty = None;
            }
            Ok(n) => {
                teardown::to_journal(&buf[..n]);
                self.send_attached(&buf[..n], MsgFlags::MSG_DONTWAIT);
            }
            Err(_) => {}
        }
    }

    /// Terminal output to the attached clients. While the container runs the send does not wait
    /// (`MSG_DONTWAIT`: viewers that cannot keep up lose output; the container never waits); at
    /// the end, the last output waits up to the client write timeout.
    pub(super) fn send_attached(&mut self, data: &[u8], flags: MsgFlags) {
        for c in self.clients.iter_mut().filter(|c| c.attached && !c.closed) {
            if let Err(e) = send(c.sock.as_raw_fd(), data, flags | MsgFlags::MSG_NOSIGNAL)
                && e != nix::Error::EAGAIN
            {
                c.closed = true;
            }
        }
    }

    pub(super) fn on_client(&mut self, i: usize, buf: &mut [u8]) {
        let (attached, raw) = {
            let c = &mut self.clients[i];
            let mut fds = Vec::new();
            match recv_with_fds(c.sock.as_raw_fd(), buf, &mut fds) {
                Ok(0) | Err(_) => {
                    c.closed = true;
                    if c.attached && c.stdin_once {
                        // Docker's StdinOnce: the container sees the end of its input.
                        self.stdin_w = None;
                    }
                    return;
                }
                Ok(n) => {
                    c.fds.extend(fds);
                    (c.attached, n)
                }
            }
        };
        if attached {
            let target = self.pty.as_ref().or(self.stdin_w.as_ref());
            if let Some(t) = target {
                let _ = nix::unistd::write(t, &buf[..raw]);
            }
            return;
        }
        self.clients[i].inbuf.extend_from_slice(&buf[..raw]);
        while let Some(nl) = self.clients[i].inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.clients[i].inbuf.drain(..=nl).collect();
            let fds = std::mem::take(&mut self.clients[i].fds);
            let resp = match decode_request(&line) {
                Ok(req) => self.handle(i, req, fds),
                Err(e) => Err(ShimError::Request(e)),
            };
            let (resp, fd) = match resp {
                Ok(r) => r,
                Err(e) => (
                    Response::Error {
                        message: e.to_string(),
                    },
                    None,
                ),
            };
            let c = &mut self.clients[i];
            let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
            if send_line(c.sock.as_raw_fd(), &resp, &fds).is_err() {
                c.closed = true;
                return;
            }
            if c.attached {
                // Whatever followed the attach request is input already.
                let rest = std::mem::take(&mut c.inbuf);
                if let Some(t) = self.pty.as_ref().or(self.stdin_w.as_ref()) {
                    let _ = nix::unistd::write(t, &rest);
                }
                return;
            }
        }
        if self.clients[i].inbuf.len() > MAX_REQUEST {
            self.clients[i].closed = true;
        }
    }

    fn handle(
        &mut self,
        i: usize,
        req: Request,
        fds: Vec<OwnedFd>,
    ) -> Result<(Response, Option<OwnedFd>), ShimError> {
        match req {
            Request::State => Ok((Response::State(self.state()), None)),
            Request::Health => match &self.health {
                Some(h) => Ok((Response::Health(h.report()), None)),
                None => Err(ShimError::Request(format!(
                    "container {} has no health check",
                    self.cfg.name
                ))),
            },
            Request::Kill { signal, all } => {
                if all {
                    self.rt
                        .kill(&self.id, signal, true)
                        .map_err(|source| ShimError::Runtime {
                            op: "signalling",
                            id: self.id.clone(),
                            source,
                        })?;
                } else {
                    berth_runtime::sys::pidfd_send_signal(&self.init_pidfd, signal).map_err(
                        |e| ShimError::Io {
                            what: format!("signalling the init of {}", self.id),
                            source: e.into(),
                        },
                    )?;
                }
                Ok((Response::Ok, None))
            }
            Request::Resize { rows, cols } => {
                let m = self.pty.as_ref().ok_or_else(|| {
                    ShimError::Request(format!("container {} has no terminal", self.cfg.name))
                })?;
                berth_runtime::sys::set_winsize(m.as_raw_fd(), rows, cols).map_err(|e| {
                    ShimError::Io {
                        what: format!("resizing the terminal of {}", self.cfg.name),
                        source: e.into(),
                    }
                })?;
                Ok((Response::Ok, None))
            }
            Request::Pause { paused } => {
                self.rt
                    .pause(&self.id, paused)
                    .map_err(|source| ShimError::Runtime {
                        op: if paused { "pausing" } else { "resuming" },
                        id: self.id.clone(),
                        source,
                    })?;
                self.paused = paused;
                Ok((Response::Ok, None))
            }
            Request::Attach { stdin_once } => {
                if self.pty.is_none() && self.stdin_w.is_none() {
                    return Err(ShimError::Request(format!(
                        "container {} has neither a terminal nor an open stdin; its output is in \
                         the journal (journalctl -u berth-{}.service)",
                        self.cfg.name, self.cfg.name
                    )));
                }
                self.clients[i].attached = true;
                self.clients[i].stdin_once = stdin_once;
                Ok((Response::Ok, None))
            }
            Request::Exec(req) => {
                let (pid, master) = self.exec(&req, fds)?;
                let cid = self.clients[i].id;
                self.execs.insert(pid, cid);
                Ok((Response::Started { pid }, master))
            }
        }
    }

    fn state(&self) -> ShimState {
        ShimState {
            name: self.cfg.name.clone(),
            image: self.cfg.image.clone(),
            spec_hash: self.cfg.spec_hash.clone(),
            pid: self.init_pid,
            shim_pid: std::process::id(),
            status: if self.stopping {
                "stopping".into()
            } else {
                "running".into()
            },
            started_at_ms: self.started_at_ms,
            tty: self.cfg.tty,
            paused: self.paused,
            health: self.health.as_ref().map(|h| h.report()),
            oom_kills: self
                .undo
                .leaves
                .as_ref()
                .map(|l| l.oom_kills().saturating_sub(self.oom_base))
                .unwrap_or(0),
        }
    }

    /// The container's process made into an exec process: same user, capabilities, environment
    /// (with `req.env` on top), cwd unless given.
    pub(super) fn exec_process(
        &self,
        req: &ExecRequest,
    ) -> Result<oci_spec::runtime::Process, ShimError> {
        if req.args.is_empty() {
            return Err(ShimError::Request("exec needs a command".into()));
        }
        let mut p = self.process.clone();
        p.set_args(Some(req.args.clone()));
        p.set_env(Some(merge_env(
            p.env().clone().unwrap_or_default(),
            &req.env,
        )));
        if let Some(cwd) = &req.cwd {
            p.set_cwd(PathBuf::from(cwd));
        }
        if let Some(u) = &req.user {
            let (uid, gid) = exec_user(u, p.user().gid()).ok_or_else(|| {
                ShimError::Request(format!(
                    "exec user {u:?}: only numeric uid[:gid] is supported"
                ))
            })?;
            p.user_mut().set_uid(uid);
            p.user_mut().set_gid(gid);
        }
        p.set_terminal(Some(req.tty));
        if let (true, Some(s)) = (req.tty, req.console_size) {
            let b = oci_spec::runtime::BoxBuilder::default()
                .height(s.rows)
                .width(s.cols)
                .build()
                .map_err(|e| ShimError::Request(format!("exec console size: {e}")))?;
            p.set_console_size(Some(b));
        }
        Ok(p)
    }

    /// Runs a process in the container: a direct child of the shim (reaped by [`Self::reap`]).
    fn exec(
        &mut self,
        req: &ExecRequest,
        fds: Vec<OwnedFd>,
    ) -> Result<(i32, Option<OwnedFd>), ShimError> {
        let p = self.exec_process(req)?;
        let opts = if req.tty {
            ExecOptions {
                console_socket: Some(self.bundle.join(CONSOLE_SOCKET_FILE)),
                ..Default::default()
            }
        } else {
            if fds.len() != 3 {
                return Err(ShimError::Request(format!(
                    "exec without tty needs 3 fds (stdin, stdout, stderr), got {}",
                    fds.len()
                )));
            }
            ExecOptions {
                stdio: Some([fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()]),
                ..Default::default()
            }
        };
        let pid = self
            .rt
            .exec(&self.id, &p, &opts, &self.bundle)
            .map_err(|source| ShimError::Runtime {
                op: "exec in",
                id: self.id.clone(),
                source,
            })?;
        // The child has its copies; ours close here.
        drop(fds);
        let master = if req.tty {
            Some(startup::receive_pty(&self.console)?)
        } else {
            None
        };
        Ok((pid, master))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_environment_and_user() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            merge_env(v(&["PATH=/bin", "A=1", "B=2"]), &v(&["A=3", "C=4"])),
            v(&["PATH=/bin", "B=2", "A=3", "C=4"])
        );
        assert_eq!(merge_env(v(&["A=1"]), &v(&["A"])), v(&["A"]));
        assert_eq!(exec_user("1000", 7), Some((1000, 7)));
        assert_eq!(exec_user("1000:1001", 7), Some((1000, 1001)));
        assert_eq!(exec_user("nobody", 7), None);
        assert_eq!(exec_user("1000:staff", 7), None);
    }
}

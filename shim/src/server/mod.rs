//! berth-shim's whole life as the main process of `berth-<name>.service`: set up the cgroup leaves
//! and the root filesystem, create and start the container with the runtime library while the
//! process is single-threaded ([`startup`]), then a single-threaded poll loop (this module) over
//! the signalfd ([`stop`]), the init's pidfd, the control socket and the pty ([`control`]), the
//! notify proxy ([`notify_proxy`]) and health probes ([`probes`]) until the container's init
//! exits; then delete the container, undo the mounts and cgroups and exit with the container's
//! status ([`teardown`]). The decisions are pure functions in those modules, unit-tested there.
//! Runs in berth-shim; never starts a thread, is the only reaper of its children.

mod control;
mod notify_proxy;
mod probes;
mod startup;
mod stop;
mod teardown;

use crate::backend::{Backend, BackendError};
use crate::cgroup::CgroupError;
use crate::health::Health;
use crate::notify::Notifier;
use crate::rootfs::RootfsError;
use berth_proto::config::ConfigError;
use berth_proto::exit::EXIT_SHIM_FAILED;
use berth_proto::protocol::Response;
use berth_proto::{ContainerExit, ShimConfig};
use control::Client;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use probes::Probe;
use startup::Undo;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const IO_BUF: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("loading {path}: {source}")]
    Spec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("{op} container {id}: {source}")]
    Runtime {
        op: &'static str,
        id: String,
        #[source]
        source: BackendError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Request(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError::Io { what, source }
}

/// Command-line options of berth-shim.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bundle directory (config.json, shim.json; the control socket is created here).
    pub bundle: PathBuf,
    /// The runtime's state directory.
    pub root: PathBuf,
    /// The runtime's container id; the container name from shim.json by default.
    pub id: Option<String>,
    /// Drive this runc-compatible binary instead of the linked runtime library.
    pub runtime_binary: Option<PathBuf>,
}

/// Runs the shim; returns the process exit status.
pub fn run(opts: Options) -> i32 {
    let notifier = Notifier::from_env();
    match Shim::start(opts, notifier.clone()) {
        Ok(mut shim) => {
            berth_runtime::sys::trim_heap();
            crate::sys::release_startup_memory();
            shim.serve();
            shim.finish()
        }
        Err(e) => {
            eprintln!("berth-shim: {e}");
            let _ = notifier.notify(&format!("STATUS=failed: {e}"));
            EXIT_SHIM_FAILED
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tok {
    Signal,
    Init,
    Listener,
    Pty,
    Notify,
    Client(usize),
    ProbeOut,
}

struct Shim {
    cfg: ShimConfig,
    bundle: PathBuf,
    process: oci_spec::runtime::Process,
    rt: Backend,
    id: String,
    undo: Undo,
    notifier: Notifier,
    init_pid: i32,
    init_pidfd: OwnedFd,
    sigfd: OwnedFd,
    listener: UnixListener,
    console: UnixListener,
    notify_proxy: Option<UnixDatagram>,
    pty: Option<OwnedFd>,
    stdin_w: Option<OwnedFd>,
    clients: Vec<Client>,
    next_client: u64,
    /// Exec'd process PID → the client waiting for its exit.
    execs: HashMap<i32, u64>,
    health: Option<Health>,
    probe: Option<Probe>,
    exit: Option<ContainerExit>,
    ready: bool,
    unhealthy: bool,
    /// A stop signal arrived (the stop grace period runs).
    stopping: bool,
    /// Frozen by a `Pause` request.
    paused: bool,
    /// When the shim SIGKILLs a container that ignores its stop signal.
    stop_deadline: Option<Instant>,
    started_at_ms: u64,
    oom_base: u64,
}

/// How long the loop may sleep until `next` (`None`: until an fd is ready). One millisecond
/// more than the distance, so a timer is never found a hair early and polled again at once;
/// capped at poll's largest timeout (the loop just wakes and sleeps again).
fn wait_ms(now: Instant, next: Option<Instant>) -> Option<u16> {
    let ms = next?.saturating_duration_since(now).as_millis() + 1;
    Some(u16::try_from(ms).unwrap_or(u16::MAX))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(fl) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let fl = OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl));
    }
}

impl Shim {
    pub(super) fn send_ready(&mut self) {
        if !self.ready {
            self.ready = true;
            let _ = self.notifier.notify("READY=1");
        }
    }

    /// The poll loop; returns once the container's init has exited.
    fn serve(&mut self) {
        let mut buf = vec![0u8; IO_BUF];
        while self.exit.is_none() {
            let mut toks: Vec<Tok> = vec![Tok::Signal, Tok::Init, Tok::Listener];
            if self.pty.is_some() {
                toks.push(Tok::Pty);
            }
            if self.notify_proxy.is_some() {
                toks.push(Tok::Notify);
            }
            if self.probe.as_ref().is_some_and(|p| p.out.is_some()) {
                toks.push(Tok::ProbeOut);
            }
            for i in 0..self.clients.len() {
                toks.push(Tok::Client(i));
            }
            let ready: Vec<(Tok, PollFlags)> = {
                let mut pfds: Vec<PollFd<'_>> = toks
                    .iter()
                    .map(|t| PollFd::new(self.fd_of(*t), PollFlags::POLLIN))
                    .collect();
                let timeout = self.poll_timeout();
                match poll(&mut pfds, timeout) {
                    Ok(_) => {}
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => {
                        eprintln!("berth-shim: poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                toks.iter()
                    .zip(pfds.iter())
                    .filter_map(|(t, p)| {
                        let r = p.revents().unwrap_or(PollFlags::empty());
                        (!r.is_empty()).then_some((*t, r))
                    })
                    .collect()
            };
            for (t, _) in &ready {
                match *t {
                    Tok::Signal => self.on_signals(),
                    Tok::Init => self.reap(),
                    Tok::Listener => self.accept_clients(),
                    Tok::Pty => self.on_pty(&mut buf),
                    Tok::Notify => self.on_notify(&mut buf),
                    Tok::ProbeOut => self.on_probe_output(&mut buf),
                    Tok::Client(i) => self.on_client(i, &mut buf),
                }
            }
            self.clients.retain(|c| !c.closed);
            self.on_timers();
        }
    }

    fn fd_of(&self, t: Tok) -> BorrowedFd<'_> {
        match t {
            Tok::Signal => self.sigfd.as_fd(),
            Tok::Init => self.init_pidfd.as_fd(),
            Tok::Listener => self.listener.as_fd(),
            Tok::Pty => self
                .pty
                .as_ref()
                .expect("pty polled only when present")
                .as_fd(),
            Tok::Notify => self
                .notify_proxy
                .as_ref()
                .expect("polled only when present")
                .as_fd(),
            Tok::ProbeOut => self
                .probe
                .as_ref()
                .and_then(|p| p.out.as_ref())
                .expect("polled only when present")
                .as_fd(),
            Tok::Client(i) => self.clients[i].sock.as_fd(),
        }
    }

    fn poll_timeout(&self) -> PollTimeout {
        let next = [self.probe_wakeup(), self.stop_deadline]
            .into_iter()
            .flatten()
            .min();
        match wait_ms(Instant::now(), next) {
            None => PollTimeout::NONE,
            Some(ms) => PollTimeout::from(ms),
        }
    }

    /// Reaps every exited child (the shim is the only waiter) and routes each exit.
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return,
                Err(nix::Error::EINTR) => continue,
                Err(e) => {
                    eprintln!("berth-shim: waitpid: {e}");
                    return;
                }
                Ok(st) => {
                    let Some(pid) = st.pid().map(|p| p.as_raw()) else {
                        continue;
                    };
                    let Some(exit) = ContainerExit::from_wait(st) else {
                        continue;
                    };
                    if pid == self.init_pid {
                        self.exit = Some(exit);
                    } else if let Some(p) = self.probe.as_mut().filter(|p| p.pid == pid) {
                        p.status = Some(exit.status());
                    } else if let Some(cid) = self.execs.remove(&pid) {
                        self.reply_to(
                            cid,
                            &Response::Exited {
                                status: exit.status(),
                            },
                        );
                    }
                }
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        self.on_stop_timer(now);
        self.on_probe_timer(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_sleeps_until_the_next_timer() {
        let t0 = Instant::now();
        assert_eq!(wait_ms(t0, None), None);
        assert_eq!(
            wait_ms(t0, Some(t0 + Duration::from_millis(250))),
            Some(251)
        );
        assert_eq!(wait_ms(t0 + Duration::from_secs(1), Some(t0)), Some(1));
        assert_eq!(
            wait_ms(t0, Some(t0 + Duration::from_secs(3600))),
            Some(u16::MAX)
        );
    }
}

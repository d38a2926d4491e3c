//! berth-shim's whole life as the main process of `berth-<name>.service`: set up the cgroup leaves
//! and the root filesystem, create and start the container with the runtime library while the
//! process is single-threaded, then a single-threaded poll loop (signalfd, the init's pidfd, the
//! control socket, the pty, health probes) until the container's init exits; then delete the
//! container, undo the mounts and cgroups and exit with the container's status.
//! Runs in berth-shim; never starts a thread, is the only reaper of its children.

use crate::backend::{Backend, BackendError};
use crate::cgroup::{CgroupError, Leaves};
use crate::health::{Health, MAX_OUTPUT, Transition};
use crate::notify::Notifier;
use crate::rootfs::{self, RootfsError};
use crate::sys;
use berth_proto::config::ConfigError;
use berth_proto::exit::EXIT_SHIM_FAILED;
use berth_proto::protocol::{
    ExecRequest, HealthResult, MAX_REQUEST, Request, Response, ShimState, recv_with_fds, send_line,
};
use berth_proto::{
    CONSOLE_SOCKET_FILE, ContainerExit, EXIT_FILE, ExitRecord, NOTIFY_SOCKET_FILE, Readiness,
    SOCKET_FILE, ShimConfig,
};
use berth_runtime::{CreateOptions, ExecOptions};
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, send};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the runtime may take to hand over a pty master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Write timeout towards control clients: a stuck client must not stall the container's monitor.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_CLIENTS: usize = 64;
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
    /// Where cgroup hierarchies are mounted.
    pub cgroup_base: PathBuf,
    /// Drive this runc-compatible binary instead of the linked runtime library.
    pub runtime_binary: Option<PathBuf>,
}

/// Runs the shim; returns the process exit status.
pub fn run(opts: Options) -> i32 {
    let notifier = Notifier::from_env();
    match Shim::start(opts, notifier.clone()) {
        Ok(mut shim) => {
            sys::trim_heap();
            sys::release_startup_memory();
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

/// Undo list of the start-up steps, run when a later step fails.
#[derive(Default)]
struct Undo {
    leaves: Option<Leaves>,
    mounted: Option<PathBuf>,
    created: Option<(Backend, String)>,
    sockets: Vec<PathBuf>,
}

impl Undo {
    fn run(self) {
        if let Some((rt, id)) = &self.created
            && let Err(e) = rt.delete(id, true)
        {
            eprintln!("berth-shim: cleanup: deleting container {id}: {e}");
        }
        if let Some(m) = &self.mounted
            && let Err(e) = rootfs::unmount(m)
        {
            eprintln!("berth-shim: cleanup: {e}");
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        if let Some(l) = &self.leaves {
            l.cleanup();
        }
    }
}

struct Client {
    id: u64,
    sock: UnixStream,
    inbuf: Vec<u8>,
    fds: Vec<OwnedFd>,
    attached: bool,
    closed: bool,
}

struct Probe {
    pid: i32,
    pidfd: OwnedFd,
    out: Option<OwnedFd>,
    buf: Vec<u8>,
    started: Instant,
    started_ms: u64,
    timed_out: bool,
    status: Option<i32>,
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
    stop_deadline: Option<Instant>,
    started_at_ms: u64,
    oom_base: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn bind_listener(path: &Path) -> Result<UnixListener, ShimError> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(io_err(format!("binding {}", path.display())))?;
    // Root only: the socket can run processes in the container.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod {}", path.display())))?;
    Ok(l)
}

/// Waits up to `timeout` for one connection on `console` and takes the fd it sends.
fn receive_pty(console: &UnixListener) -> Result<OwnedFd, ShimError> {
    let mut pfd = [PollFd::new(console.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(CONSOLE_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
    let n = poll(&mut pfd, PollTimeout::from(ms)).map_err(|e| ShimError::Io {
        what: "waiting for the pty master".into(),
        source: e.into(),
    })?;
    if n == 0 {
        return Err(ShimError::Request(
            "the runtime sent no pty master to the console socket".into(),
        ));
    }
    let (conn, _) = console
        .accept()
        .map_err(io_err("accepting on the console socket"))?;
    let mut fds = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = recv_with_fds(conn.as_raw_fd(), &mut buf, &mut fds)
            .map_err(io_err("receiving the pty master"))?;
        if !fds.is_empty() {
            return Ok(fds.remove(0));
        }
        if n == 0 {
            return Err(ShimError::Request(
                "console socket closed without a pty master".into(),
            ));
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(fl) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let fl = OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl));
    }
}

/// Writes terminal output to the shim's stdout (the unit's journal stream). A terminal ends lines
/// with CR LF; journald keeps the CR (and then shows the line as binary), so it is dropped here.
fn to_journal(buf: &[u8]) {
    let mut out = io::stdout().lock();
    let mut start = 0;
    for (i, w) in buf.windows(2).enumerate() {
        if w == b"\r\n" {
            let _ = out.write_all(&buf[start..i]);
            start = i + 1;
        }
    }
    let _ = out.write_all(&buf[start..]);
    let _ = out.flush();
}

impl Shim {
    fn start(opts: Options, notifier: Notifier) -> Result<Self, Box<ShimError>> {
        let mut undo = Undo::default();
        match Self::start_inner(opts, &notifier, &mut undo) {
            Ok(parts) => Ok(Self::assemble(parts, undo, notifier)),
            Err(e) => {
                undo.run();
                Err(Box::new(e))
            }
        }
    }

    fn start_inner(
        opts: Options,
        notifier: &Notifier,
        undo: &mut Undo,
    ) -> Result<Parts, ShimError> {
        let cfg = ShimConfig::load(&opts.bundle)?;
        let spec_path = opts.bundle.join("config.json");
        let spec = oci_spec::runtime::Spec::load(&spec_path).map_err(|source| ShimError::Spec {
            path: spec_path.clone(),
            source,
        })?;
        let process = spec.process().clone().unwrap_or_default();
        let id = opts.id.clone().unwrap_or_else(|| cfg.name.clone());
        // Orphans inside our subtree (processes exec'd into the container that daemonise) come
        // back to us rather than to PID 1, so their exits are seen and reaped here.
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| ShimError::Io {
            what: "PR_SET_CHILD_SUBREAPER".into(),
            source: e.into(),
        })?;
        // Signals are events of the loop from the start: a stop request that arrives while the
        // container is being created waits in the signalfd instead of killing the shim halfway
        // (mount and state left behind). The runtime's init and exec'd processes reset their
        // mask; runtime binaries are started with an empty one.
        let sigfd = sys::block_signals_to_fd().map_err(io_err("creating the signalfd"))?;
        let leaves = Leaves::discover(&opts.cgroup_base)?;
        if let Some(l) = &leaves {
            undo.leaves = Some(l.clone());
            l.setup()?;
        }
        if let Some(o) = &cfg.rootfs {
            let root = spec
                .root()
                .as_ref()
                .map(|r| r.path().clone())
                .unwrap_or_else(|| PathBuf::from("rootfs"));
            let target = if root.is_absolute() {
                root
            } else {
                opts.bundle.join(root)
            };
            rootfs::mount_overlay(o, &target)?;
            undo.mounted = Some(target);
        }
        let sock_path = opts.bundle.join(SOCKET_FILE);
        let console_path = opts.bundle.join(CONSOLE_SOCKET_FILE);
        let listener = bind_listener(&sock_path)?;
        undo.sockets.push(sock_path);
        let console = bind_listener(&console_path)?;
        undo.sockets.push(console_path.clone());
        let notify_proxy = if cfg.readiness == Readiness::Notify {
            let p = opts.bundle.join(NOTIFY_SOCKET_FILE);
            let _ = std::fs::remove_file(&p);
            let s = UnixDatagram::bind(&p).map_err(io_err(format!("binding {}", p.display())))?;
            // Any user in the container may be the one that reports readiness (systemd's own
            // notify socket is 0777 likewise); only READY=1 and STATUS= pass the proxy.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777))
                .map_err(io_err(format!("chmod {}", p.display())))?;
            undo.sockets.push(p);
            Some(s)
        } else {
            None
        };
        let devnull = File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
        let (stdin_r, stdin_w) = if cfg.stdin_open && !cfg.tty {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::Io {
                what: "creating the stdin pipe".into(),
                source: e.into(),
            })?;
            // A container that does not read its stdin must not block the shim's loop on a
            // full pipe: attach input it cannot take is dropped.
            set_nonblocking(w.as_fd());
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let stdin_fd = stdin_r
            .as_ref()
            .map(|r| r.as_raw_fd())
            .unwrap_or(devnull.as_raw_fd());
        let rt = Backend::new(&opts.root, opts.runtime_binary.clone());
        let copts = CreateOptions {
            console_socket: cfg.tty.then(|| console_path.clone()),
            pid_file: None,
            // Without a tty the container writes straight into the unit's journal stream: the
            // shim's own stdout/stderr, which systemd connected to journald. No copy, and
            // nothing the shim or berthd do can block the container's logging.
            stdio: Some([stdin_fd, 1, 2]),
            cgroup_path: leaves.as_ref().map(|l| l.container_path()),
            preserve_fds: 0,
            // berthd points NOTIFY_SOCKET at the proxy for `readiness: notify`; any other
            // NOTIFY_SOCKET in the spec is dropped, so the container cannot speak for the unit.
            keep_notify_socket: cfg.readiness == Readiness::Notify,
        };
        // A container of this id can only be a leftover of an earlier shim of this unit that was
        // killed before it could clean up (SIGKILL after TimeoutStopSec): remove it first.
        if rt.state_exists(&id)
            && let Err(e) = rt.delete(&id, true)
        {
            eprintln!("berth-shim: removing a stale container {id}: {e}");
        }
        let init_pid =
            rt.create(&id, &opts.bundle, &copts)
                .map_err(|source| ShimError::Runtime {
                    op: "creating",
                    id: id.clone(),
                    source,
                })?;
        undo.created = Some((rt.clone(), id.clone()));
        drop(stdin_r);
        drop(devnull);
        let init_pidfd = sys::pidfd_open(init_pid).map_err(io_err("pidfd_open of the init"))?;
        let pty = if cfg.tty {
            let m = receive_pty(&console)?;
            set_nonblocking(m.as_fd());
            Some(m)
        } else {
            None
        };
        let oom_base = leaves.as_ref().map(|l| l.oom_kills()).unwrap_or(0);
        rt.start(&id).map_err(|source| ShimError::Runtime {
            op: "starting",
            id: id.clone(),
            source,
        })?;
        let started_at_ms = now_ms();
        listener
            .set_nonblocking(true)
            .map_err(io_err("control socket"))?;
        let _ = notifier.notify(&format!("STATUS=running, container pid {init_pid}"));
        Ok(Parts {
            cfg,
            bundle: opts.bundle,
            process,
            rt,
            id,
            init_pid,
            init_pidfd,
            sigfd,
            listener,
            console,
            notify_proxy,
            pty,
            stdin_w,
            started_at_ms,
            oom_base,
        })
    }

    fn assemble(p: Parts, undo: Undo, notifier: Notifier) -> Self {
        let health = p
            .cfg
            .healthcheck
            .clone()
            .map(|h| Health::new(h, Instant::now()));
        let mut me = Shim {
            cfg: p.cfg,
            bundle: p.bundle,
            process: p.process,
            rt: p.rt,
            id: p.id,
            undo,
            notifier,
            init_pid: p.init_pid,
            init_pidfd: p.init_pidfd,
            sigfd: p.sigfd,
            listener: p.listener,
            console: p.console,
            notify_proxy: p.notify_proxy,
            pty: p.pty,
            stdin_w: p.stdin_w,
            clients: Vec::new(),
            next_client: 0,
            execs: HashMap::new(),
            health,
            probe: None,
            exit: None,
            ready: false,
            unhealthy: false,
            stop_deadline: None,
            started_at_ms: p.started_at_ms,
            oom_base: p.oom_base,
        };
        if me.cfg.readiness == Readiness::Started
            || (me.cfg.readiness == Readiness::Healthy && me.health.is_none())
        {
            me.send_ready();
        }
        me
    }

    fn send_ready(&mut self) {
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
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(p) = &self.probe {
            if let Some(h) = &self.health {
                consider(p.started + h.timeout());
            }
        } else if let Some(h) = &self.health {
            consider(h.next_run());
        }
        if let Some(d) = self.stop_deadline {
            consider(d);
        }
        match next {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(now).as_millis() + 1;
                PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
            }
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some((sig, _from))) = sys::read_signal(self.sigfd.as_fd()) {
            match sig {
                libc::SIGCHLD => self.reap(),
                libc::SIGPIPE | libc::SIGWINCH | libc::SIGURG => {}
                s => {
                    // Everything else is meant for the container: systemd's KillSignal (stop),
                    // `systemctl kill --kill-whom=main`, reload signals. A stop signal the shim
                    // could not survive itself (SIGKILL) reaches it as SIGTERM (berthd sets the
                    // unit's KillSignal so) and goes on as what the container asked for.
                    let fwd = match self.cfg.stop_signal {
                        Some(stop @ (libc::SIGKILL | libc::SIGSTOP)) if s == libc::SIGTERM => stop,
                        _ => s,
                    };
                    if let Err(e) = sys::pidfd_send_signal(self.init_pidfd.as_fd(), fwd)
                        && e.raw_os_error() != Some(libc::ESRCH)
                    {
                        eprintln!("berth-shim: forwarding signal {fwd}: {e}");
                    }
                    if self.is_stop_signal(s) && self.stop_deadline.is_none() {
                        if let Some(ms) = self.cfg.stop_timeout_ms {
                            self.stop_deadline = Some(Instant::now() + Duration::from_millis(ms));
                        }
                        let _ = self.notifier.notify("STOPPING=1");
                    }
                }
            }
        }
    }

    fn is_stop_signal(&self, s: i32) -> bool {
        s == self.cfg.stop_signal.unwrap_or(libc::SIGTERM)
            || s == libc::SIGTERM
            || s == libc::SIGINT
    }

    /// Reaps every exited child (the shim is the only waiter) and routes each exit.
    fn reap(&mut self) {
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

    fn reply_to(&mut self, cid: u64, r: &Response) {
        if let Some(c) = self.clients.iter_mut().find(|c| c.id == cid)
            && send_line(c.sock.as_raw_fd(), r, &[]).is_err()
        {
            c.closed = true;
        }
    }

    fn accept_clients(&mut self) {
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
                closed: false,
            });
        }
    }

    fn on_pty(&mut self, buf: &mut [u8]) {
        let Some(m) = &self.pty else { return };
        match nix::unistd::read(m, buf) {
            Ok(0) | Err(nix::Error::EIO) => {
                // The container closed its terminal (or exited): stop polling the master.
                self.pty = None;
            }
            Ok(n) => {
                to_journal(&buf[..n]);
                for c in self.clients.iter_mut().filter(|c| c.attached) {
                    // Attached viewers that cannot keep up lose output; the container never waits.
                    if let Err(e) = send(
                        c.sock.as_raw_fd(),
                        &buf[..n],
                        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                    ) && e != nix::Error::EAGAIN
                    {
                        c.closed = true;
                    }
                }
            }
            Err(_) => {}
        }
    }

    fn on_notify(&mut self, buf: &mut [u8]) {
        let mut msgs = Vec::new();
        if let Some(s) = &self.notify_proxy {
            let _ = s.set_nonblocking(true);
            while let Ok(n) = s.recv(buf) {
                msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        // Only readiness and status pass: the container must not set MAINPID, WATCHDOG etc.
        for line in msgs.iter().flat_map(|m| m.lines()) {
            if line == "READY=1" {
                self.send_ready();
            } else if line.starts_with("STATUS=") {
                let _ = self.notifier.notify(line);
            }
        }
    }

    fn on_client(&mut self, i: usize, buf: &mut [u8]) {
        let (attached, raw) = {
            let c = &mut self.clients[i];
            let mut fds = Vec::new();
            match recv_with_fds(c.sock.as_raw_fd(), buf, &mut fds) {
                Ok(0) | Err(_) => {
                    c.closed = true;
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
            let resp = match serde_json::from_slice::<Request>(&line) {
                Ok(req) => self.handle(i, req, fds),
                Err(e) => Err(ShimError::Request(format!("bad request: {e}"))),
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
                    sys::pidfd_send_signal(self.init_pidfd.as_fd(), signal)
                        .map_err(io_err(format!("signalling the init of {}", self.id)))?;
                }
                Ok((Response::Ok, None))
            }
            Request::Resize { rows, cols } => {
                let m = self.pty.as_ref().ok_or_else(|| {
                    ShimError::Request(format!("container {} has no terminal", self.cfg.name))
                })?;
                sys::set_winsize(m.as_fd(), rows, cols).map_err(io_err("resizing the pty"))?;
                Ok((Response::Ok, None))
            }
            Request::Attach => {
                if self.pty.is_none() && self.stdin_w.is_none() {
                    return Err(ShimError::Request(format!(
                        "container {} has neither a terminal nor an open stdin; its output is in \
                         the journal (journalctl -u berth-{}.service)",
                        self.cfg.name, self.cfg.name
                    )));
                }
                self.clients[i].attached = true;
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
            status: if self.stop_deadline.is_some() {
                "stopping".into()
            } else {
                "running".into()
            },
            started_at_ms: self.started_at_ms,
            tty: self.cfg.tty,
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
    fn exec_process(&self, req: &ExecRequest) -> Result<oci_spec::runtime::Process, ShimError> {
        if req.args.is_empty() {
            return Err(ShimError::Request("exec needs a command".into()));
        }
        let mut p = self.process.clone();
        p.set_args(Some(req.args.clone()));
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &req.env {
            let key = kv.split('=').next().unwrap_or(kv);
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
        if let Some(cwd) = &req.cwd {
            p.set_cwd(PathBuf::from(cwd));
        }
        if let Some(u) = &req.user {
            let (uid, gid) = match u.split_once(':') {
                Some((a, b)) => (a.parse::<u32>().ok(), b.parse::<u32>().ok()),
                None => (u.parse::<u32>().ok(), Some(p.user().gid())),
            };
            let (Some(uid), Some(gid)) = (uid, gid) else {
                return Err(ShimError::Request(format!(
                    "exec user {u:?}: only numeric uid[:gid] is supported"
                )));
            };
            p.user_mut().set_uid(uid);
            p.user_mut().set_gid(gid);
        }
        p.set_terminal(Some(req.tty));
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
            Some(receive_pty(&self.console)?)
        } else {
            None
        };
        Ok((pid, master))
    }

    fn start_probe(&mut self) {
        let Some(h) = &self.health else { return };
        let req = ExecRequest {
            args: h.check.command.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let r = (|| -> Result<Probe, ShimError> {
            let p = self.exec_process(&req)?;
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::Io {
                what: "health check pipe".into(),
                source: e.into(),
            })?;
            let devnull = File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
            let opts = ExecOptions {
                stdio: Some([devnull.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()]),
                ..Default::default()
            };
            let pid = self
                .rt
                .exec(&self.id, &p, &opts, &self.bundle)
                .map_err(|source| ShimError::Runtime {
                    op: "health check in",
                    id: self.id.clone(),
                    source,
                })?;
            drop(w);
            set_nonblocking(r.as_fd());
            let pidfd = sys::pidfd_open(pid).map_err(io_err("pidfd of the health check"))?;
            Ok(Probe {
                pid,
                pidfd,
                out: Some(r),
                buf: Vec::new(),
                started,
                started_ms: now_ms(),
                timed_out: false,
                status: None,
            })
        })();
        match r {
            Ok(p) => self.probe = Some(p),
            Err(e) => {
                // A probe that cannot even start is a failed probe.
                let res = HealthResult {
                    started_at_ms: now_ms(),
                    ended_at_ms: now_ms(),
                    exit_code: -1,
                    output: e.to_string(),
                };
                self.record_probe(res);
            }
        }
    }

    fn on_probe_output(&mut self, buf: &mut [u8]) {
        let Some(p) = self.probe.as_mut() else { return };
        let Some(out) = &p.out else { return };
        match nix::unistd::read(out, buf) {
            Ok(0) => p.out = None,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(p.buf.len());
                p.buf.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(nix::Error::EAGAIN) => {}
            Err(_) => p.out = None,
        }
    }

    fn record_probe(&mut self, res: HealthResult) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        let code = res.exit_code;
        match h.record(res, Instant::now()) {
            Transition::BecameHealthy => {
                let _ = self.notifier.notify("STATUS=healthy");
                if self.cfg.readiness == Readiness::Healthy {
                    self.send_ready();
                }
            }
            Transition::BecameUnhealthy => {
                eprintln!(
                    "berth-shim: container {} is unhealthy (last check status {code}); killing it",
                    self.cfg.name
                );
                self.unhealthy = true;
                let _ = self.notifier.notify("STATUS=unhealthy");
                let _ = sys::pidfd_send_signal(self.init_pidfd.as_fd(), libc::SIGKILL);
            }
            Transition::None => {}
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        if let Some(d) = self.stop_deadline
            && now >= d
        {
            // The container ignored its stop signal for the stop timeout: kill it ourselves so
            // the shim can still clean up before systemd's own SIGKILL for the whole unit.
            let _ = self.rt.kill(&self.id, libc::SIGKILL, true);
            let _ = sys::pidfd_send_signal(self.init_pidfd.as_fd(), libc::SIGKILL);
            self.stop_deadline = Some(now + Duration::from_secs(3600));
        }
        let timeout = self.health.as_ref().map(|h| h.timeout());
        if let (Some(p), Some(timeout)) = (self.probe.as_mut(), timeout) {
            if p.status.is_none() && !p.timed_out && now >= p.started + timeout {
                p.timed_out = true;
                let _ = sys::pidfd_send_signal(p.pidfd.as_fd(), libc::SIGKILL);
            }
            if p.status.is_some() {
                if let Some(out) = &p.out {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = nix::unistd::read(out, &mut b) {
                        if n == 0 {
                            break;
                        }
                        let room = MAX_OUTPUT.saturating_sub(p.buf.len());
                        p.buf.extend_from_slice(&b[..n.min(room)]);
                    }
                }
                let p = self.probe.take().expect("checked above");
                let res = HealthResult {
                    started_at_ms: p.started_ms,
                    ended_at_ms: now_ms(),
                    exit_code: if p.timed_out {
                        -1
                    } else {
                        p.status.unwrap_or(-1)
                    },
                    output: String::from_utf8_lossy(&p.buf).into_owned(),
                };
                self.record_probe(res);
            }
        } else if self.probe.is_none()
            && self.exit.is_none()
            && self.health.as_ref().is_some_and(|h| now >= h.next_run())
        {
            self.start_probe();
        }
    }

    /// After the init exited: delete the container, unmount, remove sockets and leaves, record
    /// the exit; returns the shim's exit status.
    fn finish(mut self) -> i32 {
        let exit = self.exit.unwrap_or(ContainerExit::Exited(255));
        let oom_killed = self
            .undo
            .leaves
            .as_ref()
            .is_some_and(|l| l.oom_kills() > self.oom_base);
        if let Some(m) = self.pty.take() {
            let mut b = [0u8; IO_BUF];
            while let Ok(n) = nix::unistd::read(&m, &mut b) {
                if n == 0 {
                    break;
                }
                to_journal(&b[..n]);
            }
        }
        let waiting: Vec<(i32, u64)> = self.execs.drain().collect();
        for (_, cid) in waiting {
            self.reply_to(
                cid,
                &Response::Error {
                    message: "the container exited".into(),
                },
            );
        }
        let status = if self.unhealthy && exit.status() == 0 {
            1
        } else {
            exit.status()
        };
        let rec = ExitRecord {
            exit,
            status,
            oom_killed,
            unhealthy: self.unhealthy,
            finished_at_ms: now_ms(),
        };
        if let Ok(j) = serde_json::to_vec(&rec)
            && let Err(e) = berth_proto::fsutil::write_atomic(&self.bundle.join(EXIT_FILE), &j)
        {
            eprintln!("berth-shim: writing {EXIT_FILE} of {}: {e}", self.cfg.name);
        }
        eprintln!(
            "berth-shim: container {} exited: {exit:?}, status {status}{}{}",
            self.cfg.name,
            if oom_killed { ", OOM-killed" } else { "" },
            if self.unhealthy { ", unhealthy" } else { "" },
        );
        let _ = self.notifier.notify(&format!(
            "STATUS=exited with status {status}{}",
            if oom_killed { " (OOM-killed)" } else { "" }
        ));
        let _ = std::fs::remove_file(self.bundle.join(NOTIFY_SOCKET_FILE));
        std::mem::take(&mut self.undo).run();
        // Processes the runtime's delete killed may still be ours to reap (execs, probes).
        let _ = waitpid(None, Some(WaitPidFlag::WNOHANG));
        let _ = self.stdin_w.take();
        status
    }
}

/// What the start-up produced, before the loop's bookkeeping is added.
struct Parts {
    cfg: ShimConfig,
    bundle: PathBuf,
    process: oci_spec::runtime::Process,
    rt: Backend,
    id: String,
    init_pid: i32,
    init_pidfd: OwnedFd,
    sigfd: OwnedFd,
    listener: UnixListener,
    console: UnixListener,
    notify_proxy: Option<UnixDatagram>,
    pty: Option<OwnedFd>,
    stdin_w: Option<OwnedFd>,
    started_at_ms: u64,
    oom_base: u64,
}

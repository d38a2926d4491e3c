//! The shim's start-up, while the process is single-threaded: read shim.json and config.json,
//! block signals into a signalfd, split the unit's cgroup into leaves, mount the overlay rootfs,
//! set up the bridge network, bind the sockets, create the container with the runtime and start it. Every step is undone
//! when a later one fails. Runs in berth-shim.

use super::*;
use crate::cgroup::Leaves;
use crate::network::Network;
use crate::rootfs;
use crate::sys;
use berth_proto::protocol::recv_with_fds;
use berth_proto::{
    CONSOLE_SOCKET_FILE, NETWORK_STATUS_FILE, NOTIFY_SOCKET_FILE, Readiness, SOCKET_FILE,
};
use berth_runtime::CreateOptions;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How long the runtime may take to hand over a pty master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Undo list of the start-up steps, run when a later step fails.
#[derive(Default)]
pub(super) struct Undo {
    pub(super) leaves: Option<Leaves>,
    mounted: Option<PathBuf>,
    created: Option<(Backend, String)>,
    sockets: Vec<PathBuf>,
    /// The bridge network and its status file in the bundle.
    network: Option<(Network, PathBuf)>,
}

impl Undo {
    pub(super) fn run(self) {
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
        if let Some((mut n, status)) = self.network {
            let _ = std::fs::remove_file(status);
            n.teardown();
        }
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        if let Some(l) = &self.leaves {
            l.cleanup();
        }
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
pub(super) fn receive_pty(console: &UnixListener) -> Result<OwnedFd, ShimError> {
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

impl Shim {
    pub(super) fn start(opts: Options, notifier: Notifier) -> Result<Self, Box<ShimError>> {
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
        let leaves = Leaves::discover()?;
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
        if let Some(n) = &cfg.network {
            let net = Network::setup(n, &cfg.name)?;
            let status = opts.bundle.join(NETWORK_STATUS_FILE);
            let json = serde_json::to_vec(&net.status()).unwrap_or_default();
            let address = net.status().and_then(berth_proto::NetworkStatus::address);
            undo.network = Some((net, status.clone()));
            berth_proto::fsutil::write_atomic(&status, &json)
                .map_err(io_err(format!("writing {}", status.display())))?;
            let hosts = opts.bundle.join("hosts");
            if let (Some(a), Some(h), Ok(text)) = (
                address,
                spec.hostname().as_deref(),
                std::fs::read_to_string(&hosts),
            ) {
                let text = crate::network::hosts_with_address(&text, h, a);
                berth_proto::fsutil::write_atomic(&hosts, text.as_bytes())
                    .map_err(io_err(format!("writing {}", hosts.display())))?;
            }
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
        let init_pidfd = berth_runtime::sys::pidfd_open(init_pid).map_err(|e| ShimError::Io {
            what: format!("pidfd_open of the init of {id}"),
            source: e.into(),
        })?;
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
            stopping: false,
            paused: false,
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
}

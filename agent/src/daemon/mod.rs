//! berthd itself: wires the reconcile controller to its triggers (a watch of the spec directories
//! and of the directories of files the specs name, systemd unit events, periodic resync, API
//! requests), speaks sd_notify (READY=1 after the first full pass, STATUS=, WATCHDOG=1) and serves
//! the native API. Runs in berthd (tokio, multi-threaded); it never forks a container: systemd
//! starts the shims.

use crate::api::{ErrorKind, Request, Response};
use crate::backends::{StoreImages, SystemdUnits};
use crate::config::Config;
use crate::image::Store;
use crate::reconcile::controller::{self, Options, Trigger};
use crate::reconcile::{self, Ctx, Settings, Units};
use crate::spec;
use crate::systemd::{ActiveState, BusTarget, Systemd, UnitEvent, container_name, unit_name};
use notify::Watcher;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

mod requests;
use requests::handle;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image store: {0}")]
    Store(#[from] crate::image::Error),
    #[error("systemd: {0}")]
    Systemd(Box<crate::systemd::SystemdError>),
    #[error("watching {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error(transparent)]
    Docker(crate::docker::SocketError),
    #[error("api socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
}

type RealCtx = Ctx<SystemdUnits, StoreImages>;

struct Shared {
    ctx: Arc<RealCtx>,
    cfg: Config,
    triggers: mpsc::UnboundedSender<Trigger>,
    store: Store,
    systemd: Systemd,
    /// What the network sweep removed lately.
    swept: crate::network::sweep::History,
}

fn mkdir(p: &Path, mode: u32) -> Result<(), DaemonError> {
    std::fs::create_dir_all(p).map_err(|source| DaemonError::Dir {
        path: p.into(),
        source,
    })?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        DaemonError::Dir {
            path: p.into(),
            source,
        }
    })
}

fn bus_target(s: &str) -> BusTarget {
    match s {
        "" | "system" => BusTarget::System,
        a => BusTarget::Address(a.to_owned()),
    }
}

/// Runs berthd until SIGTERM/SIGINT. Containers keep running when it exits.
pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    mkdir(&cfg.spec_dir, 0o755)?;
    mkdir(&cfg.state_dir, 0o700)?;
    mkdir(&cfg.api_spec_dir(), 0o700)?;
    mkdir(&cfg.record_dir(), 0o700)?;
    mkdir(&cfg.volumes_dir(), 0o700)?;
    mkdir(&cfg.run_dir, 0o711)?;
    mkdir(&cfg.bundle_dir(), 0o700)?;

    // Temp files of writes a killed berthd left (a live shim's are spared).
    for p in crate::fsutil::remove_orphan_temps_under(
        &cfg.record_dir(),
        &cfg.api_spec_dir(),
        &cfg.bundle_dir(),
    ) {
        tracing::info!("removed {}, left by an interrupted write", p.display());
    }
    let store = Store::open_with_limits(
        &cfg.state_dir,
        cfg.registry_config(),
        cfg.image.unpack_limits(),
    )?;
    let mut systemd = Systemd::connect(bus_target(&cfg.systemd))
        .await
        .map_err(|e| DaemonError::Systemd(Box::new(e)))?;
    if let Some(j) = &cfg.journal_dir {
        systemd = systemd.with_journal_dir(j.clone());
    }
    let settings = Settings {
        spec_dir: cfg.spec_dir.clone(),
        api_spec_dir: cfg.api_spec_dir(),
        state_dir: cfg.record_dir(),
        bundle_dir: cfg.bundle_dir(),
        volumes_dir: cfg.volumes_dir(),
        shim: cfg.shim_path(),
        network: Some(crate::bundle::NetworkPaths {
            netavark: cfg.network.netavark_path(),
            aardvark: cfg.network.aardvark_path(),
            state_dir: cfg.network_state_dir(),
            netns_dir: cfg.netns_dir(),
            default_host_ip: cfg.network.host_ip.map(std::net::IpAddr::V4),
            declared: cfg.network_sources(),
        }),
    };
    let ctx = Arc::new(Ctx::new(
        SystemdUnits {
            systemd: systemd.clone(),
        },
        StoreImages::new(store.clone()),
        settings,
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = watch::channel(false);
    tracing::info!(spec_dir = %cfg.spec_dir.display(), shim = %ctx.settings.shim.display(), "berthd starting");

    // A berth unit that stopped or went away may have left network state (its shim killed).
    let sweep_kick = Arc::new(tokio::sync::Notify::new());
    let swept = crate::network::sweep::History::default();
    if let Some(np) = ctx.settings.network.clone() {
        tokio::spawn(crate::network::sweep::run(
            systemd.clone(),
            np,
            ctx.settings.bundle_dir.clone(),
            sweep_kick.clone(),
            swept.clone(),
        ));
    }

    // Unit events first, so nothing between the first listing and the subscription is missed.
    let mut events = systemd.events();
    let t = tx.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if let UnitEvent::Removed { unit }
            | UnitEvent::Changed {
                unit,
                active_state: Some(ActiveState::Inactive | ActiveState::Failed),
                ..
            } = &ev
                && container_name(unit).is_some()
            {
                sweep_kick.notify_one();
            }
            let trig = match &ev {
                UnitEvent::Changed { unit, .. }
                | UnitEvent::Removed { unit }
                | UnitEvent::JobRemoved { unit, .. } => {
                    container_name(unit).map(|n| Trigger::Name(n.to_owned()))
                }
                UnitEvent::Resync => Some(Trigger::All),
            };
            if let Some(tr) = trig
                && t.send(tr).is_err()
            {
                return;
            }
        }
    });

    let spec_dirs = vec![cfg.spec_dir.clone(), cfg.api_spec_dir()];
    let mut watcher = watch_dirs(&spec_dirs, &cfg.network_dir(), ctx.clone(), tx.clone())?;
    let _ = std::fs::create_dir_all(cfg.network_dir());
    // Named networks: a change is a full pass (a container that could not join one retries at
    // once). A directory that does not exist is read at each start all the same.
    if let Err(e) = notify::Watcher::watch(
        &mut watcher,
        &cfg.network_dir(),
        notify::RecursiveMode::NonRecursive,
    ) {
        tracing::info!(dir = %cfg.network_dir().display(), "not watching the network directory: {e}");
    }
    tokio::spawn(watch_named_files(watcher, ctx.clone(), spec_dirs));

    let t = tx.clone();
    let every = cfg.resync;
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(every);
        iv.tick().await;
        loop {
            iv.tick().await;
            if t.send(Trigger::All).is_err() {
                return;
            }
        }
    });

    let ctl = tokio::spawn(controller::run(
        ctx.clone(),
        rx,
        Options::default(),
        ready_tx,
    ));
    tokio::spawn(notify_loop(ctx.clone(), ready_rx));

    if let Some(np) = ctx.settings.network.clone() {
        let (c, bundles) = (ctx.clone(), ctx.settings.bundle_dir.clone());
        tokio::spawn(crate::events::watch_networks(
            ctx.board.events.clone(),
            move || crate::events::network_facts(&c.board, &np, &bundles),
        ));
    }

    let shared = Arc::new(Shared {
        ctx,
        cfg: cfg.clone(),
        triggers: tx,
        store,
        systemd,
        swept,
    });
    let listener = bind(&cfg.socket)?;
    let docker = if cfg.docker.enable {
        let l = crate::docker::bind(&cfg.docker.socket, cfg.docker.group.as_deref())
            .map_err(DaemonError::Docker)?;
        tracing::info!(socket = %cfg.docker.socket.display(), "serving the docker api");
        let backend: crate::docker::Shared = Arc::new(NativeApi(shared.clone()));
        Some(tokio::spawn(crate::docker::serve(l, backend)))
    } else {
        None
    };
    let srv = tokio::spawn(serve(listener, shared));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| DaemonError::Socket {
            path: cfg.socket.clone(),
            source,
        })?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
        r = ctl => tracing::error!("controller ended: {r:?}"),
    }
    tracing::info!("berthd stopping (containers keep running)");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    srv.abort();
    let _ = std::fs::remove_file(&cfg.socket);
    if let Some(d) = docker {
        d.abort();
        let _ = std::fs::remove_file(&cfg.docker.socket);
    }
    Ok(())
}

/// What a store error means for the client that asked.
fn store_error_kind(e: &crate::image::Error) -> ErrorKind {
    use crate::image::Error as E;
    match e {
        E::NotInStore(_) => ErrorKind::NotFound,
        E::InUse { .. } => ErrorKind::Conflict,
        E::Reference(_) => ErrorKind::Invalid,
        _ => ErrorKind::Internal,
    }
}

/// Tells an image operation on the event bus.
fn image_event(sh: &Shared, action: &str, image: &str) {
    let e =
        crate::events::Event::new(crate::events::Kind::Image, action, image).attr("name", image);
    sh.ctx.board.events.publish(e);
}

/// Tells a container operation the board does not show (a signal, a restart asked for).
fn container_event(sh: &Shared, action: &str, name: &str, attr: Option<(&str, String)>) {
    let Some(st) = sh.ctx.board.get(name) else {
        return;
    };
    let mut e = crate::events::Event::container(action, &st);
    if let Some((k, v)) = attr {
        e = e.attr(k, v);
    }
    sh.ctx.board.events.publish(e);
}

/// The Docker API's view of berthd: the native API's requests, handled in-process.
struct NativeApi(Arc<Shared>);

#[async_trait::async_trait]
impl crate::docker::Backend for NativeApi {
    async fn call(&self, req: Request) -> Response {
        handle(&self.0, req).await
    }

    fn events(&self) -> Arc<crate::events::Bus> {
        self.0.ctx.board.events.clone()
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.0.ctx.board.watch())
    }

    async fn pull(
        &self,
        image: String,
        credentials: Option<crate::image::Secret>,
        progress: tokio::sync::watch::Sender<crate::image::Progress>,
    ) -> Response {
        let opts = crate::image::PullOptions {
            progress: Some(Arc::new(progress)),
            credentials,
            ..Default::default()
        };
        // As in StoreImages::pull: Store::pull's future is not provably Send.
        let (store, r, handle) = (
            self.0.store.clone(),
            image.clone(),
            tokio::runtime::Handle::current(),
        );
        let res = tokio::task::spawn_blocking(move || {
            let res = handle.block_on(store.pull(&r, &opts));
            drop(opts);
            res
        })
        .await;
        match res {
            Ok(Ok(i)) => {
                let _ = self.0.triggers.send(Trigger::All);
                image_event(&self.0, "pull", &i.name);
                Response::ok(json!({"image": i.name, "digest": i.digest}))
            }
            Ok(Err(e)) => Response::err(store_error_kind(&e), e),
            Err(e) => Response::err(ErrorKind::Internal, format!("pulling {image}: {e}")),
        }
    }
}

/// Watches the spec directories: an event names the file's container; an overflow or an error
/// asks for a full relist (pitfall 9: editors save by rename, events can be lost). Events in the
/// directories [`watch_named_files`] adds name the containers whose spec names the file.
fn watch_dirs(
    dirs: &[PathBuf],
    network_dir: &Path,
    ctx: Arc<RealCtx>,
    tx: mpsc::UnboundedSender<Trigger>,
) -> Result<notify::RecommendedWatcher, DaemonError> {
    let spec_dirs = dirs.to_vec();
    let network_dir = network_dir.to_owned();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let trig: Vec<Trigger> = match res {
            Ok(ev) if ev.need_rescan() => vec![Trigger::All],
            // Reading a spec or a file it names (every pass does) is an event too: only changes
            // count, or each pass would trigger the next.
            Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => vec![],
            Ok(ev)
                if ev
                    .paths
                    .iter()
                    .any(|p| p.parent() == Some(network_dir.as_path())) =>
            {
                vec![Trigger::All]
            }
            Ok(ev) => ev
                .paths
                .iter()
                .flat_map(|p| {
                    let in_spec_dir = p.parent().is_some_and(|d| spec_dirs.iter().any(|s| s == d));
                    let spec = spec::name_of(p).filter(|_| in_spec_dir).map(str::to_owned);
                    spec.into_iter().chain(ctx.files.names_for(p))
                })
                .map(Trigger::Name)
                .collect(),
            Err(e) => {
                tracing::warn!("spec watch: {e}; relisting");
                vec![Trigger::All]
            }
        };
        for t in trig {
            let _ = tx.send(t);
        }
    })
    .map_err(|source| DaemonError::Watch {
        path: dirs[0].clone(),
        source,
    })?;
    for d in dirs {
        w.watch(d, notify::RecursiveMode::NonRecursive)
            .map_err(|source| DaemonError::Watch {
                path: d.clone(),
                source,
            })?;
    }
    Ok(w)
}

/// Keeps the watch on the directories of the files the specs name (env files, seccomp profiles,
/// device nodes) in step with the specs, so that editing such a file replaces its containers at
/// once. A directory that cannot be watched (it does not exist yet) is left to the periodic resync
/// and tried again at the next change of the set.
async fn watch_named_files(
    mut w: notify::RecommendedWatcher,
    ctx: Arc<RealCtx>,
    spec_dirs: Vec<PathBuf>,
) {
    let mut watched: std::collections::BTreeSet<PathBuf> = Default::default();
    loop {
        ctx.files.changed().await;
        let mut want = ctx.files.dirs();
        want.retain(|d| !spec_dirs.contains(d));
        for d in watched.difference(&want) {
            let _ = w.unwatch(d);
        }
        watched.retain(|d| want.contains(d));
        for d in want {
            if watched.contains(&d) {
                continue;
            }
            match w.watch(&d, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %d.display(), "watching a directory of files specs name");
                    watched.insert(d);
                }
                Err(e) => tracing::warn!(
                    dir = %d.display(),
                    "cannot watch {}: {e}; its files are looked at on the periodic resync",
                    d.display()
                ),
            }
        }
    }
}

/// READY=1 after the first full pass; STATUS= whenever the summary changes; WATCHDOG=1 pings.
async fn notify_loop(ctx: Arc<RealCtx>, mut ready: watch::Receiver<bool>) {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let period = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(period);
            loop {
                iv.tick().await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    let _ = ready.wait_for(|r| *r).await;
    let summary = ctx.board.summary();
    tracing::info!("first pass done: {summary}");
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&summary),
        ],
    );
    let mut last = summary;
    loop {
        ctx.board.changed.notified().await;
        // Coalesce bursts (50 containers starting) into one update.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = ctx.board.summary();
        if s != last {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&s)]);
            last = s;
            // A burst of passes is over (or pausing): what it allocated need not stay resident
            // while berthd idles (about 1 MB of 15 with 50 containers).
            crate::sys::trim_heap();
        }
    }
}

fn bind(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    let err = |source| DaemonError::Socket {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let _ = std::fs::remove_file(path);
    // Created with a restrictive umask-independent mode right after bind; the peer check below is
    // what actually keeps non-root users out.
    let l = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(l)
}

async fn serve(l: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if s.peer_cred().map(|c| c.uid()).ok() != Some(0) {
                let (_, mut w) = s.into_split();
                let _ = w
                    .write_all(
                        b"{\"error\":\"berthd's API is for root only\",\"kind\":\"invalid\"}\n",
                    )
                    .await;
                return;
            }
            let (r, mut w) = s.into_split();
            let (mut r, mut line) = (BufReader::new(r), Vec::new());
            loop {
                let (resp, last) = match crate::api::read_request_line(&mut r, &mut line).await {
                    Ok(crate::api::Line::Line) => match crate::api::decode_request(&line) {
                        Ok(req) => (handle(&shared, req).await, false),
                        Err(bad) => (bad, false),
                    },
                    // The rest of the line is never read: answered, then closed.
                    Ok(crate::api::Line::TooLong) => (
                        Response::err(
                            ErrorKind::Invalid,
                            format!("request longer than {} bytes", crate::api::MAX_LINE),
                        ),
                        true,
                    ),
                    Ok(crate::api::Line::Closed) | Err(_) => return,
                };
                let mut out = serde_json::to_vec(&resp).unwrap_or_default();
                out.push(b'\n');
                if w.write_all(&out).await.is_err() || last {
                    return;
                }
            }
        });
    }
}

//! Removes the network state that a shim killed before its clean-up left behind when nothing will
//! start its container again (spec removed, `network_mode` changed, berthd killed mid-start and the
//! unit gone): netavark's veth and firewall rules (a `netavark teardown` with the options the shim
//! recorded), the namespace bind mount, the address leases and the lock file. [`gather`] reads the
//! facts, the pure [`plan`] says what is stale, [`execute`] removes it holding the container's
//! network lock, so a shim that starts meanwhile waits for it. Runs in berthd.

use crate::bundle::NetworkPaths;
use crate::systemd::{ActiveState, Systemd};
use berth_proto::netlock::{NetworkLock, lock_path};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// An unreadable or empty lease (a shim of an older berth killed between creating and writing
/// it) is removed once it is this old: no shim takes longer to write a name.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// What is on the host, read at one moment.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Names bind-mounted (or left as mount points) in the netns directory.
    pub netns: BTreeSet<String>,
    /// Names with netavark's options recorded (`<state>/containers/<name>.json`).
    pub records: BTreeSet<String>,
    /// Names with a lock file (`<state>/locks/<name>`).
    pub lock_files: BTreeSet<String>,
    pub leases: Vec<Lease>,
    /// berth's loaded units by container name.
    pub units: BTreeMap<String, ActiveState>,
    /// Names whose network lock another process holds: a live shim.
    pub locked: BTreeSet<String>,
    /// Names whose bundle gives the shim no network of its own (`network_mode` changed to
    /// `none`, `host` or `container:`): a shim running it never uses the state.
    pub without_network: BTreeSet<String>,
}

/// A lease file and the container it names (`None`: empty, unreadable or not a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub path: PathBuf,
    pub holder: Option<String>,
    pub age: Duration,
}

/// Why a container's network state is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// systemd has no unit for it: nothing runs it and nothing will restart it.
    NoUnit,
    /// Its unit is loaded but `inactive` or `failed`: its shim is gone.
    Stopped(ActiveState),
    /// Its unit runs a shim without a network of its own (the spec changed meanwhile).
    NotOnTheBridge,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NoUnit => f.write_str("no unit and no shim"),
            Why::Stopped(s) => write!(f, "unit {s}, no shim"),
            Why::NotOnTheBridge => f.write_str("its shim runs without a network of its own"),
        }
    }
}

/// One container's stale state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub name: String,
    pub why: Why,
    pub record: bool,
    pub netns: bool,
    pub leases: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub stale: Vec<Stale>,
    /// Leases that name no container, old enough not to be in the making.
    pub orphan_leases: Vec<PathBuf>,
}

/// The unit states in which a shim may run or be about to: starting, running, stopping, waiting
/// for its `Restart=`, and any state this berth does not know.
fn unit_may_run(s: ActiveState) -> bool {
    !matches!(s, ActiveState::Inactive | ActiveState::Failed)
}

/// What is stale: every container named by a namespace, a record, a lock file or a lease whose
/// network lock nobody holds and whose unit is absent, inactive or failed, or runs a shim that
/// has no network of its own.
pub fn plan(f: &Facts) -> Plan {
    let holders = f.leases.iter().filter_map(|l| l.holder.clone());
    let names: BTreeSet<String> = f
        .netns
        .iter()
        .chain(&f.records)
        .chain(&f.lock_files)
        .cloned()
        .chain(holders)
        .collect();
    let stale = names
        .into_iter()
        .filter(|n| !f.locked.contains(n))
        .filter_map(|name| {
            let why = match f.units.get(&name) {
                None => Why::NoUnit,
                Some(_) if f.without_network.contains(&name) => Why::NotOnTheBridge,
                Some(&s) if unit_may_run(s) => return None,
                Some(&s) => Why::Stopped(s),
            };
            Some(Stale {
                why,
                record: f.records.contains(&name),
                netns: f.netns.contains(&name),
                leases: f
                    .leases
                    .iter()
                    .filter(|l| l.holder.as_deref() == Some(name.as_str()))
                    .map(|l| l.path.clone())
                    .collect(),
                name,
            })
        })
        .collect();
    let orphan_leases = f
        .leases
        .iter()
        .filter(|l| l.holder.is_none() && l.age >= ORPHAN_GRACE)
        .map(|l| l.path.clone())
        .collect();
    Plan {
        stale,
        orphan_leases,
    }
}

/// Container names among a directory's entries (`strip`: the suffix they carry).
fn names_in(dir: &Path, strip: &str) -> BTreeSet<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    rd.flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(strip)
                .map(str::to_owned)
        })
        .filter(|n| crate::spec::is_valid_name(n))
        .collect()
}

/// `<state>/leases/<network>/<address>` for every network, and the drafts `.<name>` a shim writes
/// before linking one.
fn leases(state_dir: &Path, now: SystemTime) -> Vec<Lease> {
    let Ok(nets) = std::fs::read_dir(state_dir.join("leases")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for net in nets.flatten() {
        let Ok(files) = std::fs::read_dir(net.path()) else {
            continue;
        };
        for e in files.flatten() {
            let path = e.path();
            let file = e.file_name().to_string_lossy().into_owned();
            let holder = match file.strip_prefix('.') {
                Some(draft) => Some(draft.to_owned()),
                None => std::fs::read_to_string(&path).ok(),
            }
            .filter(|n| crate::spec::is_valid_name(n));
            let age = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            out.push(Lease { path, holder, age });
        }
    }
    out
}

/// Whether `<bundle>/shim.json` exists and gives the shim no network (a shim of a berth without
/// the lock, or between its start and taking it, reads a bundle with one).
fn without_network(bundle_dir: &Path, name: &str) -> bool {
    std::fs::read(bundle_dir.join(name).join(berth_proto::SHIM_CONFIG_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("network").is_none_or(serde_json::Value::is_null))
}

/// Reads the facts of the network state directory, the netns directory and the bundles; `units`
/// is berth's loaded units as systemd listed them just before.
pub fn gather(
    paths: &NetworkPaths,
    bundle_dir: &Path,
    units: BTreeMap<String, ActiveState>,
) -> Facts {
    let mut f = Facts {
        netns: names_in(&paths.netns_dir, ""),
        records: names_in(&paths.state_dir.join("containers"), ".json"),
        lock_files: names_in(&paths.state_dir.join("locks"), ""),
        leases: leases(&paths.state_dir, SystemTime::now()),
        units,
        locked: BTreeSet::new(),
        without_network: BTreeSet::new(),
    };
    let named: BTreeSet<String> = f
        .netns
        .iter()
        .chain(&f.records)
        .chain(&f.lock_files)
        .cloned()
        .chain(f.leases.iter().filter_map(|l| l.holder.clone()))
        .collect();
    f.without_network = named
        .into_iter()
        .filter(|n| without_network(bundle_dir, n))
        .collect();
    // Only a lock file can be held; probing one that is absent would create it.
    f.locked = f
        .lock_files
        .iter()
        .filter(|n| {
            matches!(
                NetworkLock::try_acquire(&paths.state_dir, n),
                Ok(None) | Err(_)
            )
        })
        .cloned()
        .collect();
    f
}

/// What the sweep removed for one container (or for leases naming none: `name` empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub name: String,
    pub why: String,
    pub removed: Vec<String>,
    /// Steps that failed (the others still ran).
    pub errors: Vec<String>,
}

/// Removes what `plan` says is stale. Each container's state is removed holding its network
/// lock; one whose lock is taken meanwhile (its shim started) is left to that shim.
pub async fn execute(paths: &NetworkPaths, plan: Plan) -> Vec<Removed> {
    let mut out = Vec::new();
    for s in plan.stale {
        let lock = match NetworkLock::try_acquire(&paths.state_dir, &s.name) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(container = %s.name, "network sweep: locking: {e}");
                continue;
            }
        };
        out.push(remove(paths, &s).await);
        lock.remove();
    }
    if !plan.orphan_leases.is_empty() {
        let mut r = Removed {
            name: String::new(),
            why: "lease names no container".into(),
            removed: Vec::new(),
            errors: Vec::new(),
        };
        for l in plan.orphan_leases {
            file_gone(&mut r, "lease", &l);
        }
        out.push(r);
    }
    out
}

fn file_gone(r: &mut Removed, what: &str, path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => r.removed.push(format!("{what} {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => r
            .errors
            .push(format!("removing {what} {}: {e}", path.display())),
    }
}

async fn remove(paths: &NetworkPaths, s: &Stale) -> Removed {
    let mut r = Removed {
        name: s.name.clone(),
        why: s.why.to_string(),
        removed: Vec::new(),
        errors: Vec::new(),
    };
    let netns = paths.netns_dir.join(&s.name);
    let record = paths
        .state_dir
        .join("containers")
        .join(format!("{}.json", s.name));
    if s.record {
        match teardown(paths, &netns, &record).await {
            Ok(()) => r.removed.push("netavark's veth and rules".into()),
            Err(e) => r.errors.push(e),
        }
        file_gone(&mut r, "record", &record);
    }
    if s.netns {
        match nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => r
                .errors
                .push(format!("unmounting {}: {e}", netns.display())),
        }
        file_gone(&mut r, "netns", &netns);
    }
    for l in &s.leases {
        file_gone(&mut r, "lease", l);
    }
    let _ = std::fs::remove_file(lock_path(&paths.state_dir, &s.name));
    r
}

/// `netavark --config STATE --aardvark-binary A teardown NETNS` with the recorded options on stdin, holding
/// netavark's lock as the shims do.
async fn teardown(paths: &NetworkPaths, netns: &Path, record: &Path) -> Result<(), String> {
    use berth_proto::netlock::{NETAVARK_LOCK, NetavarkLock};
    use tokio::io::AsyncWriteExt;
    let opts = std::fs::read(record).map_err(|e| format!("reading {}: {e}", record.display()))?;
    let _held = tokio::task::spawn_blocking(|| NetavarkLock::acquire(Path::new(NETAVARK_LOCK)))
        .await
        .map_err(|e| format!("waiting for netavark's lock: {e}"))?
        .map_err(|e| format!("waiting for netavark's lock {NETAVARK_LOCK}: {e}"))?;
    let mut child = tokio::process::Command::new(&paths.netavark)
        .arg("--config")
        .arg(&paths.state_dir)
        // A network with DNS: netavark tells aardvark-dns the container is gone.
        .arg("--aardvark-binary")
        .arg(&paths.aardvark)
        .arg("teardown")
        .arg(netns)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("running {} teardown: {e}", paths.netavark.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A netavark that exits early closes its stdin; its exit status says why.
        let _ = stdin.write_all(&opts).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| "netavark teardown took over 60 s".to_owned())?
        .map_err(|e| format!("waiting for netavark teardown: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "netavark teardown failed ({}): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    ))
}

/// One sweep: lists berth's units, reads the facts, removes what is stale and logs it. Does
/// nothing when systemd cannot be asked (never acts without knowing which units exist).
pub async fn pass(systemd: &Systemd, paths: &NetworkPaths, bundle_dir: &Path) -> Vec<Removed> {
    let units = match systemd.list_units().await {
        Ok(u) => u
            .into_iter()
            .filter(|u| u.load_state != "not-found")
            .filter_map(|u| Some((u.container()?.to_owned(), u.active_state)))
            .collect(),
        Err(e) => {
            tracing::warn!("network sweep skipped: listing units: {e}");
            return Vec::new();
        }
    };
    let (p, b) = (paths.clone(), bundle_dir.to_owned());
    let Ok(facts) = tokio::task::spawn_blocking(move || gather(&p, &b, units)).await else {
        return Vec::new();
    };
    let removed = execute(paths, plan(&facts)).await;
    for r in &removed {
        if r.errors.is_empty() {
            tracing::info!(container = %r.name, why = %r.why, removed = ?r.removed, "network sweep: removed stale network state");
        } else {
            tracing::warn!(container = %r.name, why = %r.why, removed = ?r.removed, errors = ?r.errors, "network sweep: removed stale network state, with errors");
        }
    }
    removed
}

/// How often berthd sweeps when no unit event asks for it sooner.
pub const EVERY: Duration = Duration::from_secs(60);

/// The last removals, newest last, for `berth status`.
pub type History = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Removed>>>;
const HISTORY: usize = 20;

/// Sweeps at start, after each `kick` (a berth unit stopped or went away; bursts coalesced) and
/// every [`EVERY`].
pub async fn run(
    systemd: Systemd,
    paths: NetworkPaths,
    bundle_dir: PathBuf,
    kick: std::sync::Arc<tokio::sync::Notify>,
    history: History,
) {
    loop {
        let removed = pass(&systemd, &paths, &bundle_dir).await;
        if !removed.is_empty()
            && let Ok(mut h) = history.lock()
        {
            h.extend(removed);
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        tokio::select! {
            _ = kick.notified() => tokio::time::sleep(Duration::from_secs(1)).await,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
mod tests;

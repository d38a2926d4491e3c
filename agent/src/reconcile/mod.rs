//! The reconcile loop, in the shape of kube-runtime's controller: level-triggered and idempotent.
//! Each pass of a name compares desired (its spec file, or an API-made spec under the state dir)
//! with observed (its systemd unit, the image store, berthd's record of what it started) and makes
//! one step towards the desired state. Triggers only say *which* name to look at; the scheduler
//! ([`controller`]) dedupes and debounces them and never runs one name twice at once. Runs in berthd.
//!
//! A pass has three steps, so that `berth diff` shows exactly what a pass would do:
//! 1. [`observe`] reads the [`Facts`] (spec, unit, image, record, dependencies, the files whose
//!    contents go into the container) and changes nothing;
//! 2. [`plan`], a pure function, makes the one [`Decision`] about them, with its reason;
//! 3. [`reconcile`] carries the decision out (a pull first, then the plan is made again with the
//!    image in hand); [`decide`] (`berth diff`) returns it instead.
//!
//! The systemd and image sides are traits ([`Units`], [`Images`]) so that all of it is tested with
//! fakes. Their failures are typed and say whether they are transient ([`error`]); the controller
//! retries those with backoff and leaves the others until the spec or its files change.
//!
//! Files: [`decide`] (observe and plan), [`execute`] (carrying a plan out), [`controller`] (the
//! scheduler and its error policy), [`status`] (the board `berth ps` reads), [`unit`] (the unit
//! a container runs as), [`files`] (the host files specs name).

pub mod controller;
pub mod decide;
pub mod error;
pub mod execute;
pub mod files;
pub mod joiners;
pub mod status;
pub mod unit;

pub use decide::{Decision, DepState, Facts, ImageState, Plan, Target, decide, observe, plan};
pub use error::{ImagesError, Persistence, ReconcileError};
pub use execute::reconcile;

use crate::spec::effective::{Effective, ImageConfig};
use crate::spec::{self, Spec, SpecFile};
use crate::systemd::{ActiveState, SystemdError, UnitSpec};
use berth_proto::OverlayRootfs;
use serde::{Deserialize, Serialize};
use status::Board;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A berth unit as systemd shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub name: String,
    /// `BERTH_SPEC_HASH` of the unit's environment.
    pub hash: Option<String>,
    pub active_state: ActiveState,
    pub sub_state: String,
    pub n_restarts: u32,
}

impl Observed {
    /// `active/running`, as `berth ps` shows it.
    pub fn unit_state(&self) -> String {
        format!("{}/{}", self.active_state, self.sub_state)
    }
}

/// The systemd side.
pub trait Units: Send + Sync + 'static {
    /// The container's unit, if systemd has one loaded.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Observed>, SystemdError>> + Send;
    /// Names of all containers that have a unit.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, SystemdError>> + Send;
    /// Starts the unit and waits for its start job.
    fn start(&self, unit: &UnitSpec) -> impl Future<Output = Result<(), SystemdError>> + Send;
    /// Stops the unit and waits for its stop job (Ok when there is none).
    fn stop(
        &self,
        name: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
}

/// An image ready to run: its digest, config and unpacked layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub digest: String,
    pub config: ImageConfig,
}

/// Pull progress callback: percent 0..=100, and why the pull waits while a failed request waits
/// to be tried again.
pub type Progress = Arc<dyn Fn(u8, Option<&str>) + Send + Sync>;

/// The image side.
pub trait Images: Send + Sync + 'static {
    /// The image the spec names, if it is in the store (an `image_file` is imported here: local).
    fn lookup(
        &self,
        spec: &Spec,
    ) -> impl Future<Output = Result<Option<ResolvedImage>, ImagesError>> + Send;
    /// Fetches the image from its registry.
    fn pull(
        &self,
        spec: &Spec,
        progress: Progress,
    ) -> impl Future<Output = Result<ResolvedImage, ImagesError>> + Send;
    /// Unpacks what is missing and gives the container fresh upper/work dirs.
    fn prepare(
        &self,
        name: &str,
        spec: &Spec,
        image: &ResolvedImage,
    ) -> impl Future<Output = Result<OverlayRootfs, ImagesError>> + Send;
    /// Removes the container's upper/work dirs.
    fn release(&self, name: &str) -> impl Future<Output = Result<(), ImagesError>> + Send;
}

/// Where things are, and what to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `/etc/berth/containers`.
    pub spec_dir: PathBuf,
    /// Specs made through the API: `/var/lib/berth/specs`.
    pub api_spec_dir: PathBuf,
    /// berthd's per-container records (`<name>.json`): `/var/lib/berth/agent`.
    pub state_dir: PathBuf,
    /// Bundles: `/run/berth/containers`.
    pub bundle_dir: PathBuf,
    pub volumes_dir: PathBuf,
    /// Absolute path of berth-shim.
    pub shim: PathBuf,
    /// The bridge network's paths; `None`: `network_mode: bridge` gets loopback only.
    pub network: Option<crate::bundle::NetworkPaths>,
}

/// What a pass asks for next (kube-runtime's `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do until something changes (a trigger or the periodic resync).
    AwaitChange,
    /// Look again after this long.
    Requeue(Duration),
}

/// berthd's record of what it last started for a name; lets a finished job stay finished across
/// passes and agent restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub hash: String,
    pub image_digest: String,
}

/// The files a container's spec rests on and how each is on disk ([`Ctx::fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(std::collections::BTreeMap<PathBuf, Option<FileStamp>>);

impl Fingerprint {
    /// Adds the files of `later` this one does not have (files a pass learned its spec names).
    pub fn add_new(&mut self, later: Fingerprint) {
        for (path, stamp) in later.0 {
            self.0.entry(path).or_insert(stamp);
        }
    }
}

/// A file's identity and last change: a rewrite, a replace by rename or a chmod all show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

pub struct Ctx<U, I> {
    pub units: U,
    pub images: I,
    pub settings: Settings,
    pub board: Arc<Board>,
    /// Names whose next pass restarts them (`berth restart`), even with an unchanged hash.
    pub restarts: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The host files each spec names for their contents, for berthd to watch.
    pub files: files::FileRefs,
    /// Which containers join which one's network namespace, from the spec files.
    pub joins: joiners::JoinIndex,
}

impl<U: Units, I: Images> Ctx<U, I> {
    pub fn new(units: U, images: I, settings: Settings) -> Self {
        Ctx {
            units,
            images,
            settings,
            board: Arc::new(Board::default()),
            restarts: Default::default(),
            files: Default::default(),
            joins: Default::default(),
        }
    }

    /// Asks the next pass of `name` to restart it.
    pub fn request_restart(&self, name: &str) {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
    }

    /// `<state>/<name>.stopped`: `berth stop` (or Docker's) holds the container stopped until
    /// `berth start`, across berthd restarts and reboots.
    fn stopped_path(&self, name: &str) -> PathBuf {
        self.settings.state_dir.join(format!("{name}.stopped"))
    }

    /// Whether `name` is held stopped.
    pub fn held_stopped(&self, name: &str) -> bool {
        self.stopped_path(name).exists()
    }

    /// Holds `name` stopped (or lets it run again); the next pass acts on it.
    pub fn hold_stopped(&self, name: &str, stopped: bool) -> Result<(), ReconcileError> {
        let p = self.stopped_path(name);
        let err = |source| ReconcileError::State {
            name: name.into(),
            path: p.clone(),
            source,
        };
        if stopped {
            std::fs::create_dir_all(&self.settings.state_dir).map_err(err)?;
            crate::fsutil::write_atomic(&p, b"").map_err(err)
        } else {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            }
        }
    }

    /// Whether a restart of `name` was asked for and not done yet.
    fn restart_requested(&self, name: &str) -> bool {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    fn take_restart(&self, name: &str) -> bool {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// The spec of `name`: its file in the spec dir, else an API-made one.
    pub fn desired(&self, name: &str) -> Option<SpecFile> {
        self.spec_path(name).map(|p| spec::load(&p))
    }

    /// The spec file of `name`: the first of the spec directory's and then the API's
    /// `NAME.yaml` and `NAME.yml`.
    pub fn spec_path(&self, name: &str) -> Option<PathBuf> {
        [&self.settings.spec_dir, &self.settings.api_spec_dir]
            .into_iter()
            .flat_map(|dir| ["yaml", "yml"].map(|ext| dir.join(format!("{name}.{ext}"))))
            .find(|p| p.exists())
    }

    /// Every name that is desired or observed: the full relist.
    pub async fn all_names(&self) -> Result<Vec<String>, SystemdError> {
        let mut names: Vec<String> = self.units.list().await?;
        for dir in [&self.settings.spec_dir, &self.settings.api_spec_dir] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                names.extend(
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| spec::name_of(&e.path()).map(str::to_owned)),
                );
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.settings.state_dir) {
            names.extend(
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|f| f.strip_suffix(".json").map(str::to_owned)),
            );
        }
        names.sort();
        names.dedup();
        names.retain(|n| spec::is_valid_name(n));
        Ok(names)
    }

    /// What a permanent failure of `name` rests on: its spec file and the files its last pass
    /// found it naming (image archive included), each as it is on disk now. The controller runs a name that failed
    /// permanently again only once this differs.
    pub fn fingerprint(&self, name: &str) -> Fingerprint {
        let mut paths: Vec<PathBuf> = [&self.settings.spec_dir, &self.settings.api_spec_dir]
            .into_iter()
            .flat_map(|d| ["yaml", "yml"].map(|ext| d.join(format!("{name}.{ext}"))))
            .collect();
        paths.extend(self.files.paths_of(name));
        Fingerprint(
            paths
                .into_iter()
                .map(|p| {
                    let stamp = std::fs::metadata(&p).ok().map(|m| FileStamp::of(&m));
                    (p, stamp)
                })
                .collect(),
        )
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.settings.state_dir.join(format!("{name}.json"))
    }

    pub fn record(&self, name: &str) -> Option<Record> {
        serde_json::from_slice(&std::fs::read(self.record_path(name)).ok()?).ok()
    }

    /// Records `eff` as what berthd last started for `name`.
    fn write_record(&self, name: &str, eff: &Effective) -> Result<(), ReconcileError> {
        let r = Record {
            hash: eff.hash.clone(),
            image_digest: eff.image_digest.clone(),
        };
        let p = self.record_path(name);
        let err = |source| ReconcileError::State {
            name: name.into(),
            path: p.clone(),
            source,
        };
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new("/"))).map_err(err)?;
        crate::fsutil::write_atomic(&p, &serde_json::to_vec(&r).unwrap_or_default()).map_err(err)
    }

    /// Drops `name`'s record (a start that made no unit).
    fn forget_record(&self, name: &str) {
        if let Err(e) = std::fs::remove_file(self.record_path(name))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove the record of {name}: {e}");
        }
    }

    fn bundle_path(&self, name: &str) -> PathBuf {
        self.settings.bundle_dir.join(name)
    }

    /// Removes what a container leaves on disk once it has no spec and no unit.
    /// Detaches a root filesystem the shim left mounted (it was SIGKILLed before its cleanup), so
    /// that the upper dir and the bundle can be removed.
    fn unmount_rootfs(&self, name: &str) {
        let rootfs = self.bundle_path(name).join("rootfs");
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => tracing::info!("detached a leftover rootfs mount"),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => tracing::warn!("cannot unmount {}: {e}", rootfs.display()),
        }
    }

    async fn clean(&self, name: &str) -> Result<(), ReconcileError> {
        self.unmount_rootfs(name);
        self.images
            .release(name)
            .await
            .map_err(ReconcileError::image(name))?;
        if let Err(e) = std::fs::remove_dir_all(self.bundle_path(name))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove its bundle: {e}");
        }
        let _ = std::fs::remove_file(self.record_path(name));
        let _ = std::fs::remove_file(self.stopped_path(name));
        Ok(())
    }
}

#[cfg(test)]
pub mod fakes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_controller;
#[cfg(test)]
mod tests_network;

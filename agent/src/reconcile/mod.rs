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
//! fakes.

pub mod controller;
pub mod files;
pub mod status;
pub mod unit;

use crate::bundle::{self, Paths};
use crate::spec::effective::{self, Effective, ImageConfig, Inputs};
use crate::spec::{self, Condition, PullPolicy, Readiness, Restart, Spec, SpecFile};
use crate::systemd::UnitSpec;
use berth_proto::OverlayRootfs;
use serde::{Deserialize, Serialize};
use status::{Board, ContainerStatus, Phase};
use std::collections::BTreeMap;
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
    pub active_state: String,
    pub sub_state: String,
    pub n_restarts: u32,
}

/// The systemd side.
pub trait Units: Send + Sync + 'static {
    /// The container's unit, if systemd has one loaded.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<Observed>, String>> + Send;
    /// Names of all containers that have a unit.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, String>> + Send;
    /// Starts the unit and waits for its start job.
    fn start(&self, unit: &UnitSpec) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops the unit and waits for its stop job (Ok when there is none).
    fn stop(
        &self,
        name: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// An image ready to run: its digest, config and unpacked layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    pub digest: String,
    pub config: ImageConfig,
}

/// Pull progress callback (percent 0..=100).
pub type Progress = Arc<dyn Fn(u8) + Send + Sync>;

/// The image side.
pub trait Images: Send + Sync + 'static {
    /// The image the spec names, if it is in the store (an `image_file` is imported here: local).
    fn lookup(
        &self,
        spec: &Spec,
    ) -> impl Future<Output = Result<Option<ResolvedImage>, String>> + Send;
    /// Fetches the image from its registry.
    fn pull(
        &self,
        spec: &Spec,
        progress: Progress,
    ) -> impl Future<Output = Result<ResolvedImage, String>> + Send;
    /// Unpacks what is missing and gives the container fresh upper/work dirs.
    fn prepare(
        &self,
        name: &str,
        spec: &Spec,
        image: &ResolvedImage,
    ) -> impl Future<Output = Result<OverlayRootfs, String>> + Send;
    /// Removes the container's upper/work dirs.
    fn release(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
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
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("container {name}: the reconcile pass panicked")]
    Panicked { name: String },
    #[error("container {name}: systemd: {message}")]
    Units { name: String, message: String },
    #[error("container {name}: image: {message}")]
    Image { name: String, message: String },
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error("container {name}: cannot write state {path}: {source}")]
    State {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
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

pub struct Ctx<U, I> {
    pub units: U,
    pub images: I,
    pub settings: Settings,
    pub board: Arc<Board>,
    /// Names whose next pass restarts them (`berth restart`), even with an unchanged hash.
    pub restarts: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The host files each spec names for their contents, for berthd to watch.
    pub files: files::FileRefs,
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
        }
    }

    /// Asks the next pass of `name` to restart it.
    pub fn request_restart(&self, name: &str) {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
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
        for dir in [&self.settings.spec_dir, &self.settings.api_spec_dir] {
            for ext in ["yaml", "yml"] {
                let p = dir.join(format!("{name}.{ext}"));
                if p.exists() {
                    return Some(spec::load(&p));
                }
            }
        }
        None
    }

    /// Every name that is desired or observed: the full relist.
    pub async fn all_names(&self) -> Result<Vec<String>, String> {
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

    fn bundle_path(&self, name: &str) -> PathBuf {
        self.settings.bundle_dir.join(name)
    }

    /// Removes what a container leaves on disk once it has no spec and no unit.
    /// Detaches a root filesystem the shim left mounted (it was SIGKILLed before its cleanup), so
    /// that the upper dir and the bundle can be removed.
    fn unmount_rootfs(&self, name: &str) {
        let rootfs = self.bundle_path(name).join("rootfs");
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => tracing::info!(container = name, "{name}: detached a leftover rootfs mount"),
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => tracing::warn!(
                container = name,
                "{name}: unmounting {}: {e}",
                rootfs.display()
            ),
        }
    }

    async fn clean(&self, name: &str) -> Result<(), ReconcileError> {
        self.unmount_rootfs(name);
        self.images
            .release(name)
            .await
            .map_err(|message| ReconcileError::Image {
                name: name.into(),
                message,
            })?;
        if let Err(e) = std::fs::remove_dir_all(self.bundle_path(name))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container = name, "{name}: removing its bundle: {e}");
        }
        let _ = std::fs::remove_file(self.record_path(name));
        Ok(())
    }

    fn units_err(name: &str) -> impl FnOnce(String) -> ReconcileError + '_ {
        move |message| ReconcileError::Units {
            name: name.into(),
            message,
        }
    }
}

/// Everything one decision about a name looks at, read from its spec file, systemd, the image
/// store and berthd's records without changing any of them ([`observe`]).
#[derive(Debug)]
pub struct Facts {
    pub name: String,
    /// Its spec (file or API-made), if it has one.
    pub desired: Option<SpecFile>,
    /// Its unit, if systemd has one loaded.
    pub observed: Option<Observed>,
    /// What berthd last started for it.
    pub record: Option<Record>,
    /// `berth restart` asked for a restart that no pass has done yet.
    pub restart_requested: bool,
    /// The image the spec names. The fields below are only read for a valid spec.
    pub image: ImageState,
    /// The files the spec names whose contents go into the container, or why one cannot be read.
    pub inputs: Result<Inputs, String>,
    /// Each dependency's state, by name.
    pub deps: BTreeMap<String, DepState>,
}

/// Where the image a spec names stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    /// Not in the store.
    Missing,
    /// In the store before this pass.
    Local(ResolvedImage),
    /// Pulled by this very pass.
    Pulled(ResolvedImage),
}

/// What a dependent looks at in a dependency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepState {
    pub unit: Option<Observed>,
    /// Whether its spec says `readiness: healthy`; None when it has no valid spec.
    pub declares_healthy: Option<bool>,
    /// berthd started it once (a finished job has a record and no unit).
    pub has_record: bool,
}

impl Facts {
    /// The spec, when the name has a valid one.
    pub fn spec(&self) -> Option<&Spec> {
        self.desired.as_ref().and_then(|d| d.spec.as_ref().ok())
    }
}

/// The action planned for one name, with its reason: what `berth diff` shows and what a pass does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    /// Leave it as it is: its unit runs this very spec, or it is a job that finished.
    Nothing { reason: String },
    /// Fetch the image first; the pass then decides again with the image in hand.
    Pull { image: String, reason: String },
    /// Start its unit (it has none, or systemd gave up on it).
    Start { hash: String, reason: String },
    /// Stop its unit and start it again (`berth restart`).
    Restart { hash: String, reason: String },
    /// Stop the unit that runs another spec and start this one.
    Replace {
        old_hash: Option<String>,
        hash: String,
        reason: String,
    },
    /// No spec: stop its unit, if any, and remove what the container left on disk.
    Stop { reason: String },
    /// The spec cannot be run; a running unit is left as it is.
    Invalid { error: String },
    /// A required dependency is not ready: look again shortly.
    Wait { on: String, reason: String },
}

/// What would run: the effective spec and the image it was resolved with.
#[derive(Debug, Clone)]
pub struct Target {
    pub eff: Effective,
    pub image: ResolvedImage,
}

/// A decision and what carrying it out needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub decision: Decision,
    /// The spec file, for the status and the unit.
    pub file: Option<String>,
    /// Set once the spec and its image resolved (for every decision but Stop, Pull and Invalid).
    pub target: Option<Target>,
}

/// Reads the [`Facts`] about `name`. Changes nothing, except that an `image_file` is imported into
/// the store when it is not there yet (that is how its digest is known), and that the files its
/// spec names are noted in [`Ctx::files`] for berthd to watch.
pub async fn observe<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<Facts, ReconcileError> {
    let mut facts = Facts {
        name: name.to_owned(),
        desired: ctx.desired(name),
        observed: ctx
            .units
            .get(name)
            .await
            .map_err(Ctx::<U, I>::units_err(name))?,
        record: ctx.record(name),
        restart_requested: ctx.restart_requested(name),
        image: ImageState::Missing,
        inputs: Ok(Inputs::default()),
        deps: BTreeMap::new(),
    };
    if let Some(SpecFile { spec: Ok(spec), .. }) = &facts.desired {
        let local = ctx
            .images
            .lookup(spec)
            .await
            .map_err(|message| ReconcileError::Image {
                name: name.into(),
                message,
            })?;
        facts.image = local.map_or(ImageState::Missing, ImageState::Local);
        facts.inputs = effective::read_inputs(spec).map_err(|e| e.to_string());
        for dep in spec.depends_on.0.keys() {
            let unit = ctx
                .units
                .get(dep)
                .await
                .map_err(Ctx::<U, I>::units_err(dep))?;
            let declares_healthy = match ctx.desired(dep) {
                Some(SpecFile { spec: Ok(s), .. }) => Some(s.readiness == Some(Readiness::Healthy)),
                _ => None,
            };
            facts.deps.insert(
                dep.clone(),
                DepState {
                    unit,
                    declares_healthy,
                    has_record: ctx.record(dep).is_some(),
                },
            );
        }
    }
    ctx.files.set(
        name,
        facts.spec().map(effective::input_paths).unwrap_or_default(),
    );
    Ok(facts)
}

/// The one decision: what a pass does about a name in the state `f` describes. Pure; `reconcile`
/// carries the plan out and `decide` (`berth diff`) only reports it.
pub fn plan(f: &Facts) -> Plan {
    let file = f.desired.as_ref().map(|d| d.path.display().to_string());
    let only = |decision| Plan {
        decision,
        file: file.clone(),
        target: None,
    };
    let spec = match &f.desired {
        None => {
            let reason = match &f.observed {
                Some(u) => format!("no spec; its unit is {}", u.active_state),
                None => "no spec and no unit; files left on disk".into(),
            };
            return only(Decision::Stop { reason });
        }
        Some(SpecFile { spec: Err(e), .. }) => {
            return only(Decision::Invalid {
                error: e.to_string(),
            });
        }
        Some(SpecFile { spec: Ok(s), .. }) => s,
    };

    // The image: in the store, or pulled first (outside any unit's start timeout).
    let pull = |reason: &str| {
        only(Decision::Pull {
            image: spec.image.clone().unwrap_or_default(),
            reason: reason.into(),
        })
    };
    let never = spec.pull_policy == PullPolicy::Never || spec.image_file.is_some();
    let image = match &f.image {
        ImageState::Pulled(i) => i,
        ImageState::Local(i) if spec.pull_policy != PullPolicy::Always || f.observed.is_some() => i,
        _ if never => {
            return only(Decision::Invalid {
                error: "image not in the store and pull_policy is never".into(),
            });
        }
        ImageState::Local(_) => return pull("pull_policy is always"),
        ImageState::Missing => return pull("not in the store"),
    };

    let eff = match &f.inputs {
        Err(error) => Err(error.clone()),
        Ok(inputs) => effective::resolve(&f.name, spec, &image.digest, &image.config, inputs)
            .map_err(|e| e.to_string()),
    };
    let eff = match eff {
        Ok(e) => e,
        Err(error) => return only(Decision::Invalid { error }),
    };

    let hash = eff.hash.clone();
    let unit_with_this_hash = f
        .observed
        .as_ref()
        .filter(|u| u.hash.as_deref() == Some(eff.hash.as_str()));
    let decision = if f.restart_requested {
        Decision::Restart {
            hash,
            reason: "restart requested".into(),
        }
    } else if let Some(u) = unit_with_this_hash {
        // Up to date: adopt it whatever its state; systemd's Restart= handles exits. Only when
        // systemd gave up (start limit) on a container that should run is it started again.
        if u.active_state == "failed" && spec.restart != Restart::No {
            Decision::Start {
                hash,
                reason: format!("unit failed ({}); starting it again", u.sub_state),
            }
        } else {
            Decision::Nothing {
                reason: format!("up to date ({}/{})", u.active_state, u.sub_state),
            }
        }
    } else if let Some((on, reason)) = unready_dependency(spec, &f.deps) {
        // Dependencies must have their units before this one asks for them.
        Decision::Wait { on, reason }
    } else if let Some(u) = &f.observed {
        Decision::Replace {
            old_hash: u.hash.clone(),
            hash,
            reason: "effective spec changed (the spec, its image or a file it names)".into(),
        }
    } else if f.record.as_ref().is_some_and(|r| r.hash == eff.hash)
        && spec.restart != Restart::Always
    {
        // It ran this very spec and finished: a job stays done until its spec changes.
        Decision::Nothing {
            reason: "finished; not restarted (restart policy)".into(),
        }
    } else {
        Decision::Start {
            hash,
            reason: "not running".into(),
        }
    };
    Plan {
        decision,
        file,
        target: Some(Target {
            eff,
            image: image.clone(),
        }),
    }
}

/// The first required dependency that is not ready, and why.
fn unready_dependency(spec: &Spec, deps: &BTreeMap<String, DepState>) -> Option<(String, String)> {
    spec.depends_on
        .0
        .iter()
        .filter(|(_, d)| d.required)
        .find_map(|(dep, d)| {
            let state = deps.get(dep).cloned().unwrap_or_default();
            dependency_wait(dep, d.condition, &state).map(|why| (dep.clone(), why))
        })
}

/// Why `dep` is not ready for a dependent yet, or None when it is.
fn dependency_wait(dep: &str, cond: Condition, d: &DepState) -> Option<String> {
    let unit = d.unit.as_ref();
    match cond {
        Condition::ServiceCompletedSuccessfully => match unit {
            Some(u) if u.active_state == "failed" => Some(format!("{dep} failed")),
            Some(_) => Some(format!("waiting for {dep} to finish")),
            None if d.has_record => None,
            None => Some(format!("waiting for {dep} to run")),
        },
        Condition::ServiceHealthy => match unit {
            _ if d.declares_healthy == Some(false) => Some(format!(
                "{dep} must set `readiness: healthy` to be waited for as service_healthy"
            )),
            Some(u) if u.active_state == "active" => None,
            Some(u) => Some(format!(
                "waiting for {dep} to be healthy ({})",
                u.active_state
            )),
            None => Some(format!("waiting for {dep} to start")),
        },
        Condition::ServiceStarted => match unit {
            Some(u) if u.active_state == "active" || u.active_state == "activating" => None,
            _ => Some(format!("waiting for {dep} to start")),
        },
    }
}

/// What a pass would do for `name`, without doing anything (`berth diff`). Never pulls.
pub async fn decide<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<Decision, ReconcileError> {
    Ok(plan(&observe(ctx, name).await?).decision)
}

/// One reconcile pass for `name`: observe, plan, carry the plan out.
pub async fn reconcile<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<Action, ReconcileError> {
    reconcile_traced(ctx, name).await.map(|(action, _)| action)
}

/// [`reconcile`], also returning the decisions it carried out (a pull, then what came after it).
async fn reconcile_traced<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<(Action, Vec<Decision>), ReconcileError> {
    let mut facts = observe(ctx, name).await?;
    let mut p = plan(&facts);
    let mut done = Vec::new();
    if let Decision::Pull { image, .. } = &p.decision
        && let Some(spec) = facts.spec()
    {
        let pulled = pull(ctx, name, spec, image).await?;
        done.push(p.decision);
        facts.image = ImageState::Pulled(pulled);
        p = plan(&facts);
    }
    done.push(p.decision.clone());
    let action = execute(ctx, name, &facts, p).await?;
    Ok((action, done))
}

/// Fetches the spec's image, showing the progress on the board.
async fn pull<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
    spec: &Spec,
    image_ref: &str,
) -> Result<ResolvedImage, ReconcileError> {
    ctx.board.update(name, |s| {
        s.phase = Phase::Pulling { percent: None };
        s.image = Some(image_ref.to_owned());
        s.message = None;
    });
    let board = ctx.board.clone();
    let n = name.to_owned();
    let progress: Progress =
        Arc::new(move |p| board.update(&n, |s| s.phase = Phase::Pulling { percent: Some(p) }));
    tracing::info!(container = name, image = %image_ref, "{name}: pulling {image_ref}");
    ctx.images
        .pull(spec, progress)
        .await
        .map_err(|message| ReconcileError::Image {
            name: name.into(),
            message,
        })
}

/// Carries out a plan made from `facts`.
async fn execute<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
    facts: &Facts,
    plan: Plan,
) -> Result<Action, ReconcileError> {
    let observed = facts.observed.as_ref();
    let file = plan.file;
    let Some(Target { eff, image }) = &plan.target else {
        // Stop and Invalid are decided before the spec resolves (and so is Pull, carried out
        // before the plan is made again).
        return match plan.decision {
            Decision::Stop { .. } => {
                if let Some(u) = observed {
                    tracing::info!(
                        container = name,
                        "{name}: no spec: stopping its unit ({})",
                        u.active_state
                    );
                    ctx.units
                        .stop(name, Duration::from_secs(120))
                        .await
                        .map_err(Ctx::<U, I>::units_err(name))?;
                }
                ctx.clean(name).await?;
                ctx.board.remove(name);
                Ok(Action::AwaitChange)
            }
            Decision::Invalid { error } => Ok(invalid(ctx, name, file, observed, error)),
            _ => Ok(Action::Requeue(Duration::from_secs(1))),
        };
    };

    let set_status = |phase: Phase, message: Option<String>, unit_state: Option<String>| {
        let mut st = ContainerStatus::new(name, phase);
        st.spec_file = file.clone();
        st.image = Some(eff.image_ref.clone());
        st.image_digest = Some(eff.image_digest.clone());
        st.spec_hash = Some(eff.hash.clone());
        st.message = message;
        st.unit_state = unit_state;
        st.last_exit = berth_proto::ExitRecord::load(&ctx.bundle_path(name));
        ctx.board.set(st);
    };
    let stop_timeout = eff.stop_timeout + Duration::from_secs(30);
    match plan.decision {
        Decision::Nothing { reason } => {
            let Some(u) = observed else {
                set_status(Phase::Exited, Some(reason), None);
                return Ok(Action::AwaitChange);
            };
            let phase = match u.active_state.as_str() {
                "active" | "reloading" => Phase::Running,
                "activating" => Phase::Starting,
                "failed" => Phase::Failed,
                _ => Phase::Exited,
            };
            let why = (phase == Phase::Failed)
                .then(|| format!("unit failed ({}); see `berth logs {name}`", u.sub_state));
            set_status(
                phase,
                why,
                Some(format!("{}/{}", u.active_state, u.sub_state)),
            );
            if facts.record.as_ref().is_none_or(|r| r.hash != eff.hash) {
                ctx.write_record(name, eff)?;
            }
            Ok(Action::AwaitChange)
        }
        Decision::Start { reason, .. } => {
            if let Some(u) = observed {
                tracing::warn!(container = name, "{name}: {reason}");
                set_status(
                    Phase::Failed,
                    Some(reason),
                    Some(format!("{}/{}", u.active_state, u.sub_state)),
                );
            }
            start(ctx, name, eff, image, file.as_deref()).await
        }
        Decision::Restart { .. } => {
            ctx.take_restart(name);
            tracing::info!(container = name, "{name}: restart requested");
            if observed.is_some() {
                ctx.units
                    .stop(name, stop_timeout)
                    .await
                    .map_err(Ctx::<U, I>::units_err(name))?;
            }
            start(ctx, name, eff, image, file.as_deref()).await
        }
        Decision::Replace { old_hash, .. } => {
            tracing::info!(container = name, old = old_hash.as_deref().unwrap_or("-"), new = %eff.hash, "{name}: spec changed: replacing");
            ctx.units
                .stop(name, stop_timeout)
                .await
                .map_err(Ctx::<U, I>::units_err(name))?;
            ctx.unmount_rootfs(name);
            ctx.images
                .release(name)
                .await
                .map_err(|message| ReconcileError::Image {
                    name: name.into(),
                    message,
                })?;
            start(ctx, name, eff, image, file.as_deref()).await
        }
        Decision::Wait { on, reason } => {
            set_status(
                Phase::Waiting { on },
                Some(reason),
                observed.map(|u| u.active_state.clone()),
            );
            Ok(Action::Requeue(Duration::from_secs(1)))
        }
        Decision::Invalid { error } => Ok(invalid(ctx, name, file, observed, error)),
        // Made only before the spec resolved (handled above).
        Decision::Stop { .. } | Decision::Pull { .. } => {
            Ok(Action::Requeue(Duration::from_secs(1)))
        }
    }
}

/// Marks the name invalid and leaves its unit alone.
fn invalid<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
    file: Option<String>,
    observed: Option<&Observed>,
    error: String,
) -> Action {
    tracing::warn!(
        container = name,
        spec_file = file.as_deref().unwrap_or(""),
        "{name}: invalid spec: {error}"
    );
    let mut st = ContainerStatus::new(name, Phase::Invalid);
    st.spec_file = file;
    st.message = Some(match observed {
        Some(u) => format!("{error} (running unit left as it was: {})", u.active_state),
        None => error,
    });
    st.unit_state = observed.map(|u| format!("{}/{}", u.active_state, u.sub_state));
    st.spec_hash = observed.and_then(|u| u.hash.clone());
    ctx.board.set(st);
    Action::AwaitChange
}

async fn start<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
    eff: &Effective,
    image: &ResolvedImage,
    file: Option<&str>,
) -> Result<Action, ReconcileError> {
    ctx.board.update(name, |s| {
        s.phase = Phase::Starting;
        s.message = None;
        s.spec_hash = Some(eff.hash.clone());
    });
    let rootfs = ctx
        .images
        .prepare(name, &eff.spec, image)
        .await
        .map_err(|message| ReconcileError::Image {
            name: name.into(),
            message,
        })?;
    let bundle_dir = ctx.bundle_path(name);
    bundle::write(
        &bundle_dir,
        eff,
        &rootfs,
        &Paths {
            volumes: ctx.settings.volumes_dir.clone(),
        },
    )?;
    let unit = unit::unit_spec(eff, &ctx.settings.shim, &bundle_dir, file.map(Path::new));
    // Recorded before the start: if berthd dies mid-start, the next pass sees the unit with this
    // hash and adopts it instead of starting it twice.
    ctx.write_record(name, eff)?;
    tracing::info!(container = name, hash = %eff.hash, "{name}: starting");
    ctx.units
        .start(&unit)
        .await
        .map_err(Ctx::<U, I>::units_err(name))?;
    let st = ctx.units.get(name).await.ok().flatten();
    ctx.board.update(name, |s| {
        s.phase = match st.as_ref().map(|u| u.active_state.as_str()) {
            Some("active") => Phase::Running,
            Some("activating") => Phase::Starting,
            // A job that already finished.
            None | Some("inactive") => Phase::Exited,
            _ => Phase::Failed,
        };
        s.unit_state = st
            .as_ref()
            .map(|u| format!("{}/{}", u.active_state, u.sub_state));
        s.image = Some(eff.image_ref.clone());
        s.image_digest = Some(eff.image_digest.clone());
        s.spec_file = file.map(str::to_owned);
    });
    Ok(Action::AwaitChange)
}

#[cfg(test)]
pub mod fakes;
#[cfg(test)]
mod tests;

//! The reconcile loop, in the shape of kube-runtime's controller: level-triggered and idempotent.
//! Each pass of a name compares desired (its spec file, or an API-made spec under the state dir)
//! with observed (its systemd unit, the image store, berthd's record of what it started) and makes
//! one step towards the desired state. Triggers only say *which* name to look at; the scheduler
//! ([`controller`]) dedupes and debounces them and never runs one name twice at once. The systemd
//! and image sides are traits so the decisions are tested with fakes. Runs in berthd.

pub mod controller;
pub mod status;
pub mod unit;

use crate::bundle::{self, Paths, Rootfs};
use crate::spec::effective::{self, Effective, ImageConfig};
use crate::spec::{self, Condition, PullPolicy, Readiness, Restart, Spec, SpecFile};
use crate::systemd::UnitSpec;
use serde::{Deserialize, Serialize};
use status::{Board, ContainerStatus, Phase};
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
    ) -> impl Future<Output = Result<Rootfs, String>> + Send;
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
}

impl<U: Units, I: Images> Ctx<U, I> {
    pub fn new(units: U, images: I, settings: Settings) -> Self {
        Ctx {
            units,
            images,
            settings,
            board: Arc::new(Board::default()),
            restarts: Default::default(),
        }
    }

    /// Asks the next pass of `name` to restart it.
    pub fn request_restart(&self, name: &str) {
        self.restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned());
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

    fn write_record(&self, name: &str, r: &Record) -> Result<(), ReconcileError> {
        let p = self.record_path(name);
        let err = |source| ReconcileError::State {
            name: name.into(),
            path: p.clone(),
            source,
        };
        std::fs::create_dir_all(p.parent().unwrap_or(Path::new("/"))).map_err(err)?;
        crate::fsutil::write_atomic(&p, &serde_json::to_vec(r).unwrap_or_default()).map_err(err)
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

/// Effective spec plus the image it came from: what a pass would run.
pub struct Plan {
    pub eff: Effective,
    pub image: ResolvedImage,
}

/// What a pass decided about one name, without doing it (for `berth diff` and tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Decision {
    Nothing {
        reason: String,
    },
    Pull {
        image: String,
    },
    Start {
        hash: String,
    },
    Replace {
        old_hash: Option<String>,
        hash: String,
    },
    Stop,
    Invalid {
        error: String,
    },
    Wait {
        on: String,
    },
}

/// One reconcile pass for `name`.
pub async fn reconcile<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<Action, ReconcileError> {
    let desired = ctx.desired(name);
    let observed = ctx
        .units
        .get(name)
        .await
        .map_err(Ctx::<U, I>::units_err(name))?;
    let file = desired.as_ref().map(|d| d.path.display().to_string());
    let spec = match desired {
        None => {
            if let Some(u) = &observed {
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
            return Ok(Action::AwaitChange);
        }
        Some(SpecFile { spec: Err(e), .. }) => {
            return Ok(invalid(ctx, name, file, observed.as_ref(), e.to_string()));
        }
        Some(SpecFile { spec: Ok(s), .. }) => s,
    };

    // The image: present, or pulled now (outside any unit's start timeout).
    let must_pull_always = spec.pull_policy == PullPolicy::Always && observed.is_none();
    let local = ctx
        .images
        .lookup(&spec)
        .await
        .map_err(|message| ReconcileError::Image {
            name: name.into(),
            message,
        })?;
    let image = match local {
        Some(i) if !must_pull_always => i,
        _ if spec.pull_policy == PullPolicy::Never || spec.image_file.is_some() => {
            return Ok(invalid(
                ctx,
                name,
                file,
                observed.as_ref(),
                "image not in the store and pull_policy is never".into(),
            ));
        }
        _ => {
            let image_ref = spec.image.clone().unwrap_or_default();
            ctx.board.update(name, |s| {
                s.phase = Phase::Pulling { percent: None };
                s.image = Some(image_ref.clone());
                s.message = None;
            });
            let board = ctx.board.clone();
            let n = name.to_owned();
            let progress: Progress = Arc::new(move |p| {
                board.update(&n, |s| s.phase = Phase::Pulling { percent: Some(p) })
            });
            tracing::info!(container = name, image = %image_ref, "{name}: pulling {image_ref}");
            ctx.images
                .pull(&spec, progress)
                .await
                .map_err(|message| ReconcileError::Image {
                    name: name.into(),
                    message,
                })?
        }
    };

    let env_files = match effective::read_env_files(&spec) {
        Ok(f) => f,
        Err(e) => return Ok(invalid(ctx, name, file, observed.as_ref(), e.to_string())),
    };
    let eff = match effective::resolve(name, &spec, &image.digest, &image.config, &env_files) {
        Ok(e) => e,
        Err(e) => return Ok(invalid(ctx, name, file, observed.as_ref(), e.to_string())),
    };

    let set_status = |phase: Phase, message: Option<String>, unit_state: Option<String>| {
        let mut st = ContainerStatus::new(name, phase);
        st.spec_file = file.clone();
        st.image = Some(eff.image_ref.clone());
        st.image_digest = Some(eff.image_digest.clone());
        st.spec_hash = Some(eff.hash.clone());
        st.message = message;
        st.unit_state = unit_state;
        ctx.board.set(st);
    };

    let restart = ctx.take_restart(name);
    if restart {
        tracing::info!(container = name, "{name}: restart requested");
        if observed.is_some() {
            ctx.units
                .stop(name, eff.stop_timeout + Duration::from_secs(30))
                .await
                .map_err(Ctx::<U, I>::units_err(name))?;
        }
        return start(ctx, name, &eff, &image, file.as_deref()).await;
    }
    if let Some(u) = &observed
        && u.hash.as_deref() == Some(eff.hash.as_str())
    {
        // Up to date: adopt it, whatever its state; systemd's Restart= handles exits.
        let state = format!("{}/{}", u.active_state, u.sub_state);
        let phase = match u.active_state.as_str() {
            "active" | "reloading" => Phase::Running,
            "activating" => Phase::Starting,
            "failed" => Phase::Failed,
            _ => Phase::Exited,
        };
        let retry = phase == Phase::Failed && spec.restart != Restart::No;
        let why = (phase == Phase::Failed)
            .then(|| format!("unit failed ({}); see `berth logs {name}`", u.sub_state));
        set_status(phase, why, Some(state));
        if retry {
            // systemd gave up (start limit) on a container that should run: try again later.
            tracing::warn!(container = name, "{name}: unit failed; starting it again");
            return start(ctx, name, &eff, &image, file.as_deref()).await;
        }
        if ctx.record(name).is_none_or(|r| r.hash != eff.hash) {
            ctx.write_record(
                name,
                &Record {
                    hash: eff.hash.clone(),
                    image_digest: eff.image_digest.clone(),
                },
            )?;
        }
        return Ok(Action::AwaitChange);
    }

    // Dependencies must have their units before this one asks for them.
    for (dep, d) in &spec.depends_on.0 {
        if let Some(why) = dependency_wait(ctx, dep, d.condition).await? {
            if !d.required {
                continue;
            }
            set_status(
                Phase::Waiting { on: dep.clone() },
                Some(why),
                observed.as_ref().map(|u| u.active_state.clone()),
            );
            return Ok(Action::Requeue(Duration::from_secs(1)));
        }
    }

    match &observed {
        Some(u) => {
            tracing::info!(container = name, old = u.hash.as_deref().unwrap_or("-"), new = %eff.hash, "{name}: spec changed: replacing");
            ctx.units
                .stop(name, eff.stop_timeout + Duration::from_secs(30))
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
            start(ctx, name, &eff, &image, file.as_deref()).await
        }
        None => {
            if let Some(r) = ctx.record(name)
                && r.hash == eff.hash
                && !matches!(spec.restart, Restart::Always)
            {
                // It ran this very spec and finished: a job stays done until its spec changes.
                set_status(
                    Phase::Exited,
                    Some("finished; not restarted (restart policy)".into()),
                    None,
                );
                return Ok(Action::AwaitChange);
            }
            start(ctx, name, &eff, &image, file.as_deref()).await
        }
    }
}

/// Why `dep` is not ready for a dependent yet, or None when it is.
async fn dependency_wait<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    dep: &str,
    cond: Condition,
) -> Result<Option<String>, ReconcileError> {
    let unit = ctx
        .units
        .get(dep)
        .await
        .map_err(Ctx::<U, I>::units_err(dep))?;
    let dep_spec = ctx.desired(dep);
    Ok(match cond {
        Condition::ServiceCompletedSuccessfully => match unit {
            Some(u) if u.active_state == "failed" => Some(format!("{dep} failed")),
            Some(_) => Some(format!("waiting for {dep} to finish")),
            None if ctx.record(dep).is_some() => None,
            None => Some(format!("waiting for {dep} to run")),
        },
        Condition::ServiceHealthy => {
            if let Some(SpecFile { spec: Ok(s), .. }) = &dep_spec
                && s.readiness != Some(Readiness::Healthy)
            {
                return Ok(Some(format!(
                    "{dep} must set `readiness: healthy` to be waited for as service_healthy"
                )));
            }
            match unit {
                Some(u) if u.active_state == "active" => None,
                Some(u) => Some(format!(
                    "waiting for {dep} to be healthy ({})",
                    u.active_state
                )),
                None => Some(format!("waiting for {dep} to start")),
            }
        }
        Condition::ServiceStarted => match unit {
            Some(u) if u.active_state == "active" || u.active_state == "activating" => None,
            _ => Some(format!("waiting for {dep} to start")),
        },
    })
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
    ctx.write_record(
        name,
        &Record {
            hash: eff.hash.clone(),
            image_digest: eff.image_digest.clone(),
        },
    )?;
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

/// What a pass would do for `name`, without doing anything (`berth diff`). Never pulls.
pub async fn decide<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<Decision, ReconcileError> {
    let desired = ctx.desired(name);
    let observed = ctx
        .units
        .get(name)
        .await
        .map_err(Ctx::<U, I>::units_err(name))?;
    let spec = match (desired, &observed) {
        (None, Some(_)) => return Ok(Decision::Stop),
        (None, None) => {
            return Ok(Decision::Nothing {
                reason: "no spec and no unit".into(),
            });
        }
        (Some(SpecFile { spec: Err(e), .. }), _) => {
            return Ok(Decision::Invalid {
                error: e.to_string(),
            });
        }
        (Some(SpecFile { spec: Ok(s), .. }), _) => s,
    };
    let Some(image) = ctx
        .images
        .lookup(&spec)
        .await
        .map_err(|message| ReconcileError::Image {
            name: name.into(),
            message,
        })?
    else {
        return Ok(Decision::Pull {
            image: spec.image.clone().unwrap_or_default(),
        });
    };
    let eff = match effective::read_env_files(&spec)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            effective::resolve(name, &spec, &image.digest, &image.config, &f)
                .map_err(|e| e.to_string())
        }) {
        Ok(e) => e,
        Err(error) => return Ok(Decision::Invalid { error }),
    };
    Ok(match observed {
        Some(u) if u.hash.as_deref() == Some(&eff.hash) => Decision::Nothing {
            reason: "up to date".into(),
        },
        Some(u) => Decision::Replace {
            old_hash: u.hash,
            hash: eff.hash,
        },
        None if ctx.record(name).is_some_and(|r| r.hash == eff.hash)
            && spec.restart != Restart::Always =>
        {
            Decision::Nothing {
                reason: "finished; not restarted".into(),
            }
        }
        None => Decision::Start { hash: eff.hash },
    })
}

#[cfg(test)]
pub mod fakes;
#[cfg(test)]
mod tests;

//! The deciding half of a pass: [`observe`] reads the [`Facts`] about a name, [`plan`] (pure)
//! makes the one [`Decision`] about them, [`decide`] is both for `berth diff`. Runs in berthd.

use super::{Ctx, Images, Observed, ReconcileError, Record, ResolvedImage, Units};
use crate::spec::effective::{self, Effective, Inputs};
use crate::spec::{Condition, NetworkMode, PullPolicy, Readiness, Restart, Spec, SpecFile};
use crate::systemd::ActiveState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// `berth stop` holds it stopped until `berth start`.
    pub held_stopped: bool,
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
    /// Its spec's `network_mode`; None when it has no valid spec.
    pub network_mode: Option<NetworkMode>,
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
    /// Held stopped (`berth stop`): its unit is stopped, its spec and bundle kept.
    Hold { reason: String },
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
    let desired = ctx.desired(name);
    // Noted first, so that a pass that fails below still watches them (and a permanent failure
    // is retried once one of them changes). The image archive too: replacing it changes what runs.
    let files = match &desired {
        Some(SpecFile { spec: Ok(s), .. }) => {
            let mut files = effective::input_paths(s);
            files.extend(s.image_file.clone());
            files
        }
        _ => Default::default(),
    };
    ctx.files.set(name, files);
    let mut facts = Facts {
        name: name.to_owned(),
        desired,
        observed: ctx
            .units
            .get(name)
            .await
            .map_err(ReconcileError::units(name))?,
        record: ctx.record(name),
        restart_requested: ctx.restart_requested(name),
        held_stopped: ctx.held_stopped(name),
        image: ImageState::Missing,
        inputs: Ok(Inputs::default()),
        deps: BTreeMap::new(),
    };
    if let Some(SpecFile { spec: Ok(spec), .. }) = &facts.desired {
        let local = ctx
            .images
            .lookup(spec)
            .await
            .map_err(ReconcileError::image(name))?;
        facts.image = local.map_or(ImageState::Missing, ImageState::Local);
        facts.inputs = effective::read_inputs(spec).map_err(|e| e.to_string());
        for dep in spec.dependencies().keys() {
            let unit = ctx
                .units
                .get(dep)
                .await
                .map_err(ReconcileError::units(dep))?;
            let (declares_healthy, network_mode) = match ctx.desired(dep) {
                Some(SpecFile { spec: Ok(s), .. }) => (
                    Some(s.readiness == Some(Readiness::Healthy)),
                    Some(s.network_mode),
                ),
                _ => (None, None),
            };
            facts.deps.insert(
                dep.clone(),
                DepState {
                    unit,
                    declares_healthy,
                    network_mode,
                    has_record: ctx.record(dep).is_some(),
                },
            );
        }
    }
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
    // Before the image: a container held stopped neither pulls nor starts.
    if f.held_stopped {
        return only(Decision::Hold {
            reason: "stopped by request; `berth start` runs it again".into(),
        });
    }

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

    if let Some(t) = spec.network_mode.container()
        && let Some(Some(m)) = f.deps.get(t).map(|d| d.network_mode.as_ref())
        && *m != NetworkMode::Bridge
    {
        return only(Decision::Invalid {
            error: format!(
                "network_mode: container:{t}: {t} has `network_mode: {m}`; only a container on the bridge has a namespace to join"
            ),
        });
    }
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
    // A container on another's network namespace waits for it even when asked to restart:
    // its target restarting is what asks (the old namespace is gone).
    let net_wait = spec.network_mode.container().and_then(|t| {
        let state = f.deps.get(t).cloned().unwrap_or_default();
        dependency_wait(t, Condition::ServiceStarted, &state).map(|why| (t.to_owned(), why))
    });
    let decision = if let Some((on, reason)) = net_wait.filter(|_| f.restart_requested) {
        Decision::Wait { on, reason }
    } else if f.restart_requested {
        Decision::Restart {
            hash,
            reason: "restart requested".into(),
        }
    } else if let Some(u) = unit_with_this_hash {
        // Up to date: adopt it whatever its state; systemd's Restart= handles exits. Only when
        // systemd gave up (start limit) on a container that should run is it started again.
        if u.active_state == ActiveState::Failed && spec.restart != Restart::No {
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
    spec.dependencies()
        .into_iter()
        .filter(|(_, d)| d.required)
        .find_map(|(dep, d)| {
            let state = deps.get(&dep).cloned().unwrap_or_default();
            dependency_wait(&dep, d.condition, &state).map(|why| (dep, why))
        })
}

/// Why `dep` is not ready for a dependent yet, or None when it is.
fn dependency_wait(dep: &str, cond: Condition, d: &DepState) -> Option<String> {
    let unit = d.unit.as_ref();
    match cond {
        Condition::ServiceCompletedSuccessfully => match unit {
            Some(u) if u.active_state == ActiveState::Failed => Some(format!("{dep} failed")),
            Some(_) => Some(format!("waiting for {dep} to finish")),
            None if d.has_record => None,
            None => Some(format!("waiting for {dep} to run")),
        },
        Condition::ServiceHealthy => match unit {
            _ if d.declares_healthy == Some(false) => Some(format!(
                "{dep} must set `readiness: healthy` to be waited for as service_healthy"
            )),
            Some(u) if u.active_state.is_up() => None,
            Some(u) => Some(format!(
                "waiting for {dep} to be healthy ({})",
                u.active_state
            )),
            None => Some(format!("waiting for {dep} to start")),
        },
        Condition::ServiceStarted => match unit {
            Some(u) if u.active_state.is_up() || u.active_state == ActiveState::Activating => None,
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

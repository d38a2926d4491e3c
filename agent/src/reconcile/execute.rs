//! The acting half of a pass: [`reconcile`] observes, plans and carries the plan out (pull,
//! stop, bundle, start, record), inside a `pass` span that names the container so that every
//! line it logs says which one. Runs in berthd.

use super::decide::{Decision, Facts, ImageState, Plan, Target, observe, plan};
use super::status::{ContainerStatus, Phase};
use super::{Action, Ctx, Images, Observed, Progress, ReconcileError, ResolvedImage, Units, unit};
use crate::bundle::{self, Paths};
use crate::spec::Spec;
use crate::spec::effective::Effective;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// One reconcile pass for `name`: observe, plan, carry the plan out.
pub async fn reconcile<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<Action, ReconcileError> {
    let span = tracing::info_span!("pass", container = name);
    async {
        let r = reconcile_traced(ctx, name).await;
        match &r {
            Ok((action, done)) => tracing::debug!(?done, ?action, "pass done"),
            Err(e) => tracing::debug!(persistence = ?e.persistence(), "pass failed: {e}"),
        }
        r.map(|(action, _)| action)
    }
    .instrument(span)
    .await
}

/// [`reconcile`], also returning the decisions it carried out (a pull, then what came after it).
pub(super) async fn reconcile_traced<U: Units, I: Images>(
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
    let progress: Progress = Arc::new(move |p, waiting| {
        board.update(&n, |s| {
            s.phase = Phase::Pulling { percent: Some(p) };
            s.message = waiting.map(str::to_owned);
        })
    });
    tracing::info!(image = %image_ref, "pulling {image_ref}");
    ctx.images
        .pull(spec, progress)
        .await
        .map_err(ReconcileError::image(name))
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
                    tracing::info!("no spec: stopping its unit ({})", u.active_state);
                    ctx.units
                        .stop(name, Duration::from_secs(120))
                        .await
                        .map_err(ReconcileError::units(name))?;
                }
                ctx.clean(name).await?;
                ctx.board.remove(name);
                Ok(Action::AwaitChange)
            }
            Decision::Invalid { error } => Ok(invalid(ctx, name, file, observed, error)),
            Decision::Hold { reason } => hold(ctx, name, file, observed, reason).await,
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
    let stop_timeout = crate::systemd::stop_job_wait(eff.stop_timeout);
    match plan.decision {
        Decision::Nothing { reason } => {
            let Some(u) = observed else {
                set_status(Phase::Exited, Some(reason), None);
                return Ok(Action::AwaitChange);
            };
            let phase = Phase::of_unit(Some(u.active_state));
            let why = (phase == Phase::Failed)
                .then(|| format!("unit failed ({}); see `berth logs {name}`", u.sub_state));
            set_status(phase, why, Some(u.unit_state()));
            if facts.record.as_ref().is_none_or(|r| r.hash != eff.hash) {
                ctx.write_record(name, eff)?;
            }
            Ok(Action::AwaitChange)
        }
        Decision::Start { reason, .. } => {
            if let Some(u) = observed {
                tracing::warn!("{reason}");
                set_status(Phase::Failed, Some(reason), Some(u.unit_state()));
            }
            let a = start(ctx, name, eff, image, file.as_deref()).await?;
            restart_network_joiners(ctx, name).await;
            Ok(a)
        }
        Decision::Restart { .. } => {
            ctx.take_restart(name);
            tracing::info!("restart requested");
            if observed.is_some() {
                stop_network_joiners(ctx, name).await?;
                ctx.units
                    .stop(name, stop_timeout)
                    .await
                    .map_err(ReconcileError::units(name))?;
            }
            let a = start(ctx, name, eff, image, file.as_deref()).await?;
            restart_network_joiners(ctx, name).await;
            Ok(a)
        }
        Decision::Replace { old_hash, .. } => {
            tracing::info!(
                old = old_hash.as_deref().unwrap_or("-"),
                new = %eff.hash,
                "spec changed: replacing"
            );
            stop_network_joiners(ctx, name).await?;
            ctx.units
                .stop(name, stop_timeout)
                .await
                .map_err(ReconcileError::units(name))?;
            ctx.unmount_rootfs(name);
            ctx.images
                .release(name)
                .await
                .map_err(ReconcileError::image(name))?;
            let a = start(ctx, name, eff, image, file.as_deref()).await?;
            restart_network_joiners(ctx, name).await;
            Ok(a)
        }
        Decision::Wait { on, reason } => {
            set_status(
                Phase::Waiting { on },
                Some(reason),
                observed.map(|u| u.active_state.to_string()),
            );
            Ok(Action::Requeue(Duration::from_secs(1)))
        }
        Decision::Invalid { error } => Ok(invalid(ctx, name, file, observed, error)),
        // Made only before the spec resolved (handled above).
        Decision::Stop { .. } | Decision::Hold { .. } | Decision::Pull { .. } => {
            Ok(Action::Requeue(Duration::from_secs(1)))
        }
    }
}

/// Stops the unit of a container held stopped, keeping its spec, bundle and record.
async fn hold<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
    file: Option<String>,
    observed: Option<&Observed>,
    reason: String,
) -> Result<Action, ReconcileError> {
    if let Some(u) = observed {
        // Containers on its network namespace would keep a namespace with no network left.
        stop_network_joiners(ctx, name).await?;
        tracing::info!("held stopped: stopping its unit ({})", u.active_state);
        ctx.units
            .stop(name, Duration::from_secs(120))
            .await
            .map_err(ReconcileError::units(name))?;
    }
    let mut st = ContainerStatus::new(name, Phase::Stopped);
    st.spec_file = file;
    st.message = Some(reason);
    st.spec_hash = ctx.record(name).map(|r| r.hash);
    st.last_exit = berth_proto::ExitRecord::load(&ctx.bundle_path(name));
    ctx.board.set(st);
    Ok(Action::AwaitChange)
}

/// The desired containers with `network_mode: container:<name>`.
async fn network_joiners<U: Units, I: Images>(ctx: &Ctx<U, I>, name: &str) -> Vec<String> {
    let dirs = [
        ctx.settings.spec_dir.as_path(),
        ctx.settings.api_spec_dir.as_path(),
    ];
    ctx.joins.joiners(&dirs, |n| ctx.spec_path(n), name)
}

/// Stops the containers on `name`'s namespace before `name` stops: they would lose their
/// network, and their units (which require `name`'s) would keep it loaded, so that it could not
/// be started again. [`restart_network_joiners`] brings them back once `name` runs.
async fn stop_network_joiners<U: Units, I: Images>(
    ctx: &Ctx<U, I>,
    name: &str,
) -> Result<(), ReconcileError> {
    for d in network_joiners(ctx, name).await {
        if matches!(ctx.units.get(&d).await, Ok(Some(_))) {
            tracing::info!(container = %d, "stopping it: the network namespace it joins is being replaced");
            ctx.units
                .stop(&d, Duration::from_secs(120))
                .await
                .map_err(ReconcileError::units(&d))?;
        }
    }
    Ok(())
}

/// Asks for a restart of every container with `network_mode: container:<name>` that ran before
/// (a unit or a record): the namespace it joined went with `name`'s previous run.
async fn restart_network_joiners<U: Units, I: Images>(ctx: &Ctx<U, I>, name: &str) {
    for d in network_joiners(ctx, name).await {
        let ran = ctx.record(&d).is_some() || matches!(ctx.units.get(&d).await, Ok(Some(_)));
        if ran {
            tracing::info!(container = %d, "restarting it: the network namespace it joins was replaced");
            ctx.request_restart(&d);
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
        spec_file = file.as_deref().unwrap_or(""),
        "invalid spec: {error}"
    );
    let mut st = ContainerStatus::new(name, Phase::Invalid);
    st.spec_file = file;
    st.message = Some(match observed {
        Some(u) => format!("{error} (running unit left as it was: {})", u.active_state),
        None => error,
    });
    st.unit_state = observed.map(Observed::unit_state);
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
        .map_err(ReconcileError::image(name))?;
    let bundle_dir = ctx.bundle_path(name);
    bundle::write(
        &bundle_dir,
        eff,
        &rootfs,
        &Paths {
            volumes: ctx.settings.volumes_dir.clone(),
            network: ctx.settings.network.clone(),
        },
    )?;
    let unit = unit::unit_spec(eff, &ctx.settings.shim, &bundle_dir, file.map(Path::new));
    // Recorded before the start: if berthd dies mid-start, the next pass sees the unit with this
    // hash and adopts it instead of starting it twice.
    ctx.write_record(name, eff)?;
    tracing::info!(hash = %eff.hash, "starting");
    if let Err(e) = ctx.units.start(&unit).await {
        // A start systemd refused (its bus busy, the unit rejected) made no unit: the record
        // must not make the next pass take the container for one that ran and finished.
        if matches!(ctx.units.get(name).await, Ok(None)) {
            ctx.forget_record(name);
        }
        return Err(ReconcileError::units(name)(e));
    }
    let st = ctx.units.get(name).await.ok().flatten();
    ctx.board.update(name, |s| {
        // No unit: a job that already finished.
        s.phase = Phase::of_unit(st.as_ref().map(|u| u.active_state));
        s.unit_state = st.as_ref().map(Observed::unit_state);
        s.image = Some(eff.image_ref.clone());
        s.image_digest = Some(eff.image_digest.clone());
        s.spec_file = file.map(str::to_owned);
        // A container that ended before its start job did has its exit recorded already: the
        // board shows it with its phase, so that no reader sees it ended without a code.
        s.last_exit = berth_proto::ExitRecord::load(&bundle_dir);
    });
    Ok(Action::AwaitChange)
}

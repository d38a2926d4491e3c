//! The scheduler that drives [`super::reconcile`]: triggers name containers (or ask for a full relist),
//! a name is run after a short debounce, the same name never runs twice at once (a trigger during
//! a run reruns it afterwards), and `Requeue` re-arms a timer. Failures follow one policy
//! ([`after_pass`]): a transient one backs off exponentially per name up to a cap, a permanent one
//! parks the name until its spec file or a file it names changes (or `berth restart` asks).
//! Level-triggered: a lost trigger costs latency until the periodic resync, never correctness.
//! Runs in berthd as one tokio task that spawns the passes.

use super::{Action, Ctx, Fingerprint, Images, Persistence, ReconcileError, Units};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Why a name should be looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// One container (its file changed, its unit changed, the API asked).
    Name(String),
    /// Everything desired or observed (start, overflow, systemd reconnect, periodic resync).
    All,
    /// Like `Name`, without debounce (explicit requests).
    Now(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Quiet time after a trigger before the pass (editors write in several steps).
    pub debounce: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// At most this many passes at once.
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            debounce: Duration::from_millis(200),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 64,
        }
    }
}

/// What the scheduler does with a name once a pass of it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPass {
    /// Nothing until a trigger (or the periodic resync).
    Idle,
    /// Run it again after this long: a requeue, or a transient failure's backoff.
    RunIn(Duration),
    /// It failed permanently: no pass until its spec or the files it names change.
    Park,
}

/// The error policy, given how the pass ended and how many passes of the name failed in a row
/// before it. Pure.
pub fn after_pass(
    result: Result<Action, Persistence>,
    failures_before: u32,
    opts: &Options,
) -> AfterPass {
    match result {
        Ok(Action::AwaitChange) => AfterPass::Idle,
        Ok(Action::Requeue(d)) => AfterPass::RunIn(d),
        Err(Persistence::Transient) => AfterPass::RunIn(backoff(failures_before, opts)),
        Err(Persistence::Permanent) => AfterPass::Park,
    }
}

/// `backoff_min` doubled per earlier failure, at most `backoff_max`.
pub fn backoff(failures_before: u32, opts: &Options) -> Duration {
    opts.backoff_min
        .saturating_mul(1u32 << failures_before.min(16))
        .min(opts.backoff_max)
}

/// Runs until the trigger channel closes. `ready` turns true once every name of the first full
/// listing has had a pass (berthd's READY=1).
pub async fn run<U: Units, I: Images>(
    ctx: Arc<Ctx<U, I>>,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
    opts: Options,
    ready: watch::Sender<bool>,
) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut dirty: HashSet<String> = HashSet::new();
    let mut failures: HashMap<String, u32> = HashMap::new();
    // Names that failed permanently, with what the failure rested on; and what each running
    // pass started from (taken before it reads anything, so that a change during the pass is
    // never mistaken for what failed).
    let mut parked: HashMap<String, Fingerprint> = HashMap::new();
    let mut started: HashMap<String, Fingerprint> = HashMap::new();
    let mut passes: JoinSet<(String, Result<Action, ReconcileError>)> = JoinSet::new();
    // Names of the first full listing still waiting for their first pass; None once ready.
    let mut first: Option<HashSet<String>> = None;
    let mut relist_pending = true;
    let mut open = true;

    loop {
        if relist_pending {
            relist_pending = false;
            match ctx.all_names().await {
                Ok(names) => {
                    let now = Instant::now();
                    if first.is_none() && !*ready.borrow() {
                        first = Some(names.iter().cloned().collect());
                    }
                    for n in names {
                        pending.entry(n).or_insert(now);
                    }
                }
                Err(e) => {
                    tracing::warn!("listing containers failed: {e}; retrying");
                    pending.insert(String::new(), Instant::now() + opts.backoff_min);
                }
            }
        }
        if let Some(f) = &first
            && f.is_empty()
        {
            first = None;
            let _ = ready.send(true);
        }

        // Start what is due.
        let now = Instant::now();
        let due: Vec<String> = pending
            .iter()
            .filter(|(n, t)| **t <= now && !running.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for n in due {
            if n.is_empty() {
                // The placeholder of a failed relist.
                pending.remove(&n);
                relist_pending = true;
                continue;
            }
            if running.len() >= opts.concurrency {
                break;
            }
            pending.remove(&n);
            let fingerprint = ctx.fingerprint(&n);
            if parked.get(&n) == Some(&fingerprint) && !ctx.restart_requested(&n) {
                // Parked, nothing it rests on changed, and no `berth restart` (which may have
                // come while its last pass ran).
                if let Some(f) = &mut first {
                    f.remove(&n);
                }
                continue;
            }
            parked.remove(&n);
            started.insert(n.clone(), fingerprint);
            running.insert(n.clone());
            let ctx = ctx.clone();
            passes.spawn(async move {
                use futures_util::FutureExt;
                // A panicking pass must not leave its name marked running forever.
                let r = std::panic::AssertUnwindSafe(super::reconcile(&ctx, &n))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(ReconcileError::Panicked { name: n.clone() }));
                (n, r)
            });
        }
        if relist_pending {
            continue;
        }
        if !open && running.is_empty() {
            return;
        }

        let next = pending
            .iter()
            .filter(|(n, _)| !running.contains(*n))
            .map(|(_, t)| *t)
            .min();
        tokio::select! {
            t = triggers.recv(), if open => match t {
                None => open = false,
                Some(Trigger::All) => relist_pending = true,
                Some(Trigger::Name(n)) | Some(Trigger::Now(n)) if running.contains(&n) => { dirty.insert(n); }
                Some(Trigger::Name(n)) => {
                    let at = Instant::now() + opts.debounce;
                    // The first trigger sets the time; later ones within the window join it
                    // rather than push it back, so a stream of events cannot starve a name
                    // (a write after the pass started reruns it: `dirty`).
                    pending.entry(n).or_insert(at);
                }
                Some(Trigger::Now(n)) => {
                    // An explicit request runs even a parked name.
                    parked.remove(&n);
                    pending.insert(n, Instant::now());
                }
            },
            Some(done) = passes.join_next(), if !passes.is_empty() => {
                let (name, result) = match done {
                    Ok(r) => r,
                    Err(e) => { tracing::error!("reconcile task failed: {e}"); continue; }
                };
                running.remove(&name);
                if let Some(f) = &mut first { f.remove(&name); }
                let now = Instant::now();
                let before = failures.get(&name).copied().unwrap_or(0);
                let next = after_pass(result.as_ref().map(|a| *a).map_err(ReconcileError::persistence), before, &opts);
                if let Err(e) = &result {
                    failed(&ctx, &name, e, next);
                }
                let fingerprint = started.remove(&name);
                match (&result, next) {
                    (Ok(_), _) => { failures.remove(&name); }
                    (Err(_), AfterPass::Park) => {
                        failures.remove(&name);
                        // As the pass found them; files it only learned of (its first pass) as
                        // they are now.
                        let mut f = fingerprint.unwrap_or_else(|| ctx.fingerprint(&name));
                        f.add_new(ctx.fingerprint(&name));
                        parked.insert(name.clone(), f);
                    }
                    (Err(_), _) => { failures.insert(name.clone(), before + 1); }
                }
                if let AfterPass::RunIn(d) = next {
                    pending.insert(name.clone(), now + d);
                }
                if dirty.remove(&name) {
                    // A trigger arrived during the pass: keep a backoff if one is set.
                    pending.entry(name).or_insert(now + opts.debounce);
                }
                // Restarts the pass asked for (containers on the namespace it replaced).
                let asked: Vec<String> = ctx.restarts.lock().map(|r| r.iter().cloned().collect()).unwrap_or_default();
                for n in asked {
                    if !running.contains(&n) {
                        parked.remove(&n);
                        pending.entry(n).or_insert(now);
                    }
                }
            },
            _ = sleep_until(next), if next.is_some() => {},
        }
    }
}

/// Shows a failed pass on the board and in the log.
fn failed<U: Units, I: Images>(ctx: &Ctx<U, I>, name: &str, e: &ReconcileError, next: AfterPass) {
    let message = match next {
        AfterPass::RunIn(d) => {
            tracing::warn!(container = %name, "pass failed, retrying in {d:?}: {e}");
            e.to_string()
        }
        _ => {
            tracing::warn!(container = %name, "pass failed, not retried until its spec or files change: {e}");
            format!("{e} (not retried until its spec or the files it names change)")
        }
    };
    ctx.board.update(name, |s| {
        s.phase = super::status::Phase::Error;
        s.message = Some(message);
    });
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

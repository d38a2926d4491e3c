//! The scheduler that drives [`super::reconcile`]: triggers name containers (or ask for a full relist),
//! a name is run after a short debounce, the same name never runs twice at once (a trigger during
//! a run reruns it afterwards), failures back off exponentially per name, and `Requeue` re-arms a
//! timer. Level-triggered: a lost trigger costs latency until the periodic resync, never correctness.
//! Runs in berthd as one tokio task that spawns the passes.

use super::{Action, Ctx, Images, Units};
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
    let mut passes: JoinSet<(String, Result<Action, super::ReconcileError>)> = JoinSet::new();
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
            running.insert(n.clone());
            tracing::debug!(container = %n, "pass of {n}");
            let ctx = ctx.clone();
            passes.spawn(async move {
                use futures_util::FutureExt;
                // A panicking pass must not leave its name marked running forever.
                let r = std::panic::AssertUnwindSafe(super::reconcile(&ctx, &n))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(super::ReconcileError::Panicked { name: n.clone() }));
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
                Some(Trigger::Now(n)) => { pending.insert(n, Instant::now()); }
            },
            Some(done) = passes.join_next(), if !passes.is_empty() => {
                let (name, result) = match done {
                    Ok(r) => r,
                    Err(e) => { tracing::error!("reconcile task failed: {e}"); continue; }
                };
                running.remove(&name);
                tracing::debug!(container = %name, "pass of {name} done: {result:?}");
                if let Some(f) = &mut first { f.remove(&name); }
                let now = Instant::now();
                match result {
                    Ok(Action::AwaitChange) => { failures.remove(&name); }
                    Ok(Action::Requeue(d)) => { failures.remove(&name); pending.insert(name.clone(), now + d); }
                    Err(e) => {
                        let n = failures.entry(name.clone()).or_insert(0);
                        let delay = opts.backoff_min.saturating_mul(1u32 << (*n).min(16)).min(opts.backoff_max);
                        *n += 1;
                        tracing::warn!(container = %name, "reconcile failed (retry in {delay:?}): {e}");
                        ctx.board.update(&name, |s| {
                            s.phase = super::status::Phase::Error;
                            s.message = Some(e.to_string());
                        });
                        pending.insert(name.clone(), now + delay);
                    }
                }
                if dirty.remove(&name) {
                    // A trigger arrived during the pass: keep a backoff if one is set.
                    pending.entry(name).or_insert(now + opts.debounce);
                }
            },
            _ = sleep_until(next), if next.is_some() => {},
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

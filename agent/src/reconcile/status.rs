//! What berthd knows about each container between passes: its phase, why it is not running, its
//! hash and image, how it last ended; read by the API (`berth ps/status`) and summarised into
//! sd_notify's `STATUS=`.

use crate::systemd::ActiveState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for its first pass.
    Pending,
    /// Pulling its image; percent when known.
    Pulling {
        percent: Option<u8>,
    },
    /// Waiting for a dependency.
    Waiting {
        on: String,
    },
    Starting,
    Running,
    /// Ran to completion (restart: no / on-failure) and is not restarted.
    Exited,
    /// Held stopped by `berth stop` until `berth start`.
    Stopped,
    /// systemd reports the unit failed.
    Failed,
    /// The spec file is invalid; any running unit is left as it was.
    Invalid,
    /// A pass failed (pull, bundle, start); retried with backoff.
    Error,
}

impl Phase {
    /// The phase a container is in by its unit's state alone (`None`: it has no unit, as a job
    /// that finished). The one mapping from systemd's states to berth's.
    pub fn of_unit(state: Option<ActiveState>) -> Phase {
        match state {
            Some(ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing) => {
                Phase::Running
            }
            Some(ActiveState::Activating) => Phase::Starting,
            Some(ActiveState::Failed) => Phase::Failed,
            // On its way down or down: it does not run.
            None
            | Some(
                ActiveState::Inactive
                | ActiveState::Deactivating
                | ActiveState::Maintenance
                | ActiveState::Unknown,
            ) => Phase::Exited,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub phase: Phase,
    /// Why it is not running, or the last error.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub spec_file: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub image_digest: Option<String>,
    /// Hash of the effective spec the running unit was started with.
    #[serde(default)]
    pub spec_hash: Option<String>,
    /// systemd's view, when a unit exists.
    #[serde(default)]
    pub unit_state: Option<String>,
    /// How the container last ended (its shim's `exit.json`): code or signal, OOM kill.
    #[serde(default)]
    pub last_exit: Option<berth_proto::ExitRecord>,
    /// The bridge address and published ports while the shim holds them (its `network.json`),
    /// filled in when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<berth_proto::NetworkStatus>,
}

impl ContainerStatus {
    pub fn new(name: &str, phase: Phase) -> Self {
        ContainerStatus {
            name: name.into(),
            phase,
            message: None,
            spec_file: None,
            image: None,
            image_digest: None,
            spec_hash: None,
            unit_state: None,
            last_exit: None,
            network: None,
        }
    }
}

/// One writer per name (the reconcile of that name), many readers.
#[derive(Debug, Default)]
pub struct Board {
    inner: RwLock<BTreeMap<String, ContainerStatus>>,
    /// Woken on every change (berthd's STATUS= line follows it).
    pub changed: tokio::sync::Notify,
    /// Where each change is told as Docker's events.
    pub events: std::sync::Arc<crate::events::Bus>,
    /// Counts changes, for any number of watchers (the Docker API's handlers await a change
    /// instead of polling).
    generation: std::sync::OnceLock<tokio::sync::watch::Sender<u64>>,
}

impl Board {
    fn generation(&self) -> &tokio::sync::watch::Sender<u64> {
        self.generation
            .get_or_init(|| tokio::sync::watch::Sender::new(0))
    }
    fn bump(&self) {
        self.changed.notify_one();
        self.generation().send_modify(|g| *g = g.wrapping_add(1));
    }
    /// A receiver that sees every later change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation().subscribe()
    }
    pub fn set(&self, s: ContainerStatus) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = m.insert(s.name.clone(), s.clone());
        self.publish(old.as_ref(), Some(&s));
        drop(m);
        self.bump();
    }

    /// Told under the board's lock, so that the events of one name come in order.
    fn publish(&self, old: Option<&ContainerStatus>, new: Option<&ContainerStatus>) {
        for e in crate::events::container_events(old, new) {
            self.events.publish(e);
        }
    }
    /// Changes an existing entry (or a fresh `Pending` one) in place.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut ContainerStatus)) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = m.get(name).cloned();
        let e = m
            .entry(name.to_owned())
            .or_insert_with(|| ContainerStatus::new(name, Phase::Pending));
        f(e);
        let new = e.clone();
        self.publish(old.as_ref(), Some(&new));
        drop(m);
        self.bump();
    }
    pub fn remove(&self, name: &str) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = m.remove(name);
        self.publish(old.as_ref(), None);
        drop(m);
        self.bump();
    }
    pub fn get(&self, name: &str) -> Option<ContainerStatus> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
    pub fn all(&self) -> Vec<ContainerStatus> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// One line for sd_notify's STATUS=: "12 running, 1 pulling nginx 43%, 1 invalid spec".
    pub fn summary(&self) -> String {
        let all = self.all();
        let count = |f: &dyn Fn(&Phase) -> bool| all.iter().filter(|s| f(&s.phase)).count();
        let mut parts = vec![format!("{} running", count(&|p| *p == Phase::Running))];
        let pulling: Vec<&ContainerStatus> = all
            .iter()
            .filter(|s| matches!(s.phase, Phase::Pulling { .. }))
            .collect();
        if let [one] = pulling.as_slice() {
            let img = one.image.as_deref().unwrap_or(&one.name);
            match (&one.phase, &one.message) {
                (_, Some(m)) => parts.push(format!("1 pulling {img}: {m}")),
                (Phase::Pulling { percent: Some(p) }, _) => {
                    parts.push(format!("1 pulling {img} {p}%"))
                }
                _ => parts.push(format!("1 pulling {img}")),
            }
        } else if !pulling.is_empty() {
            parts.push(format!("{} pulling", pulling.len()));
        }
        for (label, f) in [
            (
                "starting",
                &(|p: &Phase| matches!(p, Phase::Starting | Phase::Pending))
                    as &dyn Fn(&Phase) -> bool,
            ),
            ("waiting", &|p: &Phase| matches!(p, Phase::Waiting { .. })),
            ("exited", &|p: &Phase| *p == Phase::Exited),
            ("stopped", &|p: &Phase| *p == Phase::Stopped),
            ("failed", &|p: &Phase| {
                matches!(p, Phase::Failed | Phase::Error)
            }),
        ] {
            let n = count(f);
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        let n = count(&|p| *p == Phase::Invalid);
        if n > 0 {
            parts.push(format!("{n} invalid spec{}", if n == 1 { "" } else { "s" }));
        }
        parts.join(", ")
    }
}

/// What `berth status` says when the filesystem holding containers' writable layers (the image
/// store's, `dir`) has less than 1 MiB left for them: their writes then fail with ENOSPC.
pub fn disk_note(dir: &std::path::Path, free: u64) -> Option<String> {
    (free < 1 << 20).then(|| {
        format!(
            "the filesystem of its writable layer ({}) is full ({free} bytes free): its writes fail \
             with No space left on device",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_wake_the_status_line() {
        let b = Board::default();
        b.set(ContainerStatus::new("a", Phase::Running));
        tokio::time::timeout(std::time::Duration::from_secs(1), b.changed.notified())
            .await
            .expect("set did not notify");
        b.update("a", |s| s.phase = Phase::Failed);
        tokio::time::timeout(std::time::Duration::from_secs(1), b.changed.notified())
            .await
            .expect("update did not notify");
    }

    #[test]
    fn unit_states_map_to_phases() {
        use ActiveState as A;
        for (state, phase) in [
            (Some(A::Active), Phase::Running),
            (Some(A::Reloading), Phase::Running),
            (Some(A::Refreshing), Phase::Running),
            (Some(A::Activating), Phase::Starting),
            (Some(A::Failed), Phase::Failed),
            (Some(A::Inactive), Phase::Exited),
            (Some(A::Deactivating), Phase::Exited),
            (Some(A::Maintenance), Phase::Exited),
            (Some(A::Unknown), Phase::Exited),
            (None, Phase::Exited),
        ] {
            assert_eq!(Phase::of_unit(state), phase, "{state:?}");
        }
    }

    #[test]
    fn a_full_disk_is_noted() {
        let d = std::path::Path::new("/var/lib/berth");
        assert_eq!(disk_note(d, 1 << 20), None);
        let n = disk_note(d, 4096).unwrap();
        assert!(
            n.contains("/var/lib/berth") && n.contains("4096 bytes free"),
            "{n}"
        );
        assert!(n.contains("No space left on device"), "{n}");
    }

    #[test]
    fn summary_line() {
        let b = Board::default();
        for i in 0..12 {
            b.set(ContainerStatus::new(&format!("c{i}"), Phase::Running));
        }
        let mut p = ContainerStatus::new("web", Phase::Pulling { percent: Some(43) });
        p.image = Some("nginx".into());
        b.set(p);
        b.set(ContainerStatus::new("bad", Phase::Invalid));
        assert_eq!(
            b.summary(),
            "12 running, 1 pulling nginx 43%, 1 invalid spec"
        );
        b.update("web", |s| {
            s.message = Some("registry r:5000 answered 503, retry 3 of 5 in 4.0s".into())
        });
        assert_eq!(
            b.summary(),
            "12 running, 1 pulling nginx: registry r:5000 answered 503, retry 3 of 5 in 4.0s, 1 invalid spec"
        );
    }
}

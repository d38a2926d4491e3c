//! berthd's event bus: what changed about containers, images and networks, as it happens, for
//! the Docker API's `GET /events`. Fed where berthd already learns of a change: the status board
//! (every reconcile pass, so changes made through either API, a spec file edit or systemd alone),
//! the image store's operations and the named network declarations. A bounded ring keeps the
//! latest events for `since`. Runs in berthd.

use crate::reconcile::status::{ContainerStatus, Phase};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Events kept for `since` (Docker keeps 256; a burst of 50 containers is 150 events).
pub const HISTORY: usize = 1024;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Container,
    Image,
    Network,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Image => "image",
            Kind::Network => "network",
        }
    }
}

/// One event, in Docker's terms: `action` on the object `id` (a container ID, an image name or
/// digest, a network name), with `attributes` (`name`, `image`, `exitCode`, `signal` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: Kind,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
}

impl Event {
    pub fn new(kind: Kind, action: &str, id: &str) -> Event {
        let time_nano = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Event {
            kind,
            action: action.to_owned(),
            id: id.to_owned(),
            attributes: BTreeMap::new(),
            time_nano,
        }
    }

    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Event {
        self.attributes.insert(k.to_owned(), v.into());
        self
    }

    /// A container event: its ID, with its name and image.
    pub fn container(action: &str, st: &ContainerStatus) -> Event {
        let mut e = Event::new(
            Kind::Container,
            action,
            &crate::network::container_id(&st.name),
        )
        .attr("name", st.name.clone());
        if let Some(i) = &st.image {
            e = e.attr("image", i.clone());
        }
        e
    }
}

/// The bus: one sender, many subscribers, and the ring of recent events.
pub struct Bus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(HISTORY).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

impl Bus {
    pub fn publish(&self, e: Event) {
        tracing::debug!(kind = e.kind.as_str(), action = %e.action, id = %e.id, "event");
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(e.clone());
        // Sent under the lock, so that a subscriber sees each event once: in the history it
        // took or on its receiver.
        let _ = self.tx.send(e);
    }

    /// The events kept so far.
    pub fn history(&self) -> Vec<Event> {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.iter().cloned().collect()
    }

    /// The events kept so far and a receiver of the ones after them.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (h.iter().cloned().collect(), self.tx.subscribe())
    }
}

fn running(p: &Phase) -> bool {
    *p == Phase::Running
}

/// Docker's `created` state: made, not run yet (or on its way to running).
fn created(p: &Phase) -> bool {
    matches!(
        p,
        Phase::Pending | Phase::Pulling { .. } | Phase::Waiting { .. } | Phase::Starting
    )
}

/// The container events a change of its status on the board means (`None`: not on the board).
/// A container berthd finds already running or ended when it starts is adopted silently.
pub fn container_events(
    old: Option<&ContainerStatus>,
    new: Option<&ContainerStatus>,
) -> Vec<Event> {
    let mut out = Vec::new();
    let die =
        |out: &mut Vec<Event>, st: &ContainerStatus, exit: Option<&berth_proto::ExitRecord>| {
            if exit.is_some_and(|x| x.oom_killed) {
                out.push(Event::container("oom", st));
            }
            if exit.is_some_and(|x| x.unhealthy) {
                out.push(Event::container("health_status: unhealthy", st));
            }
            let code = exit.map_or(0, |x| x.status);
            out.push(Event::container("die", st).attr("exitCode", code.to_string()));
        };
    match (old, new) {
        (None, Some(n)) if created(&n.phase) => out.push(Event::container("create", n)),
        (None, _) => {}
        (Some(o), None) => {
            if running(&o.phase) {
                die(&mut out, o, o.last_exit.as_ref());
            }
            out.push(Event::container("destroy", o));
        }
        (Some(o), Some(n)) => {
            if running(&o.phase) && !running(&n.phase) {
                // The record is read afresh when the unit's end is seen; a restart asked for
                // keeps the old one until then.
                let fresh = n.last_exit.as_ref().filter(|_| n.last_exit != o.last_exit);
                die(&mut out, n, fresh.or(n.last_exit.as_ref()));
                if n.phase == Phase::Stopped {
                    out.push(Event::container("stop", n));
                }
            } else if !running(&o.phase) && running(&n.phase) {
                out.push(Event::container("start", n));
            } else if o.phase != Phase::Stopped && n.phase == Phase::Stopped {
                out.push(Event::container("stop", n));
            }
        }
    }
    out
}

/// Network events between two sets of declared network names.
pub fn network_events(old: &BTreeSet<String>, new: &BTreeSet<String>) -> Vec<Event> {
    let ev = |action, n: &String| Event::new(Kind::Network, action, n).attr("name", n.clone());
    new.difference(old)
        .map(|n| ev("create", n))
        .chain(old.difference(new).map(|n| ev("destroy", n)))
        .collect()
}

/// Network connect/disconnect events between two sets of (network, container) attachments.
pub fn attachment_events(
    old: &BTreeSet<(String, String)>,
    new: &BTreeSet<(String, String)>,
) -> Vec<Event> {
    let ev = |action, (net, c): &(String, String)| {
        Event::new(Kind::Network, action, net)
            .attr("name", net.clone())
            .attr("container", crate::network::container_id(c))
    };
    new.difference(old)
        .map(|a| ev("connect", a))
        .chain(old.difference(new).map(|a| ev("disconnect", a)))
        .collect()
}

/// What berthd reads of networks at one moment: the declared names, and (network, container)
/// for each container attached.
pub type NetworkFacts = (BTreeSet<String>, BTreeSet<(String, String)>);

/// The declared networks and who is on them (each shim's `network.json` in its bundle).
pub fn network_facts(
    board: &crate::reconcile::status::Board,
    np: &crate::bundle::NetworkPaths,
    bundles: &std::path::Path,
) -> NetworkFacts {
    let d = np.declared.load();
    let mut names: BTreeSet<String> = d.networks.keys().cloned().collect();
    names.insert(d.default.name.clone());
    let mut on = BTreeSet::new();
    for st in board.all() {
        for a in berth_proto::NetworkStatus::load(&bundles.join(&st.name))
            .iter()
            .flat_map(|n| &n.networks)
        {
            on.insert((a.network.clone(), st.name.clone()));
        }
    }
    (names, on)
}

/// Tells network changes on `bus`: `facts` is read again after each container event (a
/// container joins its networks when it starts and leaves them when it ends) and every few
/// seconds (a declaration written or removed).
pub async fn watch_networks(
    bus: std::sync::Arc<Bus>,
    facts: impl Fn() -> NetworkFacts + Send + Sync + 'static,
) {
    let facts = std::sync::Arc::new(facts);
    let read = || {
        let f = facts.clone();
        async move {
            tokio::task::spawn_blocking(move || f())
                .await
                .unwrap_or_default()
        }
    };
    let (_, mut rx) = bus.subscribe();
    let (mut nets, mut attached) = read().await;
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(e) if e.kind != Kind::Container => continue,
                Err(broadcast::error::RecvError::Closed) => return,
                _ => {}
            },
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
        let (n, a) = read().await;
        for e in network_events(&nets, &n)
            .into_iter()
            .chain(attachment_events(&attached, &a))
        {
            bus.publish(e);
        }
        (nets, attached) = (n, a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(phase: Phase, exit: Option<i32>) -> ContainerStatus {
        let mut s = ContainerStatus::new("web", phase);
        s.image = Some("busybox".into());
        s.last_exit = exit.map(|status| berth_proto::ExitRecord {
            exit: berth_proto::ContainerExit::Exited(status),
            status,
            oom_killed: false,
            unhealthy: false,
            finished_at_ms: 0,
        });
        s
    }

    fn actions(v: Vec<Event>) -> Vec<String> {
        v.into_iter().map(|e| e.action).collect()
    }

    #[test]
    fn a_containers_life_as_events() {
        let pending = st(Phase::Pending, None);
        let up = st(Phase::Running, None);
        let down = st(Phase::Failed, Some(3));
        assert_eq!(actions(container_events(None, Some(&pending))), ["create"]);
        assert_eq!(
            actions(container_events(Some(&pending), Some(&up))),
            ["start"]
        );
        let d = container_events(Some(&up), Some(&down));
        assert_eq!(d[0].action, "die");
        assert_eq!(d[0].attributes["exitCode"], "3");
        assert_eq!(d[0].attributes["name"], "web");
        assert_eq!(d[0].id, crate::network::container_id("web"));
        let stopped = st(Phase::Stopped, Some(143));
        assert_eq!(
            actions(container_events(Some(&up), Some(&stopped))),
            ["die", "stop"]
        );
        assert_eq!(
            actions(container_events(Some(&down), Some(&stopped))),
            ["stop"]
        );
        assert_eq!(
            actions(container_events(Some(&up), None)),
            ["die", "destroy"]
        );
        assert_eq!(actions(container_events(Some(&down), None)), ["destroy"]);
        // Pull progress and the like change nothing Docker shows.
        assert!(container_events(Some(&up), Some(&up)).is_empty());
        // Adopted when berthd starts: no event.
        assert!(container_events(None, Some(&up)).is_empty());
        assert!(container_events(None, Some(&down)).is_empty());
        let mut oom = st(Phase::Failed, Some(137));
        oom.last_exit.as_mut().unwrap().oom_killed = true;
        assert_eq!(
            actions(container_events(Some(&up), Some(&oom))),
            ["oom", "die"]
        );
    }

    #[test]
    fn networks_and_attachments() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        let e = network_events(&s(&["a", "b"]), &s(&["b", "c"]));
        assert_eq!(
            e.iter()
                .map(|e| (e.action.as_str(), e.id.as_str()))
                .collect::<Vec<_>>(),
            [("create", "c"), ("destroy", "a")]
        );
        let a = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect::<BTreeSet<_>>()
        };
        let e = attachment_events(&a(&[("n", "x")]), &a(&[("n", "y")]));
        assert_eq!(e[0].action, "connect");
        assert_eq!(
            e[0].attributes["container"],
            crate::network::container_id("y")
        );
        assert_eq!(e[1].action, "disconnect");
    }

    #[tokio::test]
    async fn subscribers_see_history_then_live_events() {
        let bus = Bus::default();
        for i in 0..HISTORY + 5 {
            bus.publish(Event::new(Kind::Image, "pull", &i.to_string()));
        }
        let (h, mut rx) = bus.subscribe();
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h[0].id, "5");
        bus.publish(Event::new(Kind::Image, "tag", "x"));
        assert_eq!(rx.recv().await.unwrap().action, "tag");
    }
}

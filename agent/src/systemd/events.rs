//! A stream of state changes of berth's units, fed by a tokio task that owns its own systemd
//! connection and re-establishes it (reconnect, resubscribe) when systemd re-executes or the bus
//! goes away. Runs in berthd.

use super::proxies::{JobRemoved, Reloading, UnitRemoved};
use super::{
    ActiveState, BusTarget, DEST, MANAGER, PATH, container_name, subscribe, unit_from_path,
};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use zbus::message::Type as MessageType;
use zbus::zvariant::Value;
use zbus::{Connection, MatchRule, MessageStream};

const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const QUEUE: usize = 1024;
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Something happened to one of berth's units (other units are filtered out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitEvent {
    /// The unit's state changed; fields systemd did not include are `None`.
    Changed {
        unit: String,
        active_state: Option<ActiveState>,
        sub_state: Option<String>,
        main_pid: Option<u32>,
    },
    /// systemd unloaded the unit (stopped and garbage-collected).
    Removed { unit: String },
    /// A job of the unit finished (`result`: done, failed, canceled, timeout, …).
    JobRemoved {
        unit: String,
        job: String,
        result: String,
    },
    /// The stream was (re)connected or systemd re-executed: events may have been missed, list again.
    Resync,
}

/// Receiving end of [`super::Systemd::events`]. Dropping it stops the background task.
pub struct UnitEvents {
    rx: mpsc::Receiver<UnitEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl UnitEvents {
    /// The next event; `None` only if the background task ended (it does not by itself).
    pub async fn next(&mut self) -> Option<UnitEvent> {
        self.rx.recv().await
    }
}

impl Drop for UnitEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn spawn(target: BusTarget, conn: Option<Connection>) -> UnitEvents {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(run(target, conn, tx));
    UnitEvents { rx, task }
}

async fn run(target: BusTarget, mut conn: Option<Connection>, tx: mpsc::Sender<UnitEvent>) {
    let mut backoff = RECONNECT_MIN;
    loop {
        let c = match conn.take() {
            Some(c) => c,
            None => match target.connect().await {
                Ok(c) => c,
                Err(_) => {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        match follow(&c, target.is_bus(), &tx).await {
            Follow::ReceiverGone => return,
            Follow::Lost => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
            Follow::Healthy => backoff = RECONNECT_MIN,
        }
    }
}

enum Follow {
    ReceiverGone,
    /// Setting up failed: retry with back-off.
    Lost,
    /// The connection worked for a while and then ended: reconnect at once.
    Healthy,
}

fn rule(b: zbus::Result<zbus::match_rule::Builder<'static>>) -> zbus::Result<MatchRule<'static>> {
    Ok(b?.build())
}

async fn follow(conn: &Connection, is_bus: bool, tx: &mpsc::Sender<UnitEvent>) -> Follow {
    let manager = rule(
        MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(DEST)
            .and_then(|b| b.path(PATH))
            .and_then(|b| b.interface(MANAGER)),
    );
    let props = rule(
        MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(DEST)
            .and_then(|b| b.path_namespace("/org/freedesktop/systemd1/unit"))
            .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
            .and_then(|b| b.member("PropertiesChanged")),
    );
    let (Ok(manager), Ok(props)) = (manager, props) else {
        return Follow::Lost;
    };
    let Ok(mut manager) = MessageStream::for_match_rule(manager, conn, Some(QUEUE)).await else {
        return Follow::Lost;
    };
    let Ok(mut props) = MessageStream::for_match_rule(props, conn, Some(QUEUE)).await else {
        return Follow::Lost;
    };
    // On a bus, systemd's re-exec shows as its name changing owner: its new instance must be
    // told again that we want signals. On the private socket the connection itself drops.
    let mut owner = if is_bus {
        let r = rule(
            MatchRule::builder()
                .msg_type(MessageType::Signal)
                .sender("org.freedesktop.DBus")
                .and_then(|b| b.interface("org.freedesktop.DBus"))
                .and_then(|b| b.member("NameOwnerChanged"))
                .and_then(|b| b.add_arg(DEST)),
        );
        match r {
            Ok(r) => MessageStream::for_match_rule(r, conn, Some(16)).await.ok(),
            Err(_) => None,
        }
    } else {
        None
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(10), subscribe(conn)).await,
        Ok(Ok(()))
    ) {
        return Follow::Lost;
    }
    if tx.send(UnitEvent::Resync).await.is_err() {
        return Follow::ReceiverGone;
    }
    loop {
        let ev = tokio::select! {
            m = manager.next() => match m {
                Some(Ok(m)) => manager_event(&m),
                _ => return Follow::Healthy,
            },
            m = props.next() => match m {
                Some(Ok(m)) => props_event(&m),
                _ => return Follow::Healthy,
            },
            m = async { match owner.as_mut() { Some(s) => s.next().await, None => std::future::pending().await } } => match m {
                Some(Ok(m)) => {
                    let new_owner = m.body().deserialize::<(String, String, String)>().map(|b| b.2).unwrap_or_default();
                    if new_owner.is_empty() {
                        None
                    } else {
                        // Wait for the new instance to be able to take calls, then resubscribe.
                        if subscribe(conn).await.is_err() {
                            return Follow::Lost;
                        }
                        Some(UnitEvent::Resync)
                    }
                }
                _ => return Follow::Healthy,
            },
            _ = tx.closed() => return Follow::ReceiverGone,
        };
        if let Some(ev) = ev
            && tx.send(ev).await.is_err()
        {
            return Follow::ReceiverGone;
        }
    }
}

fn is_berth(unit: &str) -> bool {
    container_name(unit).is_some()
}

/// The event in one of the manager's signals (decoded with the generated signal types).
fn manager_event(m: &zbus::Message) -> Option<UnitEvent> {
    if let Some(s) = UnitRemoved::from_message(m.clone()) {
        let a = s.args().ok()?;
        return is_berth(a.unit).then(|| UnitEvent::Removed {
            unit: a.unit.to_owned(),
        });
    }
    if let Some(s) = JobRemoved::from_message(m.clone()) {
        let a = s.args().ok()?;
        return is_berth(a.unit).then(|| UnitEvent::JobRemoved {
            unit: a.unit.to_owned(),
            job: a.job.to_string(),
            result: a.result.to_owned(),
        });
    }
    // Reloading(false): a daemon-reload finished; unit states may have been re-read.
    let s = Reloading::from_message(m.clone())?;
    (!s.args().ok()?.active).then_some(UnitEvent::Resync)
}

fn props_event(m: &zbus::Message) -> Option<UnitEvent> {
    let unit = unit_from_path(m.header().path()?.as_str())?;
    if !is_berth(&unit) {
        return None;
    }
    let signal = zbus::fdo::PropertiesChanged::from_message(m.clone())?;
    let args = signal.args().ok()?;
    let changed = &args.changed_properties;
    let s = |k: &str| match changed.get(k) {
        Some(Value::Str(v)) => Some(v.to_string()),
        _ => None,
    };
    match args.interface_name.as_str() {
        UNIT_IFACE => {
            let active_state = s("ActiveState").map(|a| ActiveState::parse(&a));
            let sub_state = s("SubState");
            (active_state.is_some() || sub_state.is_some()).then_some(UnitEvent::Changed {
                unit,
                active_state,
                sub_state,
                main_pid: None,
            })
        }
        SERVICE_IFACE => match changed.get("MainPID") {
            Some(Value::U32(p)) => Some(UnitEvent::Changed {
                unit,
                active_state: None,
                sub_state: None,
                main_pid: Some(*p),
            }),
            _ => None,
        },
        _ => None,
    }
}

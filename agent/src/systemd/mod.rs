//! berthd's systemd client (zbus, tokio): starts each container as a transient
//! `berth-<name>.service`, stops/kills/lists/inspects those units and follows their state changes.
//! Runs in berthd (and in tests); talks to the system bus or, where no bus daemon runs, to
//! systemd's private socket in peer-to-peer mode.
//!
//! ```no_run
//! # async fn f() -> Result<(), berth_agent::systemd::SystemdError> {
//! use berth_agent::systemd::{BusTarget, KillWho, Systemd, UnitEvent, UnitSpec};
//! let sd = Systemd::connect(BusTarget::System).await?;
//! let mut u = UnitSpec::new("web", "docker.io/library/nginx:1.27",
//!     vec!["/usr/bin/berth-shim".into(), "/run/berth/containers/web".into()]);
//! u.spec_hash = "sha256:…".into();
//! u.memory_max = Some(256 << 20);
//! sd.start_unit(&u).await?;              // Ok once active; JobFailed carries result + logs
//! for unit in sd.list_units().await? {     // adoption after a restart of berthd
//!     let st = sd.status(&unit.name).await?.expect("listed");
//!     let _same = st.spec_hash() == Some("sha256:…");
//! }
//! let mut ev = sd.events();                // Resync first, then Changed/Removed/JobRemoved
//! while let Some(e) = ev.next().await { if e == UnitEvent::Resync { /* relist */ } }
//! sd.kill_unit("berth-web.service", KillWho::Main, 1).await?;
//! sd.stop_unit("berth-web.service", std::time::Duration::from_secs(30)).await?;
//! sd.reset_failed("berth-web.service").await?;
//! # Ok(()) }
//! ```

mod events;
mod private;
mod proxies;
mod state;
mod unit;

pub use events::{UnitEvent, UnitEvents};
pub use state::ActiveState;
pub use unit::{
    RestartPolicy, SPEC_HASH_ENV, STOP_BACKSTOP, UNIT_PATTERN, UNIT_PREFIX, UnitListEntry,
    UnitSpec, UnitStatus, container_name, stop_job_wait, unit_name,
};

use futures_util::StreamExt;
use proxies::{JobRemoved, ManagerProxy};
use std::path::PathBuf;
use std::time::Duration;
use zbus::message::Type as MessageType;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{Connection, MatchRule, MessageStream};

pub(crate) const DEST: &str = "org.freedesktop.systemd1";
pub(crate) const PATH: &str = "/org/freedesktop/systemd1";
pub(crate) const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a start may take when the spec sets no start timeout (systemd's default is 90 s).
const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long systemd may take to answer the first call on a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Log lines attached to a failed start.
const FAILURE_LOG_LINES: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("connecting to systemd at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: zbus::Error,
    },
    #[error("systemd {method} for {object}: {source}")]
    Call {
        method: &'static str,
        object: String,
        #[source]
        source: zbus::Error,
    },
    #[error("invalid unit spec: {0}")]
    Invalid(String),
    #[error("no unit {0}")]
    NoSuchUnit(String),
    #[error(
        "job {job} for {unit} ended with result {result:?} (unit result {unit_result:?}, exit status {exit_status}); last log lines:\n{}",
        logs.join("\n")
    )]
    JobFailed {
        unit: String,
        job: String,
        /// systemd's job result: `failed`, `timeout`, `canceled`, `dependency`, `skipped`.
        result: String,
        /// The unit's `Result` property (`exit-code`, `signal`, `timeout`, …).
        unit_result: String,
        exit_status: i32,
        logs: Vec<String>,
    },
    #[error("timed out after {timeout:?} waiting for job {job} of {unit}")]
    JobTimeout {
        unit: String,
        job: String,
        timeout: Duration,
    },
    #[error("connection to systemd closed while waiting for job {job} of {unit}")]
    Disconnected { unit: String, job: String },
}

type Result<T, E = SystemdError> = std::result::Result<T, E>;

/// Where systemd is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusTarget {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS` or /run/dbus/system_bus_socket).
    System,
    /// A bus at a D-Bus address, e.g. `unix:path=/proc/PID/root/run/dbus/system_bus_socket`.
    Address(String),
    /// systemd's private socket (normally /run/systemd/private), peer to peer, no bus daemon.
    /// systemd only accepts peers from its own PID namespace there, and sends the manager's
    /// signals to every subscribed client (no match rules). The sender systemd puts on its
    /// messages there is rewritten for zbus (see `private.rs`).
    Private(PathBuf),
}

impl std::fmt::Display for BusTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusTarget::System => f.write_str("the system bus"),
            BusTarget::Address(a) => write!(f, "bus {a}"),
            BusTarget::Private(p) => write!(f, "private socket {}", p.display()),
        }
    }
}

impl BusTarget {
    pub(crate) async fn connect(&self) -> Result<Connection> {
        let err = |source| SystemdError::Connect {
            target: self.to_string(),
            source,
        };
        let builder = match self {
            BusTarget::System => zbus::connection::Builder::system().map_err(err)?,
            BusTarget::Address(a) => zbus::connection::Builder::address(a.as_str()).map_err(err)?,
            BusTarget::Private(p) => {
                let stream = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| err(zbus::Error::InputOutput(std::sync::Arc::new(e))))?;
                // The private socket has no bus daemon: no Hello, no names, EXTERNAL auth. zbus
                // skips AddMatch on p2p connections and ignores well-known senders in match rules,
                // so the bus code paths work unchanged once the sender parses.
                zbus::connection::Builder::socket(private::socket(stream))
                    .p2p()
                    .auth_mechanism(zbus::AuthMechanism::External)
            }
        };
        builder.build().await.map_err(err)
    }

    pub(crate) fn is_bus(&self) -> bool {
        !matches!(self, BusTarget::Private(_))
    }
}

/// Which processes of a unit a signal goes to (`systemctl kill --kill-whom=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillWho {
    /// The shim only; it forwards to the container.
    Main,
    /// Every process in the unit's cgroup.
    All,
}

/// A connection to systemd. Cheap to clone (the connection is shared).
#[derive(Debug, Clone)]
pub struct Systemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
    target: BusTarget,
    journal_dir: Option<PathBuf>,
}

impl Systemd {
    /// Connects and subscribes to the manager's signals (needed for `JobRemoved`).
    pub async fn connect(target: BusTarget) -> Result<Self> {
        let conn = target.connect().await?;
        let manager = proxies::manager(&conn)
            .await
            .map_err(|source| SystemdError::Connect {
                target: target.to_string(),
                source,
            })?;
        let me = Systemd {
            conn,
            manager,
            target,
            journal_dir: None,
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, me.subscribe()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(SystemdError::Connect {
                    target: me.target.to_string(),
                    source: zbus::Error::Failure("no answer to Subscribe".into()),
                });
            }
        }
        Ok(me)
    }

    /// Reads the unit logs attached to failed starts from this journal directory (`journalctl -D`)
    /// instead of the host's journal: for a systemd in another mount namespace.
    pub fn with_journal_dir(mut self, dir: PathBuf) -> Self {
        self.journal_dir = Some(dir);
        self
    }

    pub fn target(&self) -> &BusTarget {
        &self.target
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    async fn subscribe(&self) -> Result<()> {
        subscribe_with(&self.manager).await
    }

    /// A stream of the manager's `JobRemoved` signals, opened BEFORE a job is queued so its end
    /// cannot be missed (StartTransientUnit only queues the job).
    async fn job_stream(&self) -> Result<MessageStream> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(DEST)
            .and_then(|b| b.path(PATH))
            .and_then(|b| b.interface(MANAGER))
            .and_then(|b| b.member("JobRemoved"))
            .map(|b| b.build())
            .map_err(|source| SystemdError::Call {
                method: "AddMatch",
                object: "JobRemoved".into(),
                source,
            })?;
        MessageStream::for_match_rule(rule, &self.conn, Some(4096))
            .await
            .map_err(|source| SystemdError::Call {
                method: "AddMatch",
                object: "JobRemoved".into(),
                source,
            })
    }

    /// Starts `berth-<name>.service` and waits until its start job finished: `Ok` once the unit is
    /// active (the shim sent READY=1), an error with systemd's result and the unit's last log lines
    /// otherwise. A leftover failed unit of the same name is reset first.
    pub async fn start_unit(&self, spec: &UnitSpec) -> Result<()> {
        spec.validate().map_err(SystemdError::Invalid)?;
        let unit = spec.unit_name();
        let props = spec.properties();
        let aux: &[(&str, &[(&str, Value<'_>)])] = &[];
        let mut jobs = self.job_stream().await?;
        let mut attempt = 0;
        let job: OwnedObjectPath = loop {
            let r = self
                .manager
                .start_transient_unit(&unit, "fail", &props, aux)
                .await;
            match r {
                Err(source) if attempt == 0 && is_dbus_error(&source, "UnitExists") => {
                    // A failed or inactive leftover keeps the name; an active one is a real conflict.
                    match self.status(&unit).await? {
                        Some(st) if st.active_state.is_down() => {
                            self.reset_failed(&unit).await.ok();
                            attempt += 1;
                        }
                        _ => {
                            return Err(SystemdError::Call {
                                method: "StartTransientUnit",
                                object: unit,
                                source,
                            });
                        }
                    }
                }
                other => break other.map_err(call_err("StartTransientUnit", &unit))?,
            }
        };
        let timeout = spec
            .timeout_start
            .map(|t| t + Duration::from_secs(10))
            .unwrap_or(DEFAULT_JOB_TIMEOUT);
        let result = self.wait_job(&mut jobs, &unit, &job, timeout).await?;
        if result == "done" {
            return Ok(());
        }
        Err(self.job_failure(&unit, job.as_str(), result).await)
    }

    async fn job_failure(&self, unit: &str, job: &str, result: String) -> SystemdError {
        let st = self.status(unit).await.ok().flatten().unwrap_or_default();
        SystemdError::JobFailed {
            unit: unit.to_owned(),
            job: job.to_owned(),
            result,
            unit_result: st.result,
            exit_status: st.exec_main_status,
            logs: self.last_log_lines(unit, FAILURE_LOG_LINES).await,
        }
    }

    async fn wait_job(
        &self,
        jobs: &mut MessageStream,
        unit: &str,
        job: &OwnedObjectPath,
        timeout: Duration,
    ) -> Result<String> {
        let wait = async {
            while let Some(msg) = jobs.next().await {
                let Ok(msg) = msg else { continue };
                let Some(args) = JobRemoved::from_message(msg)
                    .and_then(|s| s.args().ok().map(|a| (a.job == **job, a.result.to_owned())))
                else {
                    continue;
                };
                if args.0 {
                    return Some(args.1);
                }
            }
            None
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(SystemdError::Disconnected {
                unit: unit.to_owned(),
                job: job.to_string(),
            }),
            Err(_) => Err(SystemdError::JobTimeout {
                unit: unit.to_owned(),
                job: job.to_string(),
                timeout,
            }),
        }
    }

    /// Stops the unit (KillSignal to the shim, SIGKILL to all after TimeoutStopSec) and waits for
    /// the stop job. `Ok` also when the unit is not loaded.
    pub async fn stop_unit(&self, unit: &str, timeout: Duration) -> Result<()> {
        let mut jobs = self.job_stream().await?;
        let job = match self.manager.stop_unit(unit, "replace").await {
            Err(e) if is_dbus_error(&e, "NoSuchUnit") => return Ok(()),
            j => j.map_err(call_err("StopUnit", unit))?,
        };
        let result = self.wait_job(&mut jobs, unit, &job, timeout).await?;
        if result == "done" {
            Ok(())
        } else {
            Err(self.job_failure(unit, job.as_str(), result).await)
        }
    }

    /// Sends `signal` to the unit's main process (the shim) or to all its processes.
    pub async fn kill_unit(&self, unit: &str, who: KillWho, signal: i32) -> Result<()> {
        let who = match who {
            KillWho::Main => "main",
            KillWho::All => "all",
        };
        self.manager
            .kill_unit(unit, who, signal)
            .await
            .map_err(call_err("KillUnit", unit))
    }

    /// Freezes (`frozen`) or thaws the unit's processes through systemd's cgroup freezer, so
    /// that systemd knows the unit is paused.
    pub async fn freeze_unit(&self, unit: &str, frozen: bool) -> Result<()> {
        if frozen {
            self.manager
                .freeze_unit(unit)
                .await
                .map_err(call_err("FreezeUnit", unit))
        } else {
            self.manager
                .thaw_unit(unit)
                .await
                .map_err(call_err("ThawUnit", unit))
        }
    }

    /// Forgets a failed unit's state (and its last exit status), so the name can be used again.
    pub async fn reset_failed(&self, unit: &str) -> Result<()> {
        self.manager
            .reset_failed_unit(unit)
            .await
            .map_err(call_err("ResetFailedUnit", unit))
    }

    /// berth's units that systemd has loaded (any state).
    pub async fn list_units(&self) -> Result<Vec<UnitListEntry>> {
        let rows = self
            .manager
            .list_units_by_patterns(&[], &[UNIT_PATTERN])
            .await
            .map_err(call_err("ListUnitsByPatterns", UNIT_PATTERN))?;
        Ok(rows
            .into_iter()
            .map(|r| UnitListEntry {
                name: r.0,
                description: r.1,
                load_state: r.2,
                active_state: ActiveState::parse(&r.3),
                sub_state: r.4,
            })
            .collect())
    }

    /// The unit's state, `None` when systemd has no such unit loaded.
    pub async fn status(&self, unit: &str) -> Result<Option<UnitStatus>> {
        let path = match self.manager.get_unit(unit).await {
            Err(e) if is_dbus_error(&e, "NoSuchUnit") => return Ok(None),
            p => p.map_err(call_err("GetUnit", unit))?,
        };
        match proxies::unit_status(&self.conn, unit, &path).await {
            Ok(st) => Ok(Some(st)),
            // Unloaded between the two calls.
            Err(e) if is_unknown_object(&e) => Ok(None),
            Err(e) => Err(call_err("Get", unit)(e)),
        }
    }

    /// The unit's last `n` journal lines (message text only), best effort: empty when the journal
    /// cannot be read.
    pub async fn last_log_lines(&self, unit: &str, n: usize) -> Vec<String> {
        let mut cmd = tokio::process::Command::new("journalctl");
        if let Some(d) = &self.journal_dir {
            cmd.arg("-D").arg(d);
        }
        cmd.args(["--no-pager", "-o", "cat", "-n", &n.to_string(), "-u", unit]);
        match cmd.output().await {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Follows berth's units: state changes, removals, finished jobs. The stream reconnects by
    /// itself (systemd re-executed, bus restarted) and then yields [`UnitEvent::Resync`]: what
    /// happened in between is unknown, so the consumer lists again.
    pub fn events(&self) -> UnitEvents {
        events::spawn(self.target.clone(), Some(self.conn.clone()))
    }
}

/// Asks systemd for its signals on `conn`.
pub(crate) async fn subscribe(conn: &Connection) -> Result<()> {
    let manager = proxies::manager(conn)
        .await
        .map_err(call_err("Subscribe", PATH))?;
    subscribe_with(&manager).await
}

async fn subscribe_with(manager: &ManagerProxy<'_>) -> Result<()> {
    match manager.subscribe().await {
        Ok(_) => Ok(()),
        // Subscribing twice is harmless (after a reconnect systemd may remember us).
        Err(e) if is_dbus_error(&e, "AlreadySubscribed") => Ok(()),
        Err(source) => Err(SystemdError::Call {
            method: "Subscribe",
            object: PATH.into(),
            source,
        }),
    }
}

/// Wraps a failed call of `method` about `object`.
fn call_err<'a>(
    method: &'static str,
    object: &'a str,
) -> impl FnOnce(zbus::Error) -> SystemdError + 'a {
    move |source| SystemdError::Call {
        method,
        object: object.to_owned(),
        source,
    }
}

/// Whether `e` says the object is gone (a unit unloaded while it was being read).
fn is_unknown_object(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.UnknownObject"
                | "org.freedesktop.DBus.Error.UnknownInterface"
        ),
        zbus::Error::FDO(e) => matches!(
            **e,
            zbus::fdo::Error::UnknownObject(_) | zbus::fdo::Error::UnknownInterface(_)
        ),
        _ => false,
    }
}

/// Whether `e` is the D-Bus error `org.freedesktop.systemd1.<short>`.
fn is_dbus_error(e: &zbus::Error, short: &str) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => name
            .as_str()
            .strip_prefix("org.freedesktop.systemd1.")
            .is_some_and(|n| n == short),
        _ => false,
    }
}

/// The unit name in a systemd unit object path (`/org/freedesktop/systemd1/unit/berth_2dweb_2eservice`).
pub(crate) fn unit_from_path(path: &str) -> Option<String> {
    let enc = path.strip_prefix("/org/freedesktop/systemd1/unit/")?;
    let b = enc.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_unit_paths() {
        assert_eq!(
            unit_from_path("/org/freedesktop/systemd1/unit/berth_2dweb_2eservice").as_deref(),
            Some("berth-web.service")
        );
        assert_eq!(
            unit_from_path("/org/freedesktop/systemd1/unit/berth_2dweb_5f1_2eservice").as_deref(),
            Some("berth-web_1.service")
        );
        assert_eq!(unit_from_path("/org/freedesktop/systemd1/job/12"), None);
    }
}

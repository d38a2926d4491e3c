//! What berthd asks systemd for: a typed description of a container's transient unit (`UnitSpec`)
//! turned into the `a(sv)` properties of `StartTransientUnit`, and the typed view of a unit's
//! state read back (`UnitStatus`). Pure data; runs in berthd, unit-tested without a bus.

use super::ActiveState;
use std::collections::BTreeMap;
use std::time::Duration;
use zbus::zvariant::Value;

/// Prefix of every unit berth owns: `berth-<name>.service`.
pub const UNIT_PREFIX: &str = "berth-";
/// Environment variable in the unit that carries the effective spec hash, compared after a restart.
pub const SPEC_HASH_ENV: &str = "BERTH_SPEC_HASH";
/// How much longer than the stop grace period systemd waits before it SIGKILLs the whole unit.
pub const STOP_BACKSTOP: Duration = Duration::from_secs(5);

/// How long berthd waits for the stop job of a unit whose grace period is `grace`. Derived from
/// the same rule as the unit's `TimeoutStopSec=` (grace + [`STOP_BACKSTOP`]), with room after it
/// for systemd's final SIGKILL and the job's report, so berthd never gives up on a stop that
/// systemd is still carrying out.
pub fn stop_job_wait(grace: Duration) -> Duration {
    grace + STOP_BACKSTOP + Duration::from_secs(25)
}
/// `ListUnitsByPatterns` pattern that selects berth's units.
pub const UNIT_PATTERN: &str = "berth-*.service";

/// The unit name of a container.
pub fn unit_name(container: &str) -> String {
    format!("{UNIT_PREFIX}{container}.service")
}

/// The container name of a berth unit name, `None` for other units.
pub fn container_name(unit: &str) -> Option<&str> {
    unit.strip_prefix(UNIT_PREFIX)?.strip_suffix(".service")
}

/// Docker's restart policies as systemd `Restart=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// `no`: never restart.
    #[default]
    No,
    /// `on-failure[:N]`: restart on a non-zero exit or a signal, at most `max_retries` times when set.
    OnFailure { max_retries: Option<u32> },
    /// `always` and `unless-stopped` (a stop through systemd is never followed by a restart).
    Always,
}

/// A container's transient service, as berthd wants it. Build it with [`UnitSpec::new`] and set
/// the public fields; [`UnitSpec::properties`] gives what `StartTransientUnit` takes.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    /// Container name; the unit is `berth-<name>.service`.
    pub name: String,
    /// `Description=`, e.g. "berth container web (docker.io/library/nginx:1.27)".
    pub description: String,
    /// The shim's argv; `exec_start[0]` is an absolute path. systemd expands `$`/`%` in it, so
    /// arguments are escaped by [`UnitSpec::properties`].
    pub exec_start: Vec<String>,
    /// `MemoryMax=` in bytes.
    pub memory_max: Option<u64>,
    /// `CPUQuota=` as CPU time per second (`cpus: 0.5` → 500 ms).
    pub cpu_quota_per_sec: Option<Duration>,
    /// `TasksMax=`.
    pub tasks_max: Option<u64>,
    /// `KillSignal=`: the spec's `stop_signal` or the image's `StopSignal`; SIGTERM by default.
    pub kill_signal: Option<i32>,
    /// The container's stop grace period (Docker's `stop_grace_period`), which the shim itself
    /// enforces (shim.json `stop_timeout_ms`: it SIGKILLs the container, then cleans up).
    /// systemd's `TimeoutStopSec=` is this plus [`STOP_BACKSTOP`]: only a hung shim meets it.
    pub timeout_stop: Option<Duration>,
    /// `TimeoutStartSec=`: how long the shim may take to report READY=1.
    pub timeout_start: Option<Duration>,
    pub restart: RestartPolicy,
    /// `RestartSec=`.
    pub restart_delay: Option<Duration>,
    /// `After=` (ordering, e.g. the units of `depends_on` containers, `network-online.target`).
    pub after: Vec<String>,
    /// `Requires=`.
    pub requires: Vec<String>,
    /// `Wants=`.
    pub wants: Vec<String>,
    /// The effective spec hash, carried as `BERTH_SPEC_HASH=` in `Environment=`.
    pub spec_hash: String,
    /// `LogExtraFields=`: journal fields added to every line of the unit (CONTAINER_NAME, …).
    pub log_fields: BTreeMap<String, String>,
    /// `SyslogIdentifier=` of the unit's stdout/stderr stream.
    pub syslog_identifier: Option<String>,
    /// `LogRateLimitIntervalSec=`/`LogRateLimitBurst=`; `None`: journald's defaults.
    pub log_rate_limit: Option<crate::spec::RateLimit>,
}

impl UnitSpec {
    /// A unit for container `name` running `exec_start`, with the Docker-journald-like log fields.
    pub fn new(name: &str, image: &str, exec_start: Vec<String>) -> Self {
        let mut log_fields = BTreeMap::new();
        log_fields.insert("CONTAINER_NAME".to_owned(), name.to_owned());
        log_fields.insert("IMAGE_NAME".to_owned(), image.to_owned());
        UnitSpec {
            name: name.to_owned(),
            description: format!("berth container {name} ({image})"),
            exec_start,
            memory_max: None,
            cpu_quota_per_sec: None,
            tasks_max: None,
            kill_signal: None,
            timeout_stop: None,
            timeout_start: None,
            restart: RestartPolicy::No,
            restart_delay: None,
            after: Vec::new(),
            requires: Vec::new(),
            wants: Vec::new(),
            spec_hash: String::new(),
            log_fields,
            syslog_identifier: Some(name.to_owned()),
            log_rate_limit: None,
        }
    }

    pub fn unit_name(&self) -> String {
        unit_name(&self.name)
    }

    /// Checks what systemd would reject late or, worse, interpret: empty argv, relative binary,
    /// bad journal field names, newlines in values.
    pub fn validate(&self) -> Result<(), String> {
        // The container-name grammar, the one the spec file name is parsed with.
        if !crate::spec::is_valid_name(&self.name) {
            return Err(format!(
                "invalid container name {:?} for a unit name",
                self.name
            ));
        }
        match self.exec_start.first() {
            Some(p) if p.starts_with('/') => {}
            _ => {
                return Err(format!(
                    "exec_start of {} needs an absolute binary path",
                    self.name
                ));
            }
        }
        for k in self.log_fields.keys() {
            let ok = !k.is_empty()
                && !k.starts_with('_')
                && !k.as_bytes()[0].is_ascii_digit()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(format!(
                    "invalid journal field name {k:?} for {}",
                    self.name
                ));
            }
        }
        for (k, v) in &self.log_fields {
            if k.contains('=') || v.contains('\n') {
                return Err(format!("invalid value for {k} of {}: {v:?}", self.name));
            }
        }
        Ok(())
    }

    /// The `a(sv)` properties of `StartTransientUnit`. Service defaults chosen here, with why:
    /// - `Type=notify` + `NotifyAccess=main`: the unit is active when the shim says so (the
    ///   container runs or is healthy), and only the shim may say it.
    /// - `Delegate=yes`: the shim creates the `supervisor` and `container` leaves itself.
    /// - `KillMode=mixed`: the stop signal goes to the shim only, which forwards it to the
    ///   container; after `TimeoutStopSec` systemd SIGKILLs whatever is left in the cgroup.
    /// - `OOMPolicy=continue`: an OOM kill inside the container is the shim's to report (as the
    ///   container's exit), not a reason for systemd to tear the unit down under it.
    pub fn properties(&self) -> Vec<(&'static str, Value<'static>)> {
        let mut p: Vec<(&'static str, Value<'static>)> = vec![
            ("Description", Value::from(self.description.clone())),
            ("Type", Value::from("notify")),
            ("NotifyAccess", Value::from("main")),
            ("Delegate", Value::from(true)),
            ("KillMode", Value::from("mixed")),
            ("OOMPolicy", Value::from("continue")),
        ];
        let argv: Vec<String> = self.exec_start.iter().map(|a| escape_exec_arg(a)).collect();
        let path = self.exec_start.first().cloned().unwrap_or_default();
        p.push(("ExecStart", Value::from(vec![(path, argv, false)])));
        if let Some(v) = self.memory_max {
            p.push(("MemoryMax", Value::from(v)));
        }
        if let Some(v) = self.cpu_quota_per_sec {
            p.push(("CPUQuotaPerSecUSec", Value::from(usec(v))));
        }
        if let Some(v) = self.tasks_max {
            p.push(("TasksMax", Value::from(v)));
        }
        if let Some(v) = self.kill_signal {
            p.push(("KillSignal", Value::from(v)));
        }
        if let Some(v) = self.timeout_stop {
            p.push(("TimeoutStopUSec", Value::from(usec(v + STOP_BACKSTOP))));
        }
        if let Some(v) = self.timeout_start {
            p.push(("TimeoutStartUSec", Value::from(usec(v))));
        }
        let restart = match self.restart {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
        };
        p.push(("Restart", Value::from(restart)));
        if let Some(v) = self.restart_delay {
            p.push(("RestartUSec", Value::from(usec(v))));
        }
        match self.restart {
            // Docker counts `on-failure:N` retries over the container's life: a start limit of
            // N+1 starts that never expires is the same bound.
            RestartPolicy::OnFailure {
                max_retries: Some(n),
            } => {
                p.push(("StartLimitBurst", Value::from(n.saturating_add(1))));
                p.push(("StartLimitIntervalUSec", Value::from(u64::MAX)));
            }
            // A container that keeps crashing is still restarted, as Docker does.
            RestartPolicy::Always | RestartPolicy::OnFailure { max_retries: None } => {
                p.push(("StartLimitIntervalUSec", Value::from(0u64)));
            }
            RestartPolicy::No => {}
        }
        for (key, list) in [
            ("After", &self.after),
            ("Requires", &self.requires),
            ("Wants", &self.wants),
        ] {
            if !list.is_empty() {
                p.push((key, Value::from(list.clone())));
            }
        }
        // The shim's environment (the container's is in config.json) carries only the hash.
        p.push((
            "Environment",
            Value::from(vec![format!("{SPEC_HASH_ENV}={}", self.spec_hash)]),
        ));
        if !self.log_fields.is_empty() {
            let fields: Vec<Vec<u8>> = self
                .log_fields
                .iter()
                .map(|(k, v)| format!("{k}={v}").into_bytes())
                .collect();
            p.push(("LogExtraFields", Value::from(fields)));
        }
        if let Some(id) = &self.syslog_identifier {
            p.push(("SyslogIdentifier", Value::from(id.clone())));
        }
        if let Some(r) = self.log_rate_limit {
            let (interval, burst) = if r.is_off() {
                (usec(UNLIMITED_LOG_INTERVAL), UNLIMITED_LOG_BURST)
            } else {
                (usec(r.interval), r.burst)
            };
            p.push(("LogRateLimitIntervalUSec", Value::from(interval)));
            p.push(("LogRateLimitBurst", Value::from(burst)));
        }
        p
    }
}

/// systemd expands `$VAR`, `${VAR}` and `%` specifiers in ExecStart even when it comes over D-Bus;
/// doubling them keeps the shim's argv literal.
fn escape_exec_arg(arg: &str) -> String {
    arg.replace('%', "%%").replace('$', "$$")
}

/// "No rate limit" as a unit can say it. systemd exports a unit's `LogRateLimit*` to journald
/// only when they are not 0, so a 0 gets journald's own default (about 35,000 lines kept of a
/// flood), not "off". The largest burst instead: journald multiplies it by up to 48 (by free disk
/// space) in an unsigned int, so a larger one would wrap to a small limit.
const UNLIMITED_LOG_BURST: u32 = u32::MAX / 64;
const UNLIMITED_LOG_INTERVAL: Duration = Duration::from_secs(1);

fn usec(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One row of `ListUnitsByPatterns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitListEntry {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub active_state: ActiveState,
    pub sub_state: String,
}

impl UnitListEntry {
    /// The container name, when this is one of berth's units.
    pub fn container(&self) -> Option<&str> {
        container_name(&self.name)
    }
}

/// A unit's state as systemd reports it (Unit + Service properties).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitStatus {
    pub name: String,
    pub active_state: ActiveState,
    /// Service sub-state: `running`, `start`, `stop-sigterm`, `auto-restart`, `dead`, `failed` …
    pub sub_state: String,
    pub load_state: String,
    /// `Result`: `success`, `exit-code`, `signal`, `timeout`, `oom-kill`, …
    pub result: String,
    /// PID of the shim while it runs (0 otherwise).
    pub main_pid: u32,
    /// The last exit of the main process: `ExecMainCode` (CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3)
    /// and `ExecMainStatus` (exit status or signal number). The shim exits with the container's status.
    pub exec_main_code: i32,
    pub exec_main_status: i32,
    pub n_restarts: u32,
    /// The unit's cgroup path (relative to the cgroup root of systemd's view).
    pub control_group: String,
    pub environment: Vec<String>,
    pub invocation_id: String,
    /// `running`, `freezing`, `frozen`, `thawing` (`berth pause` freezes the unit's cgroup).
    pub freezer_state: String,
}

impl UnitStatus {
    /// The spec hash the unit was started with (from `Environment=`).
    pub fn spec_hash(&self) -> Option<&str> {
        self.environment.iter().find_map(|e| {
            e.strip_prefix(SPEC_HASH_ENV)
                .and_then(|r| r.strip_prefix('='))
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn berthd_waits_for_a_stop_longer_than_systemd_takes() {
        for grace in [
            Duration::ZERO,
            Duration::from_secs(10),
            Duration::from_secs(600),
        ] {
            let systemd_gives_up = grace + STOP_BACKSTOP;
            assert!(stop_job_wait(grace) > systemd_gives_up, "grace {grace:?}");
        }
    }

    use super::*;

    fn find<'a>(p: &'a [(&'static str, Value<'static>)], k: &str) -> Option<&'a Value<'static>> {
        p.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }

    fn spec() -> UnitSpec {
        UnitSpec::new(
            "web",
            "docker.io/library/nginx:1.27",
            vec![
                "/usr/bin/berth-shim".into(),
                "--bundle".into(),
                "/run/berth/containers/web".into(),
            ],
        )
    }

    #[test]
    fn defaults_are_notify_delegated_mixed() {
        let p = spec().properties();
        assert_eq!(find(&p, "Type"), Some(&Value::from("notify")));
        assert_eq!(find(&p, "NotifyAccess"), Some(&Value::from("main")));
        assert_eq!(find(&p, "Delegate"), Some(&Value::from(true)));
        assert_eq!(find(&p, "KillMode"), Some(&Value::from("mixed")));
        assert_eq!(find(&p, "Restart"), Some(&Value::from("no")));
        assert!(find(&p, "MemoryMax").is_none());
        assert!(find(&p, "StartLimitBurst").is_none());
        assert_eq!(
            find(&p, "Description"),
            Some(&Value::from(
                "berth container web (docker.io/library/nginx:1.27)"
            ))
        );
        // Names are unique: systemd rejects a property given twice.
        let mut names: Vec<_> = p.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), p.len());
    }

    #[test]
    fn exec_start_has_dbus_shape_and_is_escaped() {
        let mut s = spec();
        s.exec_start.push("$HOME/100%".into());
        let p = s.properties();
        let v = find(&p, "ExecStart").unwrap();
        assert_eq!(v.value_signature().to_string(), "a(sasb)");
        let expect = Value::from(vec![(
            "/usr/bin/berth-shim".to_owned(),
            vec![
                "/usr/bin/berth-shim".to_owned(),
                "--bundle".to_owned(),
                "/run/berth/containers/web".to_owned(),
                "$$HOME/100%%".to_owned(),
            ],
            false,
        )]);
        assert_eq!(v, &expect);
    }

    #[test]
    fn limits_and_timeouts_in_systemd_units() {
        let mut s = spec();
        s.memory_max = Some(256 << 20);
        s.cpu_quota_per_sec = Some(Duration::from_millis(500));
        s.tasks_max = Some(200);
        s.kill_signal = Some(libc::SIGQUIT);
        s.timeout_stop = Some(Duration::from_secs(3));
        let p = s.properties();
        assert_eq!(find(&p, "MemoryMax"), Some(&Value::U64(268_435_456)));
        assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
        assert_eq!(find(&p, "TasksMax"), Some(&Value::U64(200)));
        assert_eq!(find(&p, "KillSignal"), Some(&Value::I32(libc::SIGQUIT)));
        assert_eq!(find(&p, "TimeoutStopUSec"), Some(&Value::U64(8_000_000)));
    }

    #[test]
    fn restart_policies() {
        let mut s = spec();
        s.restart = RestartPolicy::OnFailure {
            max_retries: Some(3),
        };
        s.restart_delay = Some(Duration::from_millis(1500));
        let p = s.properties();
        assert_eq!(find(&p, "Restart"), Some(&Value::from("on-failure")));
        assert_eq!(find(&p, "RestartUSec"), Some(&Value::U64(1_500_000)));
        assert_eq!(find(&p, "StartLimitBurst"), Some(&Value::U32(4)));
        assert_eq!(
            find(&p, "StartLimitIntervalUSec"),
            Some(&Value::U64(u64::MAX))
        );
        s.restart = RestartPolicy::Always;
        let p = s.properties();
        assert_eq!(find(&p, "Restart"), Some(&Value::from("always")));
        assert_eq!(find(&p, "StartLimitIntervalUSec"), Some(&Value::U64(0)));
    }

    #[test]
    fn environment_carries_hash_and_log_fields_are_bytes() {
        let mut s = spec();
        s.spec_hash = "sha256:abc".into();
        s.log_fields.insert("CONTAINER_ID".into(), "0123".into());
        s.after = vec!["berth-db.service".into()];
        s.requires = vec!["berth-db.service".into()];
        let p = s.properties();
        assert_eq!(
            find(&p, "Environment"),
            Some(&Value::from(vec!["BERTH_SPEC_HASH=sha256:abc".to_owned()]))
        );
        let f = find(&p, "LogExtraFields").unwrap();
        assert_eq!(f.value_signature().to_string(), "aay");
        assert_eq!(
            f,
            &Value::from(vec![
                b"CONTAINER_ID=0123".to_vec(),
                b"CONTAINER_NAME=web".to_vec(),
                b"IMAGE_NAME=docker.io/library/nginx:1.27".to_vec(),
            ])
        );
        assert_eq!(find(&p, "SyslogIdentifier"), Some(&Value::from("web")));
        assert_eq!(
            find(&p, "After"),
            Some(&Value::from(vec!["berth-db.service".to_owned()]))
        );
        assert!(find(&p, "Wants").is_none());
    }

    #[test]
    fn log_rate_limit_is_typed_and_zero_turns_it_off() {
        let mut s = spec();
        assert!(find(&s.properties(), "LogRateLimitBurst").is_none());
        s.log_rate_limit = Some(crate::spec::RateLimit {
            interval: Duration::from_secs(30),
            burst: 100_000,
        });
        let p = s.properties();
        assert_eq!(
            find(&p, "LogRateLimitIntervalUSec"),
            Some(&Value::U64(30_000_000))
        );
        // systemd's D-Bus type for the burst is `u`: a u64 would be refused.
        assert_eq!(find(&p, "LogRateLimitBurst"), Some(&Value::U32(100_000)));
        s.log_rate_limit = Some(crate::spec::RateLimit {
            interval: Duration::from_secs(30),
            burst: 0,
        });
        // Not 0, which systemd would not pass on to journald (its default limit would apply).
        let p = s.properties();
        assert_eq!(
            find(&p, "LogRateLimitIntervalUSec"),
            Some(&Value::U64(1_000_000))
        );
        assert_eq!(find(&p, "LogRateLimitBurst"), Some(&Value::U32(67_108_863)));
    }

    #[test]
    fn validate_rejects_bad_input() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.exec_start[0] = "berth-shim".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.log_fields.insert("lower".into(), "x".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.name = "a/b".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.log_fields.insert("A".into(), "x\ny".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn names_and_hash() {
        assert_eq!(unit_name("web"), "berth-web.service");
        assert_eq!(container_name("berth-web.service"), Some("web"));
        assert_eq!(container_name("sshd.service"), None);
        let st = UnitStatus {
            environment: vec!["A=1".into(), "BERTH_SPEC_HASH=h1".into()],
            ..Default::default()
        };
        assert_eq!(st.spec_hash(), Some("h1"));
    }
}

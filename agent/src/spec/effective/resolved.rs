//! The values of a spec resolved for the unit and the bundle: systemd limits, mounts, the
//! capability set, rlimits, the device list. Pure functions of the spec; run in berthd (and
//! `berth check`/`diff`) when the effective spec is resolved.

use super::DeviceNode;
use crate::spec::{CAPABILITIES, SecurityOpt, Spec, ULIMITS, VolumeSource};
use serde::Serialize;
use std::time::Duration;

/// Capabilities a container gets unless the spec adds or drops some: Docker's default set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The unit's resource limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// `MemoryMax=` in bytes.
    pub memory_max: Option<u64>,
    /// `CPUQuota=` as CPU time per second (`cpus: 0.5` → 500 ms).
    pub cpu_quota_per_sec: Option<Duration>,
    /// `TasksMax=`; `u64::MAX` is systemd's `infinity` (`pids_limit: -1`).
    pub tasks_max: Option<u64>,
}

impl Limits {
    pub fn of(spec: &Spec) -> Self {
        Limits {
            memory_max: spec.mem_limit.map(|m| m.0),
            cpu_quota_per_sec: spec.cpus.map(Duration::from_secs_f64),
            // -1 is Docker's "unlimited"; left unset, systemd's DefaultTasksMax would apply.
            tasks_max: spec
                .pids_limit
                .map(|p| u64::try_from(p).unwrap_or(u64::MAX)),
        }
    }
}

/// A mount the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Absolute path in the container.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A host path bound in.
    Bind { source: String, read_only: bool },
    /// A named volume (a directory under berth's volumes dir).
    Volume { name: String, read_only: bool },
    /// A tmpfs with the spec's options (size, mode, …).
    Tmpfs { options: Vec<String> },
}

/// `volumes:` then `tmpfs:`, in spec order.
pub fn mounts(spec: &Spec) -> Vec<Mount> {
    let volumes = spec.volumes.iter().map(|v| Mount {
        target: v.target.clone(),
        kind: match &v.source {
            VolumeSource::Bind(p) => MountKind::Bind {
                source: p.clone(),
                read_only: v.read_only,
            },
            VolumeSource::Named(n) => MountKind::Volume {
                name: n.clone(),
                read_only: v.read_only,
            },
        },
    });
    let tmpfs = spec.tmpfs.0.iter().map(|t| Mount {
        target: t.target.clone(),
        kind: MountKind::Tmpfs {
            options: t.options.clone(),
        },
    });
    volumes.chain(tmpfs).collect()
}

/// The capability set after `cap_add` / `cap_drop` (Docker's rules: `ALL` in add grants all,
/// `ALL` in drop starts from none).
pub fn capabilities(s: &Spec) -> Vec<String> {
    let all = CAPABILITIES.iter().map(|c| format!("CAP_{c}"));
    let mut caps: Vec<String> = if s.cap_drop.iter().any(|c| c.0 == "ALL") {
        vec![]
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    if s.cap_add.iter().any(|c| c.0 == "ALL") {
        caps = all.collect();
    } else {
        caps.extend(s.cap_add.iter().map(|c| c.0.clone()));
    }
    caps.retain(|c| {
        !s.cap_drop
            .iter()
            .any(|d| &d.0 == c && !s.cap_add.iter().any(|a| &a.0 == c))
    });
    caps.sort();
    caps.dedup();
    caps
}

/// One `ulimits:` entry as an OCI rlimit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    pub kind: oci_spec::runtime::PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

/// `ulimits:`, by name. Without any, the container inherits the unit's limits (systemd's
/// defaults), as Docker's containers inherit dockerd's.
pub fn rlimits(spec: &Spec) -> Vec<Rlimit> {
    spec.ulimits
        .iter()
        .filter_map(|(k, u)| {
            let kind = ULIMITS.iter().find(|(n, _)| n == k)?.1;
            Some(Rlimit {
                kind,
                soft: u.soft,
                hard: u.hard,
            })
        })
        .collect()
}

/// `no-new-privileges` in effect (the last option wins, as in Docker).
pub fn no_new_privileges(spec: &Spec) -> bool {
    spec.security_opt
        .iter()
        .rev()
        .find_map(|o| match o {
            SecurityOpt::NoNewPrivileges(b) => Some(*b),
            _ => None,
        })
        .unwrap_or(false)
}

/// A device passed through: where the container sees it, what it may do with it, and the host
/// node it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassedDevice {
    pub container: String,
    /// A subset of `rwm`.
    pub permissions: String,
    pub node: DeviceNode,
}

//! The shim's input, `shim.json` beside the bundle's `config.json`: written by berthd, read by
//! berth-shim at start. It carries what the OCI config has no place for.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::SHIM_CONFIG_FILE;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShimConfig {
    /// Container name; the unit is `berth-<name>.service`.
    pub name: String,
    /// Image reference as the user wrote it, for log fields and status.
    pub image: String,
    /// Resolved image manifest digest (`sha256:…`), for log fields and status.
    #[serde(default)]
    pub image_digest: String,
    /// Overlay to mount at `<bundle>/rootfs` before create and unmount after delete. `None` when the
    /// bundle's rootfs is a ready directory (tests, `berth-runtime` bundles).
    #[serde(default)]
    pub rootfs: Option<OverlayRootfs>,
    /// When the unit becomes active (READY=1).
    #[serde(default)]
    pub readiness: Readiness,
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// Give the container a pty the shim holds (`tty: true` in the spec).
    #[serde(default)]
    pub tty: bool,
    /// Keep the container's stdin open (`stdin_open: true`), for attach.
    #[serde(default)]
    pub stdin_open: bool,
    /// Hash of the effective spec this container was created from (also a unit property).
    #[serde(default)]
    pub spec_hash: String,
    /// The container's stop signal (the unit's `KillSignal=`); SIGTERM when unset.
    #[serde(default)]
    pub stop_signal: Option<i32>,
    /// After forwarding the stop signal, the shim SIGKILLs the container itself after this long,
    /// so it can still unmount and clean up before systemd's `TimeoutStopSec=` kills the whole
    /// unit (berthd sets TimeoutStopSec a few seconds longer). Unset: wait for systemd.
    #[serde(default)]
    pub stop_timeout_ms: Option<u64>,
    /// A bridge network the shim sets up in a namespace of its own before creating the container
    /// (`network_mode: bridge`); `None`: config.json says which network namespace, if any.
    #[serde(default)]
    pub network: Option<crate::NetworkConfig>,
}

/// An overlayfs root filesystem: read-only image layers plus the container's own upper dir (the
/// image store's answer to "where does this container's root come from").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayRootfs {
    /// Unpacked layer directories, topmost first (overlayfs `lowerdir` order).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// READY=1 as soon as the container's process runs.
    #[default]
    Started,
    /// READY=1 after the first passing health check.
    Healthy,
    /// The application sends READY=1 itself. The shim listens on `<bundle>/notify.sock` and
    /// forwards only READY=1 and STATUS= to systemd (NotifyAccess=main stays: the container can
    /// never speak for the unit otherwise). berthd bind-mounts that socket into the container
    /// and sets NOTIFY_SOCKET to its inside path in config.json.
    Notify,
}

/// A Docker-style health check, durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// argv run inside the container (CMD-SHELL is already turned into `["/bin/sh", "-c", …]`).
    pub command: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ShimConfig {
    /// Reads `<bundle>/shim.json`.
    pub fn load(bundle: &std::path::Path) -> Result<Self, ConfigError> {
        let path = bundle.join(SHIM_CONFIG_FILE);
        let text = std::fs::read(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ConfigError::Parse { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_strict() {
        let c: ShimConfig = serde_json::from_str(r#"{"name":"web","image":"busybox"}"#).unwrap();
        assert_eq!(c.readiness, Readiness::Started);
        assert!(c.rootfs.is_none());
        assert!(serde_json::from_str::<ShimConfig>(r#"{"name":"w","image":"b","x":1}"#).is_err());
        let c: ShimConfig =
            serde_json::from_str(r#"{"name":"w","image":"b","readiness":"healthy"}"#).unwrap();
        assert_eq!(c.readiness, Readiness::Healthy);
    }
}

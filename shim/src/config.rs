//! The shim's input, `shim.json` beside the bundle's `config.json`: written by berthd, read by
//! berth-shim at start. It carries what the OCI config has no place for.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// File name of the shim config inside a container's bundle directory.
pub const SHIM_CONFIG_FILE: &str = "shim.json";

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
}

/// An overlayfs root filesystem: read-only image layers plus the container's own upper dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The application sends READY=1 itself through NOTIFY_SOCKET, passed on to it.
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

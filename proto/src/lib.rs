//! The contract between berthd (and the `berth` CLI) and berth-shim, and nothing else: the shim's
//! input `shim.json` ([`config`]), its control socket protocol and a blocking client
//! ([`protocol`]), the record of a container's end `exit.json` ([`exit`]), its bridge network
//! ([`network`]), the lock on a container's network ([`netlock`]) and the names of the
//! files both sides find in a bundle directory. Runs in berthd, the CLI, berth-shim and tests.
//! Kept light on purpose (serde, nix for SCM_RIGHTS): berthd links it without the runtime.

pub mod config;
pub mod exit;
pub mod fsutil;
pub mod netlock;
pub mod network;
pub mod protocol;
mod term;
mod wire;

pub use config::{HealthCheck, OverlayRootfs, Readiness, ShimConfig};
pub use exit::{ContainerExit, ExitRecord};
pub use network::{
    AttachmentStatus, BridgeNetwork, NetworkAttachment, NetworkConfig, NetworkStatus, PortMapping,
    Protocol,
};

/// The shim's input, beside the bundle's `config.json`.
pub const SHIM_CONFIG_FILE: &str = "shim.json";
/// The control socket (root only) in the bundle directory.
pub const SOCKET_FILE: &str = "shim.sock";
/// The console socket on which the runtime hands the shim pty masters.
pub const CONSOLE_SOCKET_FILE: &str = "console.sock";
/// The notify proxy socket for `readiness: notify` (see [`Readiness::Notify`]).
pub const NOTIFY_SOCKET_FILE: &str = "notify.sock";
/// The record of the container's end, written by the shim as it exits, read by berthd.
pub const EXIT_FILE: &str = "exit.json";
/// What the shim's network set-up produced (address, published host ports), read by berthd.
pub const NETWORK_STATUS_FILE: &str = "network.json";

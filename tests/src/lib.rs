//! Test harness shared by berth's integration tests (run in the test process, as root): busybox
//! bundles, a real registry, and a real systemd booted in private namespaces.

pub mod agent;
pub mod bundle;
pub mod docker;
pub mod fault_proxy;
pub mod inventory;
pub mod layers;
pub mod registry;
pub mod systemd;

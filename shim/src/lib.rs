//! berth-shim's library: the per-container monitor that runs as the main process of
//! `berth-<name>.service`, creates the container through the runtime library, holds its IO and reaps it.
//! The control-socket client ([`protocol::ShimClient`]) is used by berthd, the CLI and tests.

pub mod backend;
pub mod cgroup;
pub mod config;
pub mod exit;
pub mod health;
pub mod notify;
pub mod protocol;
pub mod rootfs;
pub mod server;
mod sys;

pub use server::{Options, run};

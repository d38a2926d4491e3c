//! berth-shim's library: the per-container monitor that runs as the main process of
//! `berth-<name>.service`, creates the container through the runtime library, holds its IO and reaps it.
//! What berthd and the shim agree on (shim.json, the control protocol and its client, exit.json)
//! is the `berth_proto` crate.

pub mod backend;
pub mod cgroup;
pub mod health;
pub mod network;
pub mod notify;
pub mod rootfs;
pub mod server;
mod sys;

pub use server::{Options, run};

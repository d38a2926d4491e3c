//! berth-shim's library: the per-container monitor that runs as the main process of
//! `berth-<name>.service`, creates the container through the runtime library, holds its IO and reaps it.

pub mod config;

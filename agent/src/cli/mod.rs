//! Subcommands of the `berth` CLI implemented in the library (thin `berth` binary).

pub mod containers;
mod exec;
pub mod image;
pub mod network;

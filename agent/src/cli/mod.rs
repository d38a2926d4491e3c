//! Subcommands of the `berth` CLI implemented in the library (thin `berth` binary).

pub mod containers;
pub mod image;

//! Subcommands of the `berth` CLI implemented in the library (thin `berth` binary).

pub mod berthd;
pub mod containers;
pub mod docs;
pub mod events;
pub(crate) mod exec;
pub mod fsck;
pub mod image;
mod journal;
pub mod network;

//! berth's agent library, used by `berthd` and the `berth` CLI: specs, reconcile, the image store and
//! the systemd client.

pub mod api;
pub mod backends;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod docker;
pub mod events;
pub mod fsck;
pub mod fsutil;
pub mod image;
pub mod network;
pub mod reconcile;
pub mod spec;
pub mod sys;
pub mod systemd;
pub mod volume;

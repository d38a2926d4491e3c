//! berthd's side of container networking. Runs in berthd.

pub mod sweep;

//! `berthd`: the agent daemon.
fn main() {}

//! `berth`: the command-line client.
fn main() {}

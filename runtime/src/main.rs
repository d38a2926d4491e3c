//! `berth-runtime`: the runc-compatible command line over the runtime library.
fn main() {}

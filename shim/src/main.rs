//! `berth-shim`: thin binary over the shim library.
fn main() {}

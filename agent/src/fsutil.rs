//! Crash-safe file writes for berthd's store, records and bundles: the one implementation lives
//! in the proto crate (the shim writes `exit.json` with it too).

pub use berth_proto::fsutil::write_atomic;

//! berth's OCI runtime library: creates, starts, inspects and deletes containers per the OCI runtime
//! spec. Synchronous; linked by `berth-shim` and by the runc-compatible `berth-runtime` binary.

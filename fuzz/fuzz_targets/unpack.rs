//! The layer unpacker on a tar stream, into a scratch directory under /tmp that is removed after
//! each input. The first byte picks how the rest is fed: as it is (the unpacker detects gzip or
//! zstd from its first bytes, so corrupt and truncated compressed streams arrive here), or
//! compressed by the harness with gzip or zstd (so the fuzzer's mutations reach the tar reader
//! through the decompressors). Needs root (owners, device nodes, trusted xattrs).
//! Invariants: nothing is written beside the layer root, and an unpacked layer's diff id is the
//! digest of the uncompressed stream.
#![no_main]

use berth_agent::image::limits::UnpackLimits;
use berth_agent::image::manifest::sha256_digest;
use berth_agent::image::unpack::unpack_layer_with;
use libfuzzer_sys::fuzz_target;
use std::io::Write;

/// Small limits: a bomb is found in milliseconds, and refused.
const LIMITS: UnpackLimits = UnpackLimits {
    max_layer_size: 64 << 20,
    max_expansion_ratio: 1000,
    max_entries: 10_000,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let stream = match mode % 3 {
        0 => body.to_vec(),
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body).expect("in memory");
            e.finish().expect("in memory")
        }
        _ => zstd::encode_all(body, 1).expect("in memory"),
    };
    let scratch = tempfile::Builder::new()
        .prefix("berth-fuzz-unpack-")
        .tempdir_in("/tmp")
        .expect("scratch dir");
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).expect("layer root");
    let res = unpack_layer_with(&stream[..], &root, &LIMITS);
    let beside: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("scratch dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("root")], "written beside the root");
    if let Ok(u) = res
        && mode % 3 != 0
    {
        assert_eq!(u.diff_id, sha256_digest(body), "diff id is not the stream's digest");
    }
});

//! Image references (`nginx`, `ghcr.io/o/r:t@sha256:…`) through berth's one reference grammar.
//! Invariant: a reference that parses is shown (Display) as a reference that parses back to itself.
#![no_main]

use berth_agent::image::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = ImageRef::parse(input) else {
        return;
    };
    let shown = r.to_string();
    let again = ImageRef::parse(&shown)
        .unwrap_or_else(|e| panic!("{input:?} is shown as {shown:?}, which does not parse: {e}"));
    assert_eq!(again, r, "{input:?} is shown as {shown:?}, another reference");
    assert_eq!(again.to_string(), shown);
    let _ = (r.name(), r.to_oci());
});

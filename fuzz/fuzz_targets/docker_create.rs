//! Docker's `POST /containers/create` body: decoded, translated to a berth spec, and that spec
//! judged by the spec grammar as berthd's `Apply` does.
#![no_main]

use berth_agent::{docker, spec};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(yaml) = docker::spec_yaml_of(data) {
        let _ = spec::parse(Path::new("/var/lib/berth/specs/fuzz.yaml"), &yaml);
    }
});

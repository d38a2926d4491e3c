//! A container spec file's text through the path `berth check` and a reconcile pass take: YAML to
//! `Spec` (grammar and validation), then merged with an image config into `Effective`. The files a
//! spec names (env files, seccomp profile, devices) are not read: the fuzzer would name host paths.
//! Invariant beyond "no panic": resolving is deterministic (same spec, same hash).
#![no_main]

use berth_agent::spec::{self, effective};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const IMAGE_CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
"config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","true"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/",
"User":"app","StopSignal":"SIGQUIT","ExposedPorts":{"80/tcp":{}},
"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}}}"#;

const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/etc/berth/containers/fuzz.yaml");
    let Ok(s) = spec::parse(file, text) else {
        return;
    };
    let image = effective::ImageConfig::from_config_blob(IMAGE_CONFIG).expect("fixed config");
    let inputs = effective::Inputs::default();
    let a = effective::resolve("fuzz", &s, DIGEST, &image, &inputs);
    let b = effective::resolve("fuzz", &s, DIGEST, &image, &inputs);
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a.hash, b.hash, "resolving twice gave two hashes"),
        (Err(_), Err(_)) => {}
        _ => panic!("resolving twice gave two outcomes"),
    }
});

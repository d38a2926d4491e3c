//! Unit tests of the effective spec: Docker's merge rules, the inputs read once, the hash.

use super::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;

fn spec(t: &str) -> Spec {
    crate::spec::parse(Path::new("/x/web.yaml"), t).unwrap()
}
fn env_inputs(env: &str) -> Inputs {
    Inputs {
        env_files: vec![("/e".into(), env.into())],
        ..Default::default()
    }
}
fn img() -> ImageConfig {
    ImageConfig::from_config_blob(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Entrypoint":["/ep.sh"],"Cmd":["serve","--port","80"],
        "Env":["PATH=/opt/bin:/bin","A=image","B=image"],"WorkingDir":"/app","User":"app",
        "StopSignal":"SIGQUIT","ExposedPorts":{"80/tcp":{}},
        "Healthcheck":{"Test":["CMD-SHELL","wget -q -O- localhost"],"Interval":5000000000,"Retries":2}}}"#,
    )
    .unwrap()
}

#[test]
fn image_defaults_apply() {
    let e = resolve(
        "web",
        &spec("image: x\n"),
        "sha256:aa",
        &img(),
        &Inputs::default(),
    )
    .unwrap();
    assert_eq!(e.args, vec!["/ep.sh", "serve", "--port", "80"]);
    assert_eq!(e.working_dir, "/app");
    assert_eq!(e.user, "app");
    assert_eq!(e.stop_signal.0, "SIGQUIT");
    assert!(e.env.contains(&"PATH=/opt/bin:/bin".to_string()));
    let hc = e.healthcheck.unwrap();
    assert_eq!(hc.command, vec!["/bin/sh", "-c", "wget -q -O- localhost"]);
    assert_eq!(
        (hc.interval_ms, hc.timeout_ms, hc.retries),
        (5000, 30_000, 2)
    );
    assert_eq!(e.exposed_ports, vec!["80/tcp"]);
}

#[test]
fn command_replaces_cmd_only() {
    let e = resolve(
        "web",
        &spec("image: x\ncommand: run fast\n"),
        "d",
        &img(),
        &Inputs::default(),
    )
    .unwrap();
    assert_eq!(e.args, vec!["/ep.sh", "run", "fast"]);
}

#[test]
fn entrypoint_resets_cmd() {
    let e = resolve(
        "web",
        &spec("image: x\nentrypoint: [/bin/sh]\n"),
        "d",
        &img(),
        &Inputs::default(),
    )
    .unwrap();
    assert_eq!(e.args, vec!["/bin/sh"]);
    let e = resolve(
        "web",
        &spec("image: x\nentrypoint: [/bin/sh]\ncommand: [-c, 'echo hi']\n"),
        "d",
        &img(),
        &Inputs::default(),
    )
    .unwrap();
    assert_eq!(e.args, vec!["/bin/sh", "-c", "echo hi"]);
}

#[test]
fn no_command_is_an_error() {
    let r = resolve(
        "web",
        &spec("image: x\n"),
        "d",
        &ImageConfig::default(),
        &Inputs::default(),
    );
    assert!(matches!(r, Err(EffectiveError::NoCommand { .. })));
}

#[test]
fn env_precedence_and_defaults() {
    let s = spec("image: x\nenv_file: /e.env\nenvironment: {B: spec, C: spec}\n");
    let files = Inputs {
        env_files: vec![(
            "/e.env".to_string(),
            "# c\nA=file\nB=file\n\nD=file\n".to_string(),
        )],
        ..Default::default()
    };
    let e = resolve("web", &s, "d", &img(), &files).unwrap();
    assert_eq!(
        e.env,
        vec![
            "PATH=/opt/bin:/bin",
            "A=file",
            "B=spec",
            "D=file",
            "C=spec",
            "HOSTNAME=web"
        ]
    );
    let e = resolve(
        "web",
        &s,
        "d",
        &ImageConfig {
            cmd: Some(vec!["x".into()]),
            ..Default::default()
        },
        &files,
    )
    .unwrap();
    assert_eq!(e.env[0], format!("PATH={DEFAULT_PATH}"));
    assert!(parse_env_file("/e", "JUSTKEY\n").is_err());
}

#[test]
fn spec_overrides_image() {
    let s = spec(
        "image: x\nuser: '1:2'\nworking_dir: /w\nstop_signal: INT\nstop_grace_period: 3s\nhealthcheck: {interval: 1s}\n",
    );
    let e = resolve("web", &s, "d", &img(), &Inputs::default()).unwrap();
    assert_eq!(
        (
            e.user.as_str(),
            e.working_dir.as_str(),
            e.stop_signal.0.as_str()
        ),
        ("1:2", "/w", "SIGINT")
    );
    assert_eq!(e.stop_timeout.as_secs(), 3);
    let hc = e.healthcheck.unwrap();
    assert_eq!((hc.interval_ms, hc.retries), (1000, 2));
    let e = resolve(
        "web",
        &spec("image: x\nhealthcheck: {disable: true}\n"),
        "d",
        &img(),
        &Inputs::default(),
    )
    .unwrap();
    assert!(e.healthcheck.is_none());
    let e = resolve(
        "web",
        &spec("image: x\nhealthcheck: {test: [NONE]}\n"),
        "d",
        &img(),
        &Inputs::default(),
    )
    .unwrap();
    assert!(e.healthcheck.is_none());
}

#[test]
fn readiness_healthy_needs_a_check() {
    let s = spec("image: x\nreadiness: healthy\n");
    assert!(
        resolve(
            "web",
            &s,
            "d",
            &ImageConfig {
                cmd: Some(vec!["x".into()]),
                ..Default::default()
            },
            &Inputs::default()
        )
        .is_err()
    );
    assert!(resolve("web", &s, "d", &img(), &Inputs::default()).is_ok());
}

#[test]
fn hash_changes_exactly_when_what_runs_changes() {
    let h = |t: &str, digest: &str, env: &str| spec_hash("web", &spec(t), digest, &env_inputs(env));
    let base = h("image: x\nenvironment: {A: 1, B: 2}\n", "sha256:1", "X=1");
    // Formatting, comments and key order do not matter.
    assert_eq!(
        base,
        h(
            "# comment\nenvironment:\n  B: '2'\n  A: 1\nimage: x\n",
            "sha256:1",
            "X=1"
        )
    );
    assert_eq!(
        base,
        h("image: x\nenvironment: [A=1, B=2]\n", "sha256:1", "X=1")
    );
    // What runs does.
    assert_ne!(
        base,
        h("image: x\nenvironment: {A: 1, B: 3}\n", "sha256:1", "X=1")
    );
    assert_ne!(
        base,
        h("image: x\nenvironment: {A: 1, B: 2}\n", "sha256:2", "X=1")
    );
    assert_ne!(
        base,
        h("image: x\nenvironment: {A: 1, B: 2}\n", "sha256:1", "X=2")
    );
    assert_ne!(
        base,
        spec_hash(
            "db",
            &spec("image: x\nenvironment: {A: 1, B: 2}\n"),
            "sha256:1",
            &env_inputs("X=1")
        )
    );
    assert!(base.starts_with("sha256:") && base.len() == 71);
    // Joining a network does (its definition does not: it is not in the spec).
    let on = |n: &str| {
        h(
            &format!("image: x\nenvironment: {{A: 1, B: 2}}\nnetworks: {n}\n"),
            "sha256:1",
            "X=1",
        )
    };
    assert_ne!(base, on("[back]"));
    assert_ne!(on("[back]"), on("[back, front]"));
    assert_ne!(on("[back]"), on("{back: {aliases: [db]}}"));
    assert_eq!(on("[back]"), on("{back: }"));
}

const PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;

/// Resolves `text` with the files it names read from disk, as a pass does.
fn resolve_read(text: &str) -> Result<Effective, EffectiveError> {
    let s = spec(text);
    resolve("web", &s, "d", &img(), &read_inputs(&s)?)
}

#[test]
fn seccomp_profile_contents_are_hashed_and_used() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("profile.json");
    std::fs::write(&p, PROFILE).unwrap();
    let text = format!("image: x\nsecurity_opt: [seccomp={}]\n", p.display());
    let e1 = resolve_read(&text).unwrap();
    assert_eq!(
        serde_json::to_value(e1.seccomp.as_ref().unwrap()).unwrap()["syscalls"][0]["names"],
        serde_json::json!(["mkdir"])
    );
    // Rewritten with the same bytes (a touch): same hash.
    std::fs::write(&p, PROFILE).unwrap();
    assert_eq!(resolve_read(&text).unwrap().hash, e1.hash);
    // Edited: a new hash, and the new profile is what the container gets.
    let edited = PROFILE.replace("mkdir", "rmdir");
    std::fs::write(&p, &edited).unwrap();
    let e2 = resolve_read(&text).unwrap();
    assert_ne!(e2.hash, e1.hash);
    assert_eq!(
        serde_json::to_value(e2.seccomp.unwrap()).unwrap()["syscalls"][0]["names"],
        serde_json::json!(["rmdir"])
    );
    // The option in effect is the last one: a later `unconfined` reads no file.
    let unconfined = format!(
        "image: x\nsecurity_opt: [seccomp={}, seccomp=unconfined]\n",
        p.display()
    );
    assert_eq!(read_inputs(&spec(&unconfined)).unwrap(), Inputs::default());
    assert!(resolve_read(&unconfined).unwrap().seccomp.is_none());
}

#[test]
fn unreadable_or_broken_files_are_errors_naming_them() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("missing.json");
    let e = resolve_read(&format!(
        "image: x\nsecurity_opt: [seccomp={}]\n",
        p.display()
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("seccomp profile") && e.contains(&*p.to_string_lossy()),
        "{e}"
    );
    let envf = d.path().join("missing.env");
    let e = resolve_read(&format!("image: x\nenv_file: {}\n", envf.display()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("env_file") && e.contains(&*envf.to_string_lossy()),
        "{e}"
    );
    // A profile that is not JSON: reported at resolve time, with its path.
    std::fs::write(&p, "{not json").unwrap();
    let e = resolve_read(&format!(
        "image: x\nsecurity_opt: [seccomp={}]\n",
        p.display()
    ))
    .unwrap_err();
    assert!(matches!(e, EffectiveError::SeccompProfile { .. }), "{e}");
    assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
    // Inputs that were not read for this spec are refused, not ignored.
    let s = spec(&format!(
        "image: x\nsecurity_opt: [seccomp={}]\n",
        p.display()
    ));
    assert!(resolve("web", &s, "d", &img(), &Inputs::default()).is_err());
}

#[test]
fn device_nodes_are_read_and_hashed() {
    let e = resolve_read("image: x\ndevices: [/dev/null]\n").unwrap();
    assert_eq!(
        e.devices.iter().map(|d| d.node.clone()).collect::<Vec<_>>(),
        vec![DeviceNode {
            path: "/dev/null".into(),
            kind: "c".into(),
            major: 1,
            minor: 3,
            mode: std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata("/dev/null").unwrap().permissions()
            ) & 0o7777,
        }]
    );
    let s = spec("image: x\ndevices: [/dev/null]\n");
    let mut inputs = read_inputs(&s).unwrap();
    let h = spec_hash("web", &s, "d", &inputs);
    assert_eq!(h, e.hash);
    // Another node behind the same path (a replugged device): another hash.
    inputs.devices[0].minor = 4;
    assert_ne!(spec_hash("web", &s, "d", &inputs), h);
    // Not a device, or not there: an error naming the path.
    for p in ["/dev/shm", "/dev/berth-test-no-such-device"] {
        let e = resolve_read(&format!("image: x\ndevices: [{p}:/dev/x]\n"));
        let e = e.unwrap_err().to_string();
        assert!(e.contains("cannot read device") && e.contains(p), "{e}");
    }
}

#[test]
fn hash_without_profile_or_devices_is_what_it_was_before_they_counted() {
    // The hash input as it was when only env files were hashed: containers without a profile
    // must keep their hash across the upgrade, or every one of them would restart.
    #[derive(Serialize)]
    struct Before<'a> {
        version: u32,
        name: &'a str,
        spec: &'a Spec,
        image_digest: &'a str,
        env_files: &'a [(String, String)],
    }
    let s = spec("image: x\nenvironment: {A: 1}\n");
    let inputs = env_inputs("X=1");
    let json = serde_json::to_vec(&Before {
        version: EFFECTIVE_VERSION,
        name: "web",
        spec: &s,
        image_digest: "sha256:1",
        env_files: &inputs.env_files,
    })
    .unwrap();
    let hex: String = Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        spec_hash("web", &s, "sha256:1", &inputs),
        format!("sha256:{hex}")
    );
}

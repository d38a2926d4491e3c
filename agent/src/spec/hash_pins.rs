//! Spec hashes pinned across berth versions: a unit carries its effective-spec hash, and a berthd
//! upgrade replaces every container whose hash changed. These values were computed by the berth
//! that first shipped them; a refactor that changes one restarts every container with such a spec
//! on upgrade, so it must bump `EFFECTIVE_VERSION` on purpose rather than change a value here.
//! Unit tests only (runs in `cargo test`).

use super::effective::{DeviceNode, Inputs, spec_hash};
use std::path::Path;

const PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;

/// (file name, spec text, inputs as a pass would read them, image digest).
fn fixtures() -> Vec<(&'static str, &'static str, Inputs)> {
    vec![
        (
            "minimal",
            "image: docker.io/library/busybox:1.36\n",
            Inputs::default(),
        ),
        (
            "envfiles",
            "image: busybox\nenv_file: [/etc/berth/a.env, /etc/berth/b.env]\nenvironment: {TZ: UTC, PORT: 8080, DEBUG: true}\n",
            Inputs {
                env_files: vec![
                    ("/etc/berth/a.env".into(), "# c\nA=1\nB=two\n".into()),
                    ("/etc/berth/b.env".into(), "B=three\n".into()),
                ],
                ..Default::default()
            },
        ),
        (
            "health",
            "image: ghcr.io/o/web:1\nhealthcheck:\n  test: [\"CMD\", \"wget\", \"-q\", \"http://127.0.0.1/\"]\n  interval: 2s\n  timeout: 1500ms\n  retries: 3\n  start_period: 1m\nreadiness: healthy\nstop_signal: QUIT\nstop_grace_period: 1m30s\nrestart: on-failure:3\n",
            Inputs::default(),
        ),
        (
            "limits",
            "image: busybox\ncommand: [sleep, \"3600\"]\nmem_limit: 256M\ncpus: 0.5\npids_limit: -1\nulimits: {nofile: {soft: 1024, hard: 4096}, core: 0}\ncap_add: [NET_ADMIN]\ncap_drop: [cap_net_raw]\nuser: \"101:101\"\nworking_dir: /srv\nread_only: true\nsysctls: {net.ipv4.ip_forward: 1}\n",
            Inputs::default(),
        ),
        (
            "volumes",
            "image_file: /var/tmp/busybox.tar\nvolumes: [\"/srv/www:/www:ro\", \"cache:/var/cache\"]\ntmpfs: [/tmp, \"/run:size=64m\"]\nnetwork_mode: host\ndepends_on: {db: {condition: service_healthy}, cache: {condition: service_started, required: false}}\nlabels: {a: b}\ninit: true\ntty: true\n",
            Inputs::default(),
        ),
        (
            "seccomp",
            "image: busybox\nsecurity_opt: [no-new-privileges, \"seccomp=/etc/berth/profile.json\"]\n",
            Inputs {
                seccomp_profile: Some(("/etc/berth/profile.json".into(), PROFILE.into())),
                ..Default::default()
            },
        ),
        (
            "devices",
            "image: busybox\ndevices: [\"/dev/fuse\", \"/dev/null:/dev/mynull:rw\"]\n",
            Inputs {
                devices: vec![
                    DeviceNode {
                        path: "/dev/fuse".into(),
                        kind: "c".into(),
                        major: 10,
                        minor: 229,
                        mode: 0o666,
                    },
                    DeviceNode {
                        path: "/dev/null".into(),
                        kind: "c".into(),
                        major: 1,
                        minor: 3,
                        mode: 0o666,
                    },
                ],
                ..Default::default()
            },
        ),
    ]
}

const DIGEST: &str = "sha256:4242424242424242424242424242424242424242424242424242424242424242";

const PINNED: &[(&str, &str)] = &[
    (
        "minimal",
        "sha256:23369eb91fa09db74b58182d2b8d0389726af22623a9f41f36442e8b2059dd09",
    ),
    (
        "envfiles",
        "sha256:9c378b557d80cdb12464af8035def401307baf1d48acbac5fba90246cd3df1b6",
    ),
    (
        "health",
        "sha256:57f72cda764e9fbd8d95892eeeb9b06a4c48790cdd60bac4269b68776ceb01f4",
    ),
    (
        "limits",
        "sha256:f9c0c8da42aa96509649087d3b6fdf9027c6c1d73027bfee32cf0acf9fc176e6",
    ),
    (
        "volumes",
        "sha256:e630875ef09a1fd8be66d8e88885d8b5dbd9bd75c8d7862a150accd29ef6a8fd",
    ),
    (
        "seccomp",
        "sha256:acd07e740def3f89678c408d5682f1b5b0020b09c1f0b5c56be1982519b10916",
    ),
    (
        "devices",
        "sha256:ac96a5afaad8bf2a058c326cfa1fd72c88a0e3990f6d7d5536683cd549647fe1",
    ),
];

#[test]
fn spec_hashes_are_pinned() {
    let mut got = Vec::new();
    for (name, text, inputs) in fixtures() {
        let file = format!("/etc/berth/containers/{name}.yaml");
        let spec = super::parse(Path::new(&file), text).unwrap_or_else(|e| panic!("{e}"));
        got.push((name, spec_hash(name, &spec, DIGEST, &inputs)));
    }
    let got: Vec<(&str, &str)> = got.iter().map(|(n, h)| (*n, h.as_str())).collect();
    assert_eq!(got, PINNED);
}

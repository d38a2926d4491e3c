//! Unit tests of the bundle: config.json against the config berth made before its builders, secure
//! defaults, what the effective spec carries reaching the config.

use super::*;
use crate::spec::effective::{ImageConfig, resolve};
use serde_json::{Value, json};

fn eff(t: &str) -> Effective {
    let spec = crate::spec::parse(Path::new("/x/web.yaml"), t).unwrap();
    let img = ImageConfig {
        cmd: Some(vec!["httpd".into()]),
        ..Default::default()
    };
    resolve("web", &spec, "sha256:1", &img, &Default::default()).unwrap()
}
fn rootfs(d: &Path) -> OverlayRootfs {
    OverlayRootfs {
        lower: vec![d.join("l1"), d.join("l0")],
        upper: d.join("up"),
        work: d.join("wk"),
    }
}

#[test]
fn secure_defaults() {
    let d = tempfile::tempdir().unwrap();
    let c = oci_config(
        &eff("image: x\n"),
        &rootfs(d.path()),
        Path::new("/run/berth/b/web"),
        &Paths {
            volumes: "/v".into(),
            network: None,
        },
    )
    .unwrap();
    let v = serde_json::to_value(&c).unwrap();
    let caps: Vec<&str> = v["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(caps.len(), DEFAULT_CAPS.len());
    assert!(!caps.contains(&"CAP_SYS_ADMIN"));
    assert!(
        v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore")
    );
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network")
    );
    assert_eq!(v["process"]["user"]["uid"], 0);
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
}

#[test]
fn readiness_notify_gets_the_proxy_socket_and_only_that_notify_socket() {
    let d = tempfile::tempdir().unwrap();
    let paths = Paths {
        volumes: "/v".into(),
        network: None,
    };
    let bundle = Path::new("/run/berth/b/web");
    let config = |yaml: &str| {
        let c = oci_config(&eff(yaml), &rootfs(d.path()), bundle, &paths).unwrap();
        serde_json::to_value(&c).unwrap()
    };
    let notify_env = |v: &Value| -> Vec<String> {
        v["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str())
            .filter(|e| e.starts_with("NOTIFY_SOCKET="))
            .map(str::to_owned)
            .collect()
    };
    let v = config("image: x\nreadiness: notify\nenvironment: {NOTIFY_SOCKET: /elsewhere}\n");
    assert_eq!(
        notify_env(&v),
        [format!("NOTIFY_SOCKET={NOTIFY_SOCKET_PATH}")]
    );
    let m = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == NOTIFY_SOCKET_PATH)
        .expect("socket mount");
    assert_eq!(m["source"], "/run/berth/b/web/notify.sock");
    let v = config("image: x\n");
    assert!(notify_env(&v).is_empty());
    assert!(
        !v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == NOTIFY_SOCKET_PATH)
    );
}

#[test]
fn init_runs_the_program_under_tini() {
    let d = tempfile::tempdir().unwrap();
    let paths = Paths {
        volumes: "/v".into(),
        network: None,
    };
    let cfg = |t: &str| {
        oci_config(
            &eff(t),
            &rootfs(d.path()),
            Path::new("/run/berth/b/web"),
            &paths,
        )
        .map(|c| serde_json::to_value(&c).unwrap())
    };
    let plain = cfg("image: x
")
    .unwrap();
    assert_eq!(plain["process"]["args"], json!(["httpd"]));
    if !Path::new(INIT_BINARY).exists() {
        // Without tini the error must say what is missing.
        let e = cfg("image: x
init: true
")
        .unwrap_err()
        .to_string();
        assert!(e.contains(INIT_BINARY), "{e}");
        return;
    }
    let v = cfg("image: x
init: true
")
    .unwrap();
    assert_eq!(v["process"]["args"], json!([INIT_PATH, "--", "httpd"]));
    let m = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == INIT_PATH)
        .expect("the init is mounted");
    assert_eq!(m["source"], INIT_BINARY);
    assert!(m["options"].as_array().unwrap().iter().any(|o| o == "ro"));
}

#[test]
fn spec_settings_reach_config() {
    let d = tempfile::tempdir().unwrap();
    let e = eff(
        "image: x\nnetwork_mode: host\nread_only: true\ncap_drop: [ALL]\ncap_add: [NET_BIND_SERVICE]\nsecurity_opt: [no-new-privileges, seccomp=unconfined]\nvolumes: [/srv:/data:ro, cache:/cache]\ntmpfs: /tmp\nulimits: {nofile: 10}\n",
    );
    let c = oci_config(
        &e,
        &rootfs(d.path()),
        Path::new("/b"),
        &Paths {
            volumes: "/v".into(),
            network: None,
        },
    )
    .unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(
        v["process"]["capabilities"]["bounding"],
        json!(["CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert!(v["linux"].get("seccomp").is_none());
    assert!(
        !v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network")
    );
    assert_eq!(v["root"]["readonly"], true);
    let m = v["mounts"].as_array().unwrap();
    assert!(m.iter().any(|m| m["destination"] == "/data"
        && m["source"] == "/srv"
        && m["options"].as_array().unwrap().contains(&json!("ro"))));
    assert!(
        m.iter()
            .any(|m| m["destination"] == "/cache" && m["source"] == "/v/cache/_data")
    );
    assert!(
        m.iter()
            .any(|m| m["destination"] == "/tmp" && m["type"] == "tmpfs")
    );
    assert!(
        v["process"]["rlimits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["type"] == "RLIMIT_NOFILE" && r["soft"] == 10)
    );
}

#[test]
fn seccomp_profile_comes_from_the_effective_spec() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("profile.json");
    std::fs::write(
        &p,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let spec = crate::spec::parse(
        Path::new("/x/web.yaml"),
        &format!("image: x\nsecurity_opt: [seccomp={}]\n", p.display()),
    )
    .unwrap();
    let img = ImageConfig {
        cmd: Some(vec!["httpd".into()]),
        ..Default::default()
    };
    let inputs = crate::spec::effective::read_inputs(&spec).unwrap();
    let e = resolve("web", &spec, "sha256:1", &img, &inputs).unwrap();
    // Changed after the pass read it: the bundle still gets what was read and hashed.
    std::fs::write(&p, "{}").unwrap();
    let c = oci_config(
        &e,
        &rootfs(d.path()),
        Path::new("/b"),
        &Paths {
            volumes: "/v".into(),
            network: None,
        },
    )
    .unwrap();
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(
        v["linux"]["seccomp"]["syscalls"][0]["names"],
        json!(["mkdir"])
    );
}

#[test]
fn devices_come_from_the_effective_spec() {
    let d = tempfile::tempdir().unwrap();
    let spec = crate::spec::parse(
        Path::new("/x/web.yaml"),
        "image: x\ndevices: [/dev/null:/dev/mynull:rw]\n",
    )
    .unwrap();
    let img = ImageConfig {
        cmd: Some(vec!["httpd".into()]),
        ..Default::default()
    };
    let inputs = crate::spec::effective::read_inputs(&spec).unwrap();
    let mut e = resolve("web", &spec, "sha256:1", &img, &inputs).unwrap();
    let paths = Paths {
        volumes: "/v".into(),
        network: None,
    };
    let v =
        serde_json::to_value(oci_config(&e, &rootfs(d.path()), Path::new("/b"), &paths).unwrap())
            .unwrap();
    let dev = &v["linux"]["devices"][0];
    assert_eq!(
        (&dev["path"], &dev["type"], &dev["major"], &dev["minor"]),
        (&json!("/dev/mynull"), &json!("c"), &json!(1), &json!(3))
    );
    assert!(
        v["linux"]["resources"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["major"] == 1 && r["minor"] == 3 && r["access"] == "rw")
    );
    // Never stat'ed again: the numbers are the ones the pass read.
    e.devices[0].node.minor = 99;
    let v =
        serde_json::to_value(oci_config(&e, &rootfs(d.path()), Path::new("/b"), &paths).unwrap())
            .unwrap();
    assert_eq!(v["linux"]["devices"][0]["minor"], 99);
}

#[test]
fn users_resolve_from_image_files() {
    let d = tempfile::tempdir().unwrap();
    let l = d.path().join("l0/etc");
    std::fs::create_dir_all(&l).unwrap();
    std::fs::write(
        l.join("passwd"),
        "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
    )
    .unwrap();
    std::fs::write(l.join("group"), "root:x:0:\nwww:x:34:\nadm:x:4:www\n").unwrap();
    let lower = vec![d.path().join("l1"), d.path().join("l0")];
    assert_eq!(resolve_user("w", "www", &lower).unwrap(), (33, 34, vec![4]));
    assert_eq!(resolve_user("w", "33", &lower).unwrap(), (33, 34, vec![4]));
    assert_eq!(
        resolve_user("w", "1000:1000", &lower).unwrap(),
        (1000, 1000, vec![])
    );
    assert_eq!(
        resolve_user("w", "www:adm", &lower).unwrap(),
        (33, 4, vec![])
    );
    assert!(resolve_user("w", "nobody", &lower).is_err());
    assert_eq!(resolve_user("w", "", &lower).unwrap(), (0, 0, vec![]));
}

#[test]
fn write_bundle_files() {
    let d = tempfile::tempdir().unwrap();
    let e = eff("image: x\nhealthcheck: {test: 'true', interval: 2s}\nreadiness: healthy\n");
    let b = d.path().join("bundle");
    write(
        &b,
        &e,
        &rootfs(d.path()),
        &Paths {
            volumes: d.path().join("v"),
            network: None,
        },
    )
    .unwrap();
    let shim: ShimConfig =
        serde_json::from_slice(&std::fs::read(b.join("shim.json")).unwrap()).unwrap();
    assert_eq!(shim.spec_hash, e.hash);
    assert_eq!(shim.healthcheck.unwrap().interval_ms, 2000);
    let _: oci_spec::runtime::Spec = oci_spec::runtime::Spec::load(b.join("config.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(b.join("hostname")).unwrap(),
        "web\n"
    );
    assert!(b.join("rootfs").is_dir());
}

/// Sorts what oci-spec keeps in sets (capabilities) and drops what depends on the host's cgroup
/// version, so that two configs compare by meaning.
fn normalised(mut v: Value) -> Value {
    for set in ["bounding", "effective", "permitted"] {
        if let Some(a) = v["process"]["capabilities"][set].as_array_mut() {
            a.sort_by_key(|c| c.as_str().unwrap_or_default().to_owned());
        }
    }
    if let Some(m) = v["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/sys/fs/cgroup");
    }
    if let Some(n) = v["linux"]["namespaces"].as_array_mut() {
        n.retain(|n| n["type"] != "cgroup");
    }
    v["annotations"]["berth.spec.hash"] = json!("HASH");
    v
}

/// config.json as built with oci-spec's builders is the config berth built from a JSON tree before
/// (testdata/*.json, written by that code) for specs that use every setting the bundle reads.
#[test]
fn config_matches_the_config_made_before_the_builders() {
    let d = tempfile::tempdir().unwrap();
    let l = d.path().join("l0/etc");
    std::fs::create_dir_all(&l).unwrap();
    std::fs::write(
        l.join("passwd"),
        "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        l.join("group"),
        "root:x:0:\nwww:x:34:\nadm:x:4:www\nstaff:x:50:www\n",
    )
    .unwrap();
    let rootfs = OverlayRootfs {
        lower: vec![d.path().join("l1"), d.path().join("l0")],
        upper: d.path().join("up"),
        work: d.path().join("wk"),
    };
    let img = ImageConfig {
        entrypoint: Some(vec!["/ep".into()]),
        cmd: Some(vec!["httpd".into(), "-f".into()]),
        env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
        working_dir: Some("/srv".into()),
        user: Some("www".into()),
        ..Default::default()
    };
    let cases = [
        (
            "full",
            "image: x\nuser: www\nread_only: true\ncap_drop: [NET_RAW, MKNOD]\ncap_add: [NET_ADMIN, SYS_PTRACE]\nsecurity_opt: [no-new-privileges]\nvolumes: [\"/srv:/data:ro\", \"cache:/cache\", \"/a:/b:rw\"]\ntmpfs: [/tmp, \"/run:size=64m,mode=1777\"]\nulimits: {nofile: {soft: 1024, hard: 4096}, core: 0, nproc: 100}\nsysctls: {net.ipv4.ip_forward: 1, kernel.shmmax: 100}\ndevices: [\"/dev/null:/dev/mynull:rw\", /dev/zero]\nreadiness: notify\nenvironment: {B: 2, NOTIFY_SOCKET: /x}\ntty: true\nhostname: box\n",
        ),
        (
            "host",
            "image: x\nuser: '1000:1000'\nnetwork_mode: host\ninit: true\nsecurity_opt: [\"seccomp=PROFILE\", no-new-privileges:false]\ncap_drop: [ALL]\ncap_add: [CHOWN]\nentrypoint: [/bin/sh, -c]\ncommand: [echo hi]\n",
        ),
        (
            "plain",
            "image: x\nsecurity_opt: [seccomp=unconfined]\ncap_add: [ALL]\n",
        ),
    ];
    let prof = d.path().join("profile.json");
    std::fs::write(&prof, r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW"},{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#).unwrap();
    for (n, t) in cases {
        let t = t.replace("PROFILE", &prof.display().to_string());
        let spec = crate::spec::parse(Path::new("/x/web.yaml"), &t).unwrap();
        let inputs = crate::spec::effective::read_inputs(&spec).unwrap();
        let e = resolve("web", &spec, "sha256:1", &img, &inputs).unwrap();
        if t.contains("init: true") && !Path::new(INIT_BINARY).exists() {
            continue;
        }
        let c = oci_config(
            &e,
            &rootfs,
            Path::new("/run/berth/b/web"),
            &Paths {
                volumes: "/v".into(),
                network: None,
            },
        )
        .unwrap();
        let got = normalised(serde_json::to_value(&c).unwrap());
        let text = match n {
            "full" => include_str!("testdata/full.json"),
            "host" => include_str!("testdata/host.json"),
            _ => include_str!("testdata/plain.json"),
        };
        let want = normalised(serde_json::from_str(text).unwrap());
        assert_eq!(
            got,
            want,
            "{n}: config.json changed:\n{}",
            serde_json::to_string_pretty(&got).unwrap()
        );
    }
}

#[test]
fn bridge_containers_join_the_shims_namespace_with_their_ports() {
    let d = tempfile::tempdir().unwrap();
    let paths = Paths {
        volumes: "/v".into(),
        network: Some(NetworkPaths {
            netavark: "/usr/lib/podman/netavark".into(),
            aardvark: "/usr/lib/podman/aardvark-dns".into(),
            state_dir: "/run/berth/network".into(),
            netns_dir: "/run/berth/netns".into(),
            declared: crate::config::Config::default().network_sources(),
            default_host_ip: Some("127.0.0.1".parse().unwrap()),
        }),
    };
    let e = eff("image: x\nports: [\"8080:80\", \"0.0.0.0:53:53/udp\"]\n");
    let c =
        serde_json::to_value(oci_config(&e, &rootfs(d.path()), Path::new("/b"), &paths).unwrap())
            .unwrap();
    let net = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "network")
        .unwrap();
    assert_eq!(net["path"], "/run/berth/netns/web");
    let sources = &paths.network.as_ref().unwrap().declared;
    let declared = sources.declare(vec![]);
    let n = paths.network_config(&e, &declared).unwrap().unwrap();
    assert_eq!(n.netns, Path::new("/run/berth/netns/web"));
    assert_eq!(n.networks[0].network.name, "berth");
    assert_eq!(n.networks[0].network.gateway.to_string(), "10.87.0.1");
    assert_eq!(n.aardvark, None, "the default network has no DNS");
    assert_eq!(n.container_id, crate::network::container_id("web"));
    // The default host address applies only where the spec names none.
    let shown: Vec<String> = n.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown, ["127.0.0.1:8080->80/tcp", "0.0.0.0:53->53/udp"]);
    // `none`: a namespace of its own (no path) and nothing for the shim to set up.
    let e = eff("image: x\nnetwork_mode: none\n");
    assert!(paths.network_config(&e, &declared).unwrap().is_none());
    let c =
        serde_json::to_value(oci_config(&e, &rootfs(d.path()), Path::new("/b"), &paths).unwrap())
            .unwrap();
    assert!(
        c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network" && n.get("path").is_none())
    );
    // Named networks: one attachment each, aardvark for the one with DNS, and an undeclared
    // one is an error on the container.
    let declared = sources.declare(vec![crate::network::Found {
        name: "back".into(),
        source: "/n/back.yaml".into(),
        decl: crate::network::parse_file(Path::new("/n/back.yaml"), "subnet: 10.88.1.0/24\n"),
    }]);
    let e = eff("image: x\nnetworks: {back: {aliases: [db]}}\n");
    let n = paths.network_config(&e, &declared).unwrap().unwrap();
    assert_eq!(n.networks.len(), 1);
    assert_eq!(n.networks[0].aliases, ["db"]);
    assert!(n.networks[0].network.dns);
    assert_eq!(n.aardvark, Some("/usr/lib/podman/aardvark-dns".into()));
    let e = eff("image: x\nnetworks: [back, front]\n");
    let err = paths.network_config(&e, &declared).unwrap_err().to_string();
    assert_eq!(err, "container web: network front is not declared");
}

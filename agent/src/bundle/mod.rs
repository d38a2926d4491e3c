//! Turns an effective spec into what the shim reads: the OCI bundle's `config.json` (made with
//! oci-spec, Docker's secure defaults) and `shim.json`, plus the files the container gets at
//! /etc/hosts, /etc/hostname, /etc/resolv.conf. Runs in berthd, before the unit starts.

pub mod seccomp;

use crate::spec::Readiness;
use crate::spec::effective::Effective;
use crate::spec::{NetworkMode, SecurityOpt, ULIMITS, VolumeSource};
use berth_proto::{NOTIFY_SOCKET_FILE, OverlayRootfs, SHIM_CONFIG_FILE, ShimConfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("container {name}: `init: true` needs {path}: {source}")]
    Init {
        name: String,
        path: &'static str,
        source: std::io::Error,
    },
    #[error("container {name}: user `{user}` not found in the image's {file}")]
    UnknownUser {
        name: String,
        user: String,
        file: &'static str,
    },
    #[error("container {name}: device {path}: {source}")]
    Device {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("container {name}: seccomp profile {path}: {message}")]
    Seccomp {
        name: String,
        path: String,
        message: String,
    },
    #[error("container {name}: invalid OCI config: {source}")]
    Oci {
        name: String,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Capabilities a container gets unless the spec adds or drops some: Docker's default set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (kernel information and interfaces it has no business with).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container sees read-only.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host paths the bundle refers to.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Named volumes live in `<volumes>/<name>/_data`.
    pub volumes: PathBuf,
}

/// The init run as PID 1 for `init: true` (package `tini`), and where the container sees it.
pub const INIT_BINARY: &str = "/usr/bin/tini-static";
pub const INIT_PATH: &str = "/sbin/docker-init";
/// Where a `readiness: notify` container finds its notify socket (podman's choice too).
pub const NOTIFY_SOCKET_PATH: &str = "/run/notify/notify.sock";

/// uid, gid and supplementary groups of `user[:group]`, looked up in the image's files when names are used.
pub fn resolve_user(
    name: &str,
    user: &str,
    lower: &[PathBuf],
) -> Result<(u32, u32, Vec<u32>), BundleError> {
    if user.is_empty() {
        return Ok((0, 0, vec![]));
    }
    let read = |f: &str| -> String {
        lower
            .iter()
            .map(|l| l.join(f.trim_start_matches('/')))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let passwd = read("/etc/passwd");
    let group = read("/etc/group");
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    // passwd: name:x:uid:gid:…
    let pw = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let uid: u32 =
        match u.parse() {
            Ok(n) => n,
            Err(_) => pw.as_ref().and_then(|f| f[2].parse().ok()).ok_or_else(|| {
                BundleError::UnknownUser {
                    name: name.into(),
                    user: u.into(),
                    file: "/etc/passwd",
                }
            })?,
        };
    let gid: u32 = match g {
        Some(g) => match g.parse() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| BundleError::UnknownUser {
                    name: name.into(),
                    user: g.into(),
                    file: "/etc/group",
                })?,
        },
        None => pw.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let uname = pw.as_ref().map(|f| f[0]).unwrap_or(u);
    let mut extra: Vec<u32> = if g.is_some() {
        vec![]
    } else {
        group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == uname))
            .filter_map(|f| f[2].parse().ok())
            .filter(|&x| x != gid)
            .collect()
    };
    extra.sort_unstable();
    extra.dedup();
    Ok((uid, gid, extra))
}

/// The capability set after `cap_add` / `cap_drop` (Docker's rules: `ALL` in add grants all,
/// `ALL` in drop starts from none).
pub fn capabilities(eff: &Effective) -> Vec<String> {
    let s = &eff.spec;
    let all = crate::spec::CAPABILITIES.iter().map(|c| format!("CAP_{c}"));
    let mut caps: Vec<String> = if s.cap_drop.iter().any(|c| c.0 == "ALL") {
        vec![]
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    if s.cap_add.iter().any(|c| c.0 == "ALL") {
        caps = all.collect();
    } else {
        caps.extend(s.cap_add.iter().map(|c| c.0.clone()));
    }
    caps.retain(|c| {
        !s.cap_drop
            .iter()
            .any(|d| &d.0 == c && !s.cap_add.iter().any(|a| &a.0 == c))
    });
    caps.sort();
    caps.dedup();
    caps
}

fn cgroup2_unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The OCI runtime config for a container.
pub fn oci_config(
    eff: &Effective,
    rootfs: &OverlayRootfs,
    bundle: &Path,
    paths: &Paths,
) -> Result<oci_spec::runtime::Spec, BundleError> {
    let s = &eff.spec;
    let name = &eff.name;
    let (uid, gid, extra_gids) = resolve_user(name, &eff.user, &rootfs.lower)?;
    let caps = capabilities(eff);
    // Without `ulimits`, the container inherits the unit's limits (systemd's defaults), as Docker's
    // containers inherit dockerd's.
    let mut rlimits: Vec<Value> = Vec::new();
    for (k, u) in &s.ulimits {
        let t = ULIMITS
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, t)| *t)
            .unwrap_or("RLIMIT_NOFILE");
        rlimits.retain(|r| r["type"] != t);
        rlimits.push(json!({"type": t, "soft": u.soft, "hard": u.hard}));
    }
    let no_new_privs = s.security_opt.iter().rev().find_map(|o| match o {
        SecurityOpt::NoNewPrivileges(b) => Some(*b),
        _ => None,
    });

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    if cgroup2_unified() {
        mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    }
    let etc_opts = |ro: bool| {
        let mut o = vec!["rbind", "rprivate", "nosuid", "nodev", "noexec"];
        if ro {
            o.push("ro");
        }
        o
    };
    for f in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind",
            "source": bundle.join(f), "options": etc_opts(s.read_only)}));
    }
    for v in &s.volumes {
        let source = match &v.source {
            VolumeSource::Bind(p) => PathBuf::from(p),
            VolumeSource::Named(n) => paths.volumes.join(n).join("_data"),
        };
        let mut opts = vec!["rbind", "rprivate"];
        if v.read_only {
            opts.push("ro");
        }
        mounts.push(
            json!({"destination": v.target, "type": "bind", "source": source, "options": opts}),
        );
    }
    for t in &s.tmpfs.0 {
        let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into()];
        if !t.options.iter().any(|o| o.starts_with("size=")) {
            opts.push("size=65536k".into());
        }
        opts.extend(t.options.iter().cloned());
        mounts.push(
            json!({"destination": t.target, "type": "tmpfs", "source": "tmpfs", "options": opts}),
        );
    }

    // `readiness: notify`: the application's sd_notify goes to the shim's proxy socket, which
    // passes READY=1 and STATUS= on to systemd (see berth_proto::Readiness::Notify).
    let mut env = eff.env.clone();
    if eff.readiness == Readiness::Notify {
        mounts.push(json!({"destination": NOTIFY_SOCKET_PATH, "type": "bind",
            "source": bundle.join(NOTIFY_SOCKET_FILE), "options": ["bind", "nosuid", "nodev", "noexec"]}));
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={NOTIFY_SOCKET_PATH}"));
    }

    // `init: true`: Docker's answer, a tiny init as the container's PID 1 that reaps the
    // orphans reparented to it inside the PID namespace (the shim cannot: it is outside) and
    // forwards signals. Debian's static tini, bind-mounted read-only where Docker puts it.
    let mut args = eff.args.clone();
    if s.init {
        std::fs::metadata(INIT_BINARY).map_err(|source| BundleError::Init {
            name: eff.name.clone(),
            path: INIT_BINARY,
            source,
        })?;
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": INIT_BINARY,
            "options": ["bind", "ro", "nosuid", "nodev"]}),
        );
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if s.network_mode != NetworkMode::Host {
        namespaces.push(json!({"type": "network"}));
    }
    if cgroup2_unified() {
        namespaces.push(json!({"type": "cgroup"}));
    }

    // The device cgroup: deny all, then what every container needs, then the spec's devices.
    let mut dev_rules = vec![json!({"allow": false, "access": "rwm"})];
    for (t, maj, min, acc) in [
        ("c", 1, Some(3), "rwm"),
        ("c", 1, Some(5), "rwm"),
        ("c", 1, Some(7), "rwm"),
        ("c", 1, Some(8), "rwm"),
        ("c", 1, Some(9), "rwm"),
        ("c", 5, Some(0), "rwm"),
        ("c", 5, Some(1), "rwm"),
        ("c", 5, Some(2), "rwm"),
        ("c", 136, None, "rwm"),
        ("c", 10, Some(200), "rwm"),
    ] {
        let mut r = json!({"allow": true, "type": t, "major": maj, "access": acc});
        if let Some(m) = min {
            r["minor"] = json!(m);
        }
        dev_rules.push(r);
    }
    let mut devices = Vec::new();
    // The nodes as the pass read (and hashed) them, not as they are now.
    for d in &s.devices {
        let n = eff
            .devices
            .iter()
            .find(|n| n.path == d.host)
            .ok_or_else(|| BundleError::Device {
                name: name.clone(),
                path: d.host.clone(),
                source: std::io::Error::other("not read with the effective spec"),
            })?;
        devices.push(json!({"path": d.container, "type": n.kind, "major": n.major, "minor": n.minor, "fileMode": n.mode, "uid": 0, "gid": 0}));
        dev_rules.push(
            json!({"allow": true, "type": n.kind, "major": n.major, "minor": n.minor, "access": d.permissions}),
        );
    }

    // A profile file is not read here: the effective spec carries it as read (and hashed) by the
    // pass, so the container gets exactly the profile its hash stands for.
    let seccomp: Option<Value> = match s.seccomp() {
        None => Some(seccomp::default_profile(&caps)),
        Some(None) => None,
        Some(Some(path)) => {
            Some(
                eff.seccomp_profile
                    .clone()
                    .ok_or_else(|| BundleError::Seccomp {
                        name: name.clone(),
                        path: path.to_owned(),
                        message: "not loaded with the effective spec".into(),
                    })?,
            )
        }
    };

    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "devices": devices,
        "resources": {"devices": dev_rules},
        "sysctl": s.sysctls.0,
    });
    if let Some(sc) = seccomp {
        linux["seccomp"] = sc;
    }
    let mut process = json!({
        "terminal": s.tty,
        "user": {"uid": uid, "gid": gid, "additionalGids": extra_gids},
        "args": args,
        "env": env,
        "cwd": eff.working_dir,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
        "noNewPrivileges": no_new_privs.unwrap_or(false),
    });
    if extra_gids.is_empty() {
        process["user"]
            .as_object_mut()
            .map(|u| u.remove("additionalGids"));
    }
    let config = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": s.read_only},
        "hostname": eff.hostname,
        "mounts": mounts,
        "annotations": {
            "org.opencontainers.image.ref.name": eff.image_ref,
            "berth.container.name": eff.name,
            "berth.spec.hash": eff.hash,
        },
        "linux": linux,
    });
    let _ = rootfs;
    serde_json::from_value(config).map_err(|source| BundleError::Oci {
        name: name.clone(),
        source,
    })
}

/// The shim's half of the bundle.
pub fn shim_config(eff: &Effective, rootfs: &OverlayRootfs) -> ShimConfig {
    ShimConfig {
        name: eff.name.clone(),
        image: eff.image_ref.clone(),
        image_digest: eff.image_digest.clone(),
        rootfs: Some(rootfs.clone()),
        readiness: match eff.readiness {
            Readiness::Started => berth_proto::Readiness::Started,
            Readiness::Healthy => berth_proto::Readiness::Healthy,
            Readiness::Notify => berth_proto::Readiness::Notify,
        },
        healthcheck: eff.healthcheck.clone(),
        tty: eff.spec.tty,
        stdin_open: eff.spec.stdin_open,
        spec_hash: eff.hash.clone(),
        stop_signal: Some(eff.stop_signal.number()),
        stop_timeout_ms: Some(eff.stop_timeout.as_millis().try_into().unwrap_or(u64::MAX)),
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    crate::fsutil::write_atomic(path, data).map_err(|source| BundleError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a complete bundle into `dir` (created if missing): config.json, shim.json, the /etc files,
/// an empty `rootfs/` mount point, and the named volumes' directories.
pub fn write(
    dir: &Path,
    eff: &Effective,
    rootfs: &OverlayRootfs,
    paths: &Paths,
) -> Result<(), BundleError> {
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| BundleError::Write {
            path: p.to_owned(),
            source,
        })
    };
    mkdir(dir)?;
    mkdir(&dir.join("rootfs"))?;
    mkdir(&rootfs.upper)?;
    mkdir(&rootfs.work)?;
    for v in &eff.spec.volumes {
        if let VolumeSource::Named(n) = &v.source {
            mkdir(&paths.volumes.join(n).join("_data"))?;
        }
    }
    let config = oci_config(eff, rootfs, dir, paths)?;
    let json = serde_json::to_vec_pretty(&config).map_err(|source| BundleError::Oci {
        name: eff.name.clone(),
        source,
    })?;
    write_atomic(&dir.join("config.json"), &json)?;
    let shim = serde_json::to_vec_pretty(&shim_config(eff, rootfs)).map_err(|source| {
        BundleError::Oci {
            name: eff.name.clone(),
            source,
        }
    })?;
    write_atomic(&dir.join(SHIM_CONFIG_FILE), &shim)?;
    let h = &eff.hostname;
    let (hosts, resolv) = if eff.spec.network_mode == NetworkMode::Host {
        (
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| {
                format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{h}\n")
            }),
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    } else {
        (
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{h}\n"
            ),
            String::new(),
        )
    };
    write_atomic(&dir.join("hosts"), hosts.as_bytes())?;
    write_atomic(&dir.join("hostname"), format!("{h}\n").as_bytes())?;
    write_atomic(&dir.join("resolv.conf"), resolv.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::effective::{ImageConfig, resolve};

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
        };
        let v = serde_json::to_value(
            oci_config(&e, &rootfs(d.path()), Path::new("/b"), &paths).unwrap(),
        )
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
        e.devices[0].minor = 99;
        let v = serde_json::to_value(
            oci_config(&e, &rootfs(d.path()), Path::new("/b"), &paths).unwrap(),
        )
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
            },
        )
        .unwrap();
        let shim: ShimConfig =
            serde_json::from_slice(&std::fs::read(b.join("shim.json")).unwrap()).unwrap();
        assert_eq!(shim.spec_hash, e.hash);
        assert_eq!(shim.healthcheck.unwrap().interval_ms, 2000);
        let _: oci_spec::runtime::Spec =
            oci_spec::runtime::Spec::load(b.join("config.json")).unwrap();
        assert_eq!(
            std::fs::read_to_string(b.join("hostname")).unwrap(),
            "web\n"
        );
        assert!(b.join("rootfs").is_dir());
    }
}

//! The OCI runtime config (`config.json`) of a container, built from its effective spec with
//! oci-spec's typed builders (Docker's secure defaults), so that a misspelt field fails to compile
//! instead of being dropped. Runs in berthd, before the unit starts.

use super::{BundleError, INIT_BINARY, INIT_PATH, NOTIFY_SOCKET_PATH, Paths, user};
use crate::spec::NetworkMode;
use crate::spec::Readiness;
use crate::spec::effective::{Effective, MountKind};
use berth_proto::{NOTIFY_SOCKET_FILE, OverlayRootfs};
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;

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

/// Device nodes every container may use (cgroup rules): null, zero, full, random, urandom, tty,
/// console, ptmx, the pty slaves (136:*) and tun.
const DEFAULT_DEVICE_RULES: &[(i64, Option<i64>)] = &[
    (1, Some(3)),
    (1, Some(5)),
    (1, Some(7)),
    (1, Some(8)),
    (1, Some(9)),
    (5, Some(0)),
    (5, Some(1)),
    (5, Some(2)),
    (136, None),
    (10, Some(200)),
];

fn cgroup2_unified() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(
    dest: &str,
    typ: &str,
    source: impl AsRef<Path>,
    opts: &[&str],
) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source.as_ref())
        .options(strings(opts))
        .build()
}

/// The OCI runtime config for a container.
pub fn oci_config(
    eff: &Effective,
    rootfs: &OverlayRootfs,
    bundle: &Path,
    paths: &Paths,
) -> Result<Spec, BundleError> {
    let name = &eff.name;
    let (uid, gid, extra_gids) = user::resolve_user(name, &eff.user, &rootfs.lower)?;
    let oci = |source: OciSpecError| BundleError::Oci {
        name: name.clone(),
        source,
    };

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    if cgroup2_unified() {
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ));
    }
    let mut etc_opts = vec!["rbind", "rprivate", "nosuid", "nodev", "noexec"];
    if eff.read_only {
        etc_opts.push("ro");
    }
    // On another container's namespace, its /etc files (Docker's rule): its address is there.
    let etc_dir = match eff.network_mode.container() {
        Some(t) => bundle.parent().unwrap_or(bundle).join(t),
        None => bundle.to_owned(),
    };
    for f in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(mount(
            &format!("/etc/{f}"),
            "bind",
            etc_dir.join(f),
            &etc_opts,
        ));
    }
    for m in &eff.mounts {
        mounts.push(match &m.kind {
            MountKind::Bind { source, read_only }
            | MountKind::Volume {
                name: source,
                read_only,
            } => {
                let source = match &m.kind {
                    MountKind::Volume { .. } => paths.volume(source),
                    _ => source.into(),
                };
                let mut opts = vec!["rbind", "rprivate"];
                if *read_only {
                    opts.push("ro");
                }
                mount(&m.target, "bind", source, &opts)
            }
            MountKind::Tmpfs { options } => {
                let mut opts = vec!["nosuid", "nodev"];
                if !options.iter().any(|o| o.starts_with("size=")) {
                    opts.push("size=65536k");
                }
                opts.extend(options.iter().map(String::as_str));
                mount(&m.target, "tmpfs", "tmpfs", &opts)
            }
        });
    }

    // `readiness: notify`: the application's sd_notify goes to the shim's proxy socket, which
    // passes READY=1 and STATUS= on to systemd (see berth_proto::Readiness::Notify).
    let mut env = eff.env.clone();
    if eff.readiness == Readiness::Notify {
        mounts.push(mount(
            NOTIFY_SOCKET_PATH,
            "bind",
            bundle.join(NOTIFY_SOCKET_FILE),
            &["bind", "nosuid", "nodev", "noexec"],
        ));
        env.retain(|e| !e.starts_with("NOTIFY_SOCKET="));
        env.push(format!("NOTIFY_SOCKET={NOTIFY_SOCKET_PATH}"));
    }

    // `init: true`: Docker's answer, a tiny init as the container's PID 1 that reaps the
    // orphans reparented to it inside the PID namespace (the shim cannot: it is outside) and
    // forwards signals. Debian's static tini, bind-mounted read-only where Docker puts it.
    let mut args = eff.args.clone();
    if eff.init {
        std::fs::metadata(INIT_BINARY).map_err(|source| BundleError::Init {
            name: eff.name.clone(),
            path: INIT_BINARY,
            source,
        })?;
        mounts.push(mount(
            INIT_PATH,
            "bind",
            INIT_BINARY,
            &["bind", "ro", "nosuid", "nodev"],
        ));
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }
    let mounts = mounts
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(oci)?;

    let mut ns = vec![
        (LinuxNamespaceType::Pid, None),
        (LinuxNamespaceType::Ipc, None),
        (LinuxNamespaceType::Uts, None),
        (LinuxNamespaceType::Mount, None),
    ];
    if eff.network_mode != NetworkMode::Host {
        // On the bridge, the namespace the shim made and netavark set up; another container's
        // (its shim's bind mount); else a new one.
        let path = match eff.network_mode.container() {
            Some(t) => paths.network.as_ref().map(|n| n.netns_dir.join(t)),
            None => paths.netns(eff),
        };
        ns.push((LinuxNamespaceType::Network, path));
    }
    if cgroup2_unified() {
        ns.push((LinuxNamespaceType::Cgroup, None));
    }
    let namespaces = ns
        .into_iter()
        .map(|(t, path)| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            if let Some(p) = path {
                b = b.path(p);
            }
            b.build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(oci)?;

    // The device cgroup: deny all, then what every container needs, then the spec's devices.
    let mut dev_rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(oci)?,
    ];
    for (major, minor) in DEFAULT_DEVICE_RULES {
        let mut r = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(*major)
            .access("rwm");
        if let Some(m) = minor {
            r = r.minor(*m);
        }
        dev_rules.push(r.build().map_err(oci)?);
    }
    // The nodes as the pass read (and hashed) them, not as they are now.
    let mut devices = Vec::new();
    for d in &eff.devices {
        let typ = match d.node.kind.as_str() {
            "b" => LinuxDeviceType::B,
            _ => LinuxDeviceType::C,
        };
        devices.push(
            LinuxDeviceBuilder::default()
                .path(&d.container)
                .typ(typ)
                .major(i64::from(d.node.major))
                .minor(i64::from(d.node.minor))
                .file_mode(d.node.mode)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(oci)?,
        );
        dev_rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(typ)
                .major(i64::from(d.node.major))
                .minor(i64::from(d.node.minor))
                .access(&d.permissions)
                .build()
                .map_err(oci)?,
        );
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(strings(MASKED_PATHS))
        .readonly_paths(strings(READONLY_PATHS))
        .devices(devices)
        .resources(
            LinuxResourcesBuilder::default()
                .devices(dev_rules)
                .build()
                .map_err(oci)?,
        )
        .sysctl(
            eff.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
        )
        .build()
        .map_err(oci)?;
    linux.set_seccomp(eff.seccomp.clone());

    let caps = eff
        .capabilities
        .iter()
        .map(|c| serde_json::from_value::<Capability>(serde_json::Value::String(c.clone())))
        .collect::<Result<HashSet<_>, _>>()
        .map_err(|e| oci(OciSpecError::Other(format!("capability: {e}"))))?;
    let mut capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .map_err(oci)?;
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);

    let mut user = UserBuilder::default().uid(uid).gid(gid);
    if !extra_gids.is_empty() {
        user = user.additional_gids(extra_gids);
    }
    let rlimits = eff
        .rlimits
        .iter()
        .map(|r| {
            PosixRlimitBuilder::default()
                .typ(r.kind)
                .soft(r.soft)
                .hard(r.hard)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(oci)?;
    let process = ProcessBuilder::default()
        .terminal(eff.tty)
        .user(user.build().map_err(oci)?)
        .args(args)
        .env(env)
        .cwd(&eff.working_dir)
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(eff.no_new_privileges)
        .build()
        .map_err(oci)?;

    SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(eff.read_only)
                .build()
                .map_err(oci)?,
        )
        .hostname(&eff.hostname)
        .mounts(mounts)
        .annotations(HashMap::from([
            (
                "org.opencontainers.image.ref.name".to_owned(),
                eff.image_ref.clone(),
            ),
            ("berth.container.name".to_owned(), eff.name.clone()),
            ("berth.spec.hash".to_owned(), eff.hash.clone()),
        ]))
        .linux(linux)
        .build()
        .map_err(oci)
}

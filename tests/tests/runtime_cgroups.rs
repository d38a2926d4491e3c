//! The runtime's cgroup handling against Debian's runc 1.1 on the same configs (device rules,
//! settings the host cannot apply, frozen and nested cgroups); run in the test process, as root.

use std::process::Output;

use berth_tests::bundle::{Bundle, Runtime, cgroup_dirs, unique};
use serde_json::{Value, json};

/// One runtime's container for a comparison: the runtime, its bundle (made from `runc spec`),
/// the container id and its cgroups path.
struct Case {
    label: &'static str,
    rt: Runtime,
    b: Bundle,
    id: String,
    cg: String,
}

/// A case per runtime (berth first, then runc) running `script`, with `edit` applied to the
/// config.
fn cases(name: &str, script: &str, edit: impl Fn(&mut Value)) -> Vec<Case> {
    [("berth", Runtime::berth()), ("runc", Runtime::runc())]
        .into_iter()
        .map(|(label, rt)| {
            let id = unique(&format!("{name}-{label}"));
            let cg = format!("/{id}");
            let mut b = Bundle::busybox(std::path::Path::new("runc"), &["sh", "-c", script], &cg);
            edit(&mut b.config);
            b.save();
            rt.track(&id, &cg);
            Case {
                label,
                rt,
                b,
                id,
                cg,
            }
        })
        .collect()
}

impl Case {
    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec!["run", "--bundle", self.b.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(&self.id);
        self.rt.run(&args)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The message of a runtime's error line (`time=… level=error msg="…"`), without the command
/// prefix each runtime puts first ("runc run failed: ", "berth-runtime run failed: ").
fn error_msg(stderr: &[u8]) -> String {
    let s = text(stderr);
    let line = s
        .lines()
        .find(|l| l.contains("level=error"))
        .unwrap_or_else(|| panic!("no error line in {s:?}"));
    let msg = line.split_once("msg=\"").map_or(line, |x| x.1);
    let msg = msg.strip_suffix('"').unwrap_or(msg);
    msg.split_once(" run failed: ")
        .map_or(msg, |x| x.1)
        .to_string()
}

/// Opens for writing (reading /dev/kmsg needs CAP_SYSLOG, whatever the cgroup says) every device
/// the container lists, the runtime's default ones and two nodes it creates itself, and reports
/// which opens the device cgroup allowed.
const OPEN_DEVICES: &str = "for d in kmsg null zero full random urandom; do \
    if (exec 3>>/dev/$d) 2>/dev/null; then echo $d=open; else echo $d=denied; fi; done; \
    mknod /tmp/tun c 10 200 && { (exec 3>>/tmp/tun) 2>/dev/null && echo tun=open || echo tun=denied; }; \
    mknod /tmp/mem c 1 1 && { (exec 3>>/tmp/mem) 2>/dev/null && echo mem=open || echo mem=denied; }; true";

/// A device the spec lists (`linux.devices`) is created in the container but usable only if
/// `resources.devices` allows it: with runc's deny-all rules, /dev/kmsg stays closed. Without
/// any `resources` at all, runc still starts from deny-all plus its default devices.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_device_cgroup_applies_only_the_spec_rules_like_runc() {
    for variant in ["deny-all", "no-resources", "deny-null"] {
        let mut seen = Vec::new();
        for c in cases(&format!("dev-{variant}"), OPEN_DEVICES, |cfg| {
            let caps = &mut cfg["process"]["capabilities"];
            for set in ["bounding", "effective", "permitted"] {
                caps[set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
            }
            cfg["linux"]["devices"] = json!([{"path": "/dev/kmsg", "type": "c", "major": 1,
                "minor": 11, "fileMode": 0o644, "uid": 0, "gid": 0}]);
            match variant {
                "no-resources" => {
                    cfg["linux"].as_object_mut().unwrap().remove("resources");
                }
                // runc puts its default devices after the spec's rules: this deny is undone.
                "deny-null" => {
                    cfg["linux"]["resources"]["devices"] = json!([{"allow": false, "type": "c",
                        "major": 1, "minor": 3, "access": "rwm"}]);
                }
                _ => {}
            }
        }) {
            let out = c.run(&[]);
            assert!(
                out.status.success(),
                "{} {variant}: {}",
                c.label,
                text(&out.stderr)
            );
            seen.push(text(&out.stdout));
        }
        assert!(
            seen[1].contains("kmsg=denied"),
            "runc {variant}: {}",
            seen[1]
        );
        assert_eq!(seen[0], seen[1], "berth and runc differ ({variant})");
    }
}

/// Settings this host cannot apply fail the container, as in runc: `unified` keys on a v1
/// (hybrid) host, limits of controllers no hierarchy has (hugetlb, net_cls, net_prio are not
/// mounted here). A blkio weight goes to `blkio.bfq.weight` where `blkio.weight` is missing.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_cgroup_settings_the_host_cannot_apply_fail_like_runc() {
    for (res, runc_says) in [
        (
            json!({"unified": {"memory.high": "90000000"}}),
            "cannot use unified on cgroup v1",
        ),
        (
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 1048576}]}),
            "cannot set hugetlb limit",
        ),
        (
            json!({"network": {"classID": 1048577}}),
            "cannot set net_cls limit",
        ),
    ] {
        for c in cases("unapplicable", "echo ran", |cfg| {
            cfg["linux"]["resources"]
                .as_object_mut()
                .unwrap()
                .extend(res.as_object().unwrap().clone());
        }) {
            let out = c.run(&[]);
            assert!(!out.status.success(), "{} ran with {res}", c.label);
            let msg = error_msg(&out.stderr);
            assert!(msg.contains(runc_says), "{}: {msg}", c.label);
            if c.label == "berth" {
                assert!(c.rt.root_is_empty(), "state left after {res}");
                assert_eq!(cgroup_dirs(&c.cg), Vec::<std::path::PathBuf>::new());
            }
        }
    }
    let weights = "cat /sys/fs/cgroup/blkio/blkio.bfq.weight";
    let mut seen = Vec::new();
    for c in cases("bfq", weights, |cfg| {
        cfg["linux"]["resources"]["blockIO"] = json!({"weight": 321});
    }) {
        let out = c.run(&[]);
        assert!(out.status.success(), "{}: {}", c.label, text(&out.stderr));
        seen.push(text(&out.stdout));
    }
    assert!(seen[1].contains("321"), "runc: {}", seen[1]);
    assert_eq!(seen[0], seen[1]);
}

/// The cgroup mount writable and a cgroup namespace, so that the container can make its own
/// sub-cgroups.
fn writable_cgroups(cfg: &mut Value) {
    for m in cfg["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
            m["options"].as_array_mut().unwrap().retain(|o| o != "ro");
        }
    }
    cfg["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
}

/// Moves the shell into sub-cgroups it makes (two levels) in several hierarchies, then makes
/// `sub/ready` (see [`wait_nested`]) and waits.
const NEST: &str = "for c in memory pids freezer; do mkdir -p /sys/fs/cgroup/$c/sub/deeper && \
    echo $$ > /sys/fs/cgroup/$c/sub/deeper/cgroup.procs || exit 1; done; \
    mkdir /sys/fs/cgroup/memory/sub/ready; exec sleep 1000";

/// Waits until the container of `c` running [`NEST`] made all its sub-cgroups.
fn wait_nested(c: &Case) {
    let path = std::path::Path::new("/sys/fs/cgroup/memory")
        .join(c.cg.trim_start_matches('/'))
        .join("sub/ready");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `delete -f` of a container whose process made sub-cgroups and moved into them kills the
/// whole subtree and removes it, deepest first, as runc does.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_delete_force_removes_sub_cgroups_like_runc() {
    for c in cases("nested", NEST, writable_cgroups) {
        c.rt.ok_detached(&["run", "-d", "--bundle", c.b.path().to_str().unwrap(), &c.id]);
        wait_nested(&c);
        let sub = std::path::Path::new("/sys/fs/cgroup/memory")
            .join(c.cg.trim_start_matches('/'))
            .join("sub/deeper");
        assert!(sub.is_dir(), "{}: no sub-cgroup {}", c.label, sub.display());
        let ps = c.rt.ok(&["ps", "--format", "json", &c.id]);
        let pids: Vec<i32> = serde_json::from_str(&ps).unwrap();
        assert_eq!(
            pids.len(),
            1,
            "{}: ps sees the nested process: {ps}",
            c.label
        );
        let out = c.rt.run(&["delete", "-f", &c.id]);
        assert!(
            out.status.success(),
            "{} delete -f: {}",
            c.label,
            text(&out.stderr)
        );
        assert!(c.rt.root_is_empty(), "{}: state left", c.label);
        assert_eq!(
            cgroup_dirs(&c.cg),
            Vec::<std::path::PathBuf>::new(),
            "{}: cgroups left",
            c.label
        );
    }
}

/// A freezer cgroup of the test's own, thawed and removed on drop (a failed assertion must not
/// leave a frozen process behind).
struct Ice(std::path::PathBuf);

impl Drop for Ice {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::fs::remove_dir(&self.0).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// A process delete cannot get rid of (a host process in a sub-cgroup of the container, frozen
/// by a freezer cgroup of its own) keeps the container's state: delete fails, naming the busy
/// cgroup, and succeeds once the process is gone.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_delete_keeps_state_while_a_cgroup_remains() {
    let c = cases("keep", NEST, writable_cgroups).remove(0);
    c.rt.ok_detached(&["run", "-d", "--bundle", c.b.path().to_str().unwrap(), &c.id]);
    wait_nested(&c);
    let ice = Ice(std::path::Path::new("/sys/fs/cgroup/freezer").join(format!("{}-ice", c.id)));
    let ice = &ice.0;
    std::fs::create_dir(ice).unwrap();
    let mut host = std::process::Command::new("sleep")
        .arg("1000")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = host.id().to_string();
    std::fs::write(ice.join("cgroup.procs"), &pid).unwrap();
    std::fs::write(ice.join("freezer.state"), "FROZEN").unwrap();
    let sub = std::path::Path::new("/sys/fs/cgroup/pids")
        .join(c.cg.trim_start_matches('/'))
        .join("sub");
    std::fs::write(sub.join("cgroup.procs"), &pid).unwrap();

    let out = c.rt.run(&["delete", "-f", &c.id]);
    assert!(
        !out.status.success(),
        "delete -f succeeded with a frozen process in the cgroup"
    );
    let msg = error_msg(&out.stderr);
    assert!(msg.contains("/sub"), "names the busy cgroup: {msg}");
    assert_eq!(c.rt.state(&c.id)["status"], "stopped", "state kept");

    std::fs::write(ice.join("freezer.state"), "THAWED").unwrap();
    let _ = host.wait();
    c.rt.ok(&["delete", &c.id]);
    assert!(c.rt.root_is_empty());
    assert_eq!(cgroup_dirs(&c.cg), Vec::<std::path::PathBuf>::new());
}

/// A container cgroup that exists already and is frozen (freezer.state FROZEN) is refused with
/// runc's error: the init, which joins it itself, would stay frozen and `run -d` hang.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_run_refuses_a_frozen_cgroup_like_runc() {
    for c in cases("frozen", "echo ran", |_| {}) {
        let freezer =
            std::path::Path::new("/sys/fs/cgroup/freezer").join(c.cg.trim_start_matches('/'));
        std::fs::create_dir(&freezer).unwrap();
        std::fs::write(freezer.join("freezer.state"), "FROZEN").unwrap();
        let mut child =
            c.rt.cmd(&["run", "-d", "--bundle", c.b.path().to_str().unwrap(), &c.id])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let _ = std::fs::write(freezer.join("freezer.state"), "THAWED");
        let status =
            status.unwrap_or_else(|| panic!("{}: run -d hangs on a frozen cgroup", c.label));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{} ran in a frozen cgroup", c.label);
        let msg = error_msg(err.as_bytes());
        assert!(
            msg.contains("container's cgroup unexpectedly frozen"),
            "{}: {msg}",
            c.label
        );
        assert!(c.rt.root_is_empty(), "{}: state left", c.label);
    }
}

/// Runs `script` in a private mount namespace whose /sys/fs/cgroup is the cgroup2 hierarchy
/// (this host's, also at /sys/fs/cgroup/unified): the pure v2 paths of the runtime.
fn on_pure_v2(script: &str) -> Output {
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && {script}"
        ))
        .output()
        .unwrap()
}

/// The pure cgroup v2 side of the frozen-cgroup refusal (`cgroup.freeze` 1) and of `delete -f`
/// with sub-cgroups the container made (production hosts are pure v2).
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_pure_v2_frozen_cgroup_and_sub_cgroups() {
    let script = "mkdir -p /sys/fs/cgroup/sub/deeper && echo $$ > /sys/fs/cgroup/sub/deeper/cgroup.procs \
        && mkdir /sys/fs/cgroup/sub/ready; exec sleep 1000";
    let c = cases("v2", script, writable_cgroups).remove(0);
    let host = std::path::Path::new("/sys/fs/cgroup/unified").join(c.cg.trim_start_matches('/'));
    let berth = |args: &str| {
        format!(
            "{} --root {} {args}",
            c.rt.bin.display(),
            c.rt.root().display()
        )
    };
    let run = berth(&format!(
        "run -d --bundle {} {} >/dev/null",
        c.b.path().display(),
        c.id
    ));

    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("cgroup.freeze"), "1").unwrap();
    let out = on_pure_v2(&format!("timeout 30 {run}"));
    let _ = std::fs::write(host.join("cgroup.freeze"), "0");
    assert_ne!(
        out.status.code(),
        Some(124),
        "run -d hangs on a frozen v2 cgroup"
    );
    assert!(!out.status.success(), "ran in a frozen cgroup");
    let msg = error_msg(&out.stderr);
    assert!(
        msg.contains("container's cgroup unexpectedly frozen"),
        "{msg}"
    );
    assert!(c.rt.root_is_empty(), "state left");

    let ready = format!("/sys/fs/cgroup{}/sub/ready", c.cg);
    let out = on_pure_v2(&format!(
        "{run} && for i in $(seq 200); do [ -d {ready} ] && break; sleep 0.05; done; \
         [ -d {ready} ] || {{ echo no sub-cgroup; exit 3; }}; {}",
        berth(&format!("delete -f {}", c.id))
    ));
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(c.rt.root_is_empty(), "state left");
    assert!(!host.exists(), "cgroup left: {}", host.display());
}

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

//! berth-runtime's lifecycle and error handling through its runc-compatible command line, with
//! the same scenarios run against Debian's runc to confirm the expected behaviour.

use berth_tests::bundle::{Bundle, Runtime, assert_nothing_left, cgroup_dirs, unique};
use serde_json::json;

const ROOT: &str = "needs root: namespaces, mounts, cgroups";

fn status(rt: &Runtime, id: &str) -> String {
    rt.state(id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// create → created, start → running, exec, kill → stopped, delete → nothing left.
fn lifecycle(rt: &Runtime, name: &str) {
    let id = unique(name);
    let cg = format!("/{id}");
    let marker = format!("sleep 7{}", std::process::id() % 1000);
    let b = Bundle::busybox(
        &berth_tests::bundle::workspace_bin("berth-runtime"),
        &["sh", "-c", &format!("exec {marker}")],
        &cg,
    );
    rt.track(&id, &cg);
    let pidfile = b.path().join("pid");
    rt.ok_detached(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    assert!(!cgroup_dirs(&cg).is_empty(), "cgroup created");
    rt.ok(&["start", &id]);
    assert_eq!(status(rt, &id), "running");
    let out = rt.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo exec-ok; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert!(out.contains("exec-ok") && out.contains(&marker), "{out}");
    let list = rt.ok(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str() && c["status"] == "running")
    );
    let out = rt.run(&["delete", &id]);
    assert!(
        !out.status.success(),
        "delete of a running container must fail"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.ok(&["kill", &id, "KILL"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while status(rt, &id) != "stopped" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(status(rt, &id), "stopped");
    rt.ok(&["delete", &id]);
    let out = rt.run(&["state", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("container does not exist"));
    assert_nothing_left(rt, &b, &cg, Some(&marker));
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_lifecycle_create_start_exec_kill_delete() {
    lifecycle(&Runtime::berth(), "lifecycle");
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_lifecycle_same_with_runc() {
    lifecycle(&Runtime::runc(), "lifecycle-runc");
}

fn exit_codes(rt: &Runtime, name: &str) {
    let id = unique(name);
    let cg = format!("/{id}");
    let b = Bundle::busybox(
        &berth_tests::bundle::workspace_bin("berth-runtime"),
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        &cg,
    );
    rt.track(&id, &cg);
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_nothing_left(rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_run_exit_code_and_stdio() {
    exit_codes(&Runtime::berth(), "exitcode");
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_run_exit_code_and_stdio_runc() {
    exit_codes(&Runtime::runc(), "exitcode-runc");
}

/// A failing create: exit status 1, a runc-style error naming the cause, nothing left.
fn assert_create_fails(rt: &Runtime, b: &Bundle, id: &str, cg: &str, expect: &str) {
    let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("level=error"), "runc-style log line: {err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert_nothing_left(rt, b, cg, None);
}

fn bad_inputs(rt: &Runtime, name: &str, messages: [&str; 3]) {
    let id = unique(name);
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(
        &berth_tests::bundle::workspace_bin("berth-runtime"),
        &["true"],
        &cg,
    );
    rt.track(&id, &cg);
    std::fs::write(
        b.path().join("config.json"),
        "{ \"ociVersion\": \"1.0.2\", broken",
    )
    .unwrap();
    assert_create_fails(rt, &b, &id, &cg, messages[0]);
    b.config["root"]["path"] = json!("no-such-rootfs");
    b.save();
    assert_create_fails(rt, &b, &id, &cg, messages[1]);
    b.config["root"]["path"] = json!("rootfs");
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}]});
    b.save();
    assert_create_fails(rt, &b, &id, &cg, messages[2]);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_bad_input_leaves_nothing() {
    bad_inputs(
        &Runtime::berth(),
        "badinput",
        ["config.json", "invalid rootfs", "hook-said-no"],
    );
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_bad_input_leaves_nothing_runc() {
    bad_inputs(
        &Runtime::runc(),
        "badinput-runc",
        ["invalid character", "invalid rootfs", "exit status 3"],
    );
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_duplicate_id_is_refused_and_the_first_survives() {
    for rt in [Runtime::berth(), Runtime::runc()] {
        let id = unique("dup");
        let cg = format!("/{id}");
        let b = Bundle::busybox(
            &berth_tests::bundle::workspace_bin("berth-runtime"),
            &["sleep", "30"],
            &cg,
        );
        rt.track(&id, &cg);
        rt.ok_detached(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("container with given ID already exists"),
            "{}: {err}",
            rt.bin.display()
        );
        assert_eq!(rt.state(&id)["status"], "created");
        rt.ok(&["delete", "--force", &id]);
        assert_nothing_left(&rt, &b, &cg, None);
    }
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_mount_onto_symlink_escaping_rootfs_is_refused() {
    let rt = Runtime::berth();
    let id = unique("escape");
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(&rt.bin, &["true"], &cg);
    rt.track(&id, &cg);
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../..", b.rootfs().join("escape")).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": format!("/escape{}", outside.path().display()),
        "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
    }));
    b.save();
    assert_create_fails(&rt, &b, &id, &cg, "escapes the rootfs");
    assert!(
        berth_tests::bundle::mounts_under(outside.path()).is_empty(),
        "nothing mounted outside"
    );
    // An absolute symlink is the container's view: it resolves inside the rootfs, as in runc.
    std::fs::create_dir(b.rootfs().join("inside")).unwrap();
    std::os::unix::fs::symlink("/inside", b.rootfs().join("abs")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.pop();
    mounts.push(json!({"destination": "/abs/t", "type": "tmpfs", "source": "tmpfs"}));
    b.args(&["sh", "-c", "grep -c ' /inside/t ' /proc/self/mountinfo"]);
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_hooks_get_state_on_stdin_in_order() {
    let rt = Runtime::berth();
    let id = unique("hooks");
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(&rt.bin, &["sh", "-c", "sleep 30"], &cg);
    rt.track(&id, &cg);
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let hook = |name: &str, dir: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order")]});
    // startContainer runs in the container after pivot_root: it writes into a bind mount.
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/out", "type": "bind", "source": o, "options": ["rbind", "rw"]}),
    );
    b.config["hooks"] = json!({
        "prestart": [hook("prestart", &o)],
        "createRuntime": [hook("createRuntime", &o)],
        "createContainer": [hook("createContainer", &o)],
        "startContainer": [hook("startContainer", "/out")],
        "poststart": [hook("poststart", &o)],
        "poststop": [hook("poststop", &o)],
    });
    b.save();
    rt.ok_detached(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.ok(&["start", &id]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let done = || {
        let o = std::fs::read_to_string(out.path().join("order")).unwrap_or_default();
        o.contains("startContainer") && o.contains("poststart")
    };
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rt.ok(&["delete", "--force", &id]);
    let order = std::fs::read_to_string(out.path().join("order")).unwrap();
    let order: Vec<&str> = order.lines().collect();
    // startContainer and poststart race (one in the container, one in `start`).
    assert_eq!(
        &order[..3],
        ["prestart", "createRuntime", "createContainer"]
    );
    assert!(
        order.contains(&"startContainer") && order.contains(&"poststart"),
        "{order:?}"
    );
    assert_eq!(order.last(), Some(&"poststop"));
    for name in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let s: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.path().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(s["id"], id.as_str(), "{name}");
        assert_eq!(s["bundle"], b.path().to_str().unwrap(), "{name}");
        if name != "poststop" {
            assert_eq!(s["pid"], pid, "{name}");
        }
    }
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_errors_follow_runc_format_and_log_file() {
    let rt = Runtime::berth();
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = rt.run(&[
        "--log",
        log.path().to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "container does not exist"
    );
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(log.path()).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container does not exist");
    let out = rt.run(&["kill", "nope"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("time="),
        "text format without --log"
    );
    // The same as runc prints.
    let runc = Runtime::runc().run(&["state", "nope"]);
    assert_eq!(runc.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&runc.stderr).contains("container does not exist"));
    // spec refuses to overwrite, features is JSON.
    let d = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--bundle", d.path().to_str().unwrap()]);
    assert!(
        !rt.run(&["spec", "--bundle", d.path().to_str().unwrap()])
            .status
            .success()
    );
    let f: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["cgroup"]["v2"], true);
    let _ = ROOT;
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_failing_poststart_hook_stops_the_container() {
    let rt = Runtime::berth();
    let id = unique("poststart");
    let cg = format!("/{id}");
    let marker = format!("sleep 8{}", std::process::id() % 1000);
    let mut b = Bundle::busybox(&rt.bin, &["sh", "-c", &format!("exec {marker}")], &cg);
    rt.track(&id, &cg);
    b.config["hooks"] = json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo poststart-no >&2; exit 2"]}]});
    b.save();
    let out = rt
        .cmd(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id])
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("poststart-no"));
    assert_nothing_left(&rt, &b, &cg, Some(&marker));
}

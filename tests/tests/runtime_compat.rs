//! Bundles written for runc run unchanged under berth-runtime (run in the test process, as root).

use berth_tests::bundle::{Bundle, Runtime, unique};

/// `runc spec` lists ambient capabilities without an inheritable set, which the kernel cannot
/// honour; runc warns and runs the container. berth-runtime must do the same, with the same
/// resulting capability sets.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_runc_spec_with_ambient_caps_runs_like_runc() {
    let mut seen = Vec::new();
    for (label, rt) in [("berth", Runtime::berth()), ("runc", Runtime::runc())] {
        let id = unique(&format!("ambient-{label}"));
        let cg = format!("/{id}");
        let b = Bundle::busybox(
            std::path::Path::new("runc"),
            &[
                "sh",
                "-c",
                "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status",
            ],
            &cg,
        );
        assert!(
            b.config["process"]["capabilities"]["ambient"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && b.config["process"]["capabilities"]
                    .get("inheritable")
                    .is_none(),
            "runc spec no longer writes ambient caps without inheritable ones: {}",
            b.config["process"]["capabilities"]
        );
        rt.track(&id, &cg);
        let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(
            out.status.success(),
            "{label} run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert!(seen[0].contains("CapAmb:\t0000000000000000"), "{}", seen[0]);
    assert_eq!(
        seen[0], seen[1],
        "berth and runc give different capability sets"
    );
}

/// A network namespace the runtime creates has its loopback up (runc and crun bring `lo` up:
/// a `network_mode: none` container can talk to itself over 127.0.0.1, as under Docker).
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_new_network_namespace_has_loopback_up_like_runc() {
    let mut seen = Vec::new();
    for (label, rt) in [("berth", Runtime::berth()), ("runc", Runtime::runc())] {
        let id = unique(&format!("lo-{label}"));
        let cg = format!("/{id}");
        let b = Bundle::busybox(
            std::path::Path::new("runc"),
            &["sh", "-c", "cat /sys/class/net/lo/flags"],
            &cg,
        );
        rt.track(&id, &cg);
        let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(
            out.status.success(),
            "{label} run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // IFF_UP | IFF_LOOPBACK.
    assert_eq!(seen[1], "0x9\n", "runc's loopback flags");
    assert_eq!(
        seen[0], seen[1],
        "berth (left) and runc (right) loopback flags"
    );
}

/// Records `name`'s exit status in `row`; returns its output with the container id as "ID".
fn step(row: &mut Vec<String>, id: &str, name: &str, o: std::process::Output) -> String {
    row.push(format!("{name}: {:?}", o.status.code()));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .replace(id, "ID")
}

/// runc's `exec` command line as callers use it, against runc itself: exit status 255 for a
/// failed set-up (the process's own status otherwise), `--additional-gids`, a process file
/// without `user`, `--cgroup [CONTROLLER:]PATH`, the paused-container refusal and
/// `--ignore-paused`; and `run --keep`.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_exec_and_run_keep_command_line_like_runc() {
    let mut seen: Vec<Vec<String>> = Vec::new();
    for (label, rt) in [("berth", Runtime::berth()), ("runc", Runtime::runc())] {
        let id = unique(&format!("cli-{label}"));
        let cg = format!("/{id}");
        let b = Bundle::busybox(std::path::Path::new("runc"), &["sleep", "1000"], &cg);
        rt.track(&id, &cg);
        let bundle = b.path().to_str().unwrap();
        rt.ok_detached(&["run", "-d", "--bundle", bundle, &id]);
        let mut row = Vec::new();
        step(
            &mut row,
            &id,
            "no container",
            rt.run(&["exec", "nosuch", "true"]),
        );
        step(
            &mut row,
            &id,
            "bad command",
            rt.run(&["exec", &id, "/nonexistent"]),
        );
        step(
            &mut row,
            &id,
            "exit 7",
            rt.run(&["exec", &id, "sh", "-c", "exit 7"]),
        );
        let gids = step(
            &mut row,
            &id,
            "gids",
            rt.run(&["exec", "-g", "5", "-g", "7", &id, "id", "-G"]),
        );
        row.push(format!("gids: {}", gids.lines().next().unwrap_or_default()));
        let pf = b.path().join("process.json");
        std::fs::write(&pf, r#"{"args":["/bin/id","-u"],"cwd":"/"}"#).unwrap();
        let uid = step(
            &mut row,
            &id,
            "process file",
            rt.run(&["exec", "-p", pf.to_str().unwrap(), &id]),
        );
        row.push(format!("uid: {}", uid.lines().next().unwrap_or_default()));
        for d in berth_tests::bundle::cgroup_dirs(&cg) {
            if d.starts_with("/sys/fs/cgroup/memory") || d.starts_with("/sys/fs/cgroup/pids") {
                std::fs::create_dir(d.join("sub")).unwrap();
            }
        }
        let all = step(
            &mut row,
            &id,
            "cgroup",
            rt.run(&[
                "exec",
                "--cgroup",
                "memory:sub",
                &id,
                "cat",
                "/proc/self/cgroup",
            ]),
        );
        row.extend(
            all.lines()
                .filter(|l| l.contains(":memory:") || l.contains(":pids:"))
                .map(String::from),
        );
        rt.ok(&["pause", &id]);
        let paused = step(&mut row, &id, "paused", rt.run(&["exec", &id, "true"]));
        assert!(
            paused.contains("cannot exec in a paused container (use --ignore-paused to override)"),
            "{label}: {paused}"
        );
        let mut late = rt
            .cmd(&["exec", "--ignore-paused", "-d", &id, "true"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        rt.ok(&["resume", &id]);
        row.push(format!("ignore-paused: {:?}", late.wait().unwrap().code()));
        rt.ok(&["delete", "-f", &id]);

        let kept = unique(&format!("keep-{label}"));
        rt.track(&kept, &cg);
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.path().join("config.json")).unwrap()).unwrap();
        cfg["process"]["args"] = serde_json::json!(["sh", "-c", "exit 3"]);
        std::fs::write(b.path().join("config.json"), cfg.to_string()).unwrap();
        step(
            &mut row,
            &kept,
            "run --keep",
            rt.run(&["run", "--keep", "--bundle", bundle, &kept]),
        );
        row.push(format!("kept: {}", rt.state(&kept)["status"]));
        rt.ok(&["delete", &kept]);
        seen.push(row);
    }
    assert_eq!(seen[0], seen[1], "berth and runc differ");
    assert!(
        seen[1].contains(&"no container: Some(255)".to_string()),
        "{:?}",
        seen[1]
    );
}

/// The lines of a log written with `--log-format json`: each must be one JSON object with
/// string `level`, `msg` and `time` (RFC 3339, UTC), as containerd-style callers read them.
fn json_log(path: &std::path::Path, label: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{label}: log line is not JSON ({e}): {l:?}"));
            for k in ["level", "msg", "time"] {
                assert!(v[k].is_string(), "{label}: no {k} in {l:?}");
            }
            let t = v["time"].as_str().unwrap();
            assert!(
                t.len() >= 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                "{l:?}"
            );
            v
        })
        .collect()
}

fn levels(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().map(|v| v["level"].as_str().unwrap()).collect()
}

/// `--debug --log FILE --log-format json|text` as runc writes them: with --debug, debug lines
/// for create and exec go to the file (not stderr) and a failed command's error is the file's
/// last line, its bare message on stderr; without --debug only the error is written.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_debug_log_like_runc() {
    let mut seen: Vec<Vec<String>> = Vec::new();
    for (label, rt) in [("berth", Runtime::berth()), ("runc", Runtime::runc())] {
        let id = unique(&format!("log-{label}"));
        let cg = format!("/{id}");
        let b = Bundle::busybox(std::path::Path::new("runc"), &["sleep", "1000"], &cg);
        rt.track(&id, &cg);
        let bundle = b.path().to_str().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let mut row = Vec::new();
        let mut n = 0;
        // Runs `args` with the log options into a fresh file; returns its exit status, its
        // stderr and the file's lines.
        let mut logged = |opts: &[&str], args: &[&str], detached: bool| {
            n += 1;
            let f = logs.path().join(format!("{n}.log"));
            let mut all: Vec<&str> = opts.to_vec();
            all.extend(["--log", f.to_str().unwrap()]);
            all.extend(args);
            let err = tempfile::NamedTempFile::new().unwrap();
            let mut cmd = rt.cmd(&all);
            if detached {
                cmd.stdout(std::process::Stdio::null());
            }
            let status = cmd
                .stderr(err.reopen().unwrap())
                .status()
                .expect("running the runtime");
            let stderr = std::fs::read_to_string(err.path()).unwrap();
            (status.code(), stderr, f)
        };
        let json = ["--debug", "--log-format", "json"];

        let (code, stderr, f) = logged(&json, &["create", "--bundle", bundle, &id], true);
        let lines = json_log(&f, label);
        row.push(format!(
            "create: {code:?}, debug: {}",
            levels(&lines).contains(&"debug")
        ));
        assert!(
            !stderr.contains("level=debug") && !stderr.contains("\"debug\""),
            "{label}: debug lines on stderr: {stderr}"
        );
        if label == "berth" {
            // The ambient capabilities `runc spec` writes without inheritable ones: the
            // runtime's warning goes to the log, not to stderr.
            assert!(
                lines.iter().any(|v| v["level"] == "warning"
                    && v["msg"].as_str().unwrap().contains("ambient capability")),
                "{label}: no warning line: {lines:?}"
            );
            assert!(!stderr.contains("warning"), "{label}: {stderr}");
        }
        rt.ok(&["start", &id]);

        let (code, _, f) = logged(&json, &["exec", &id, "true"], false);
        let lines = json_log(&f, label);
        row.push(format!(
            "exec: {code:?}, debug: {}",
            levels(&lines).contains(&"debug")
        ));

        for (what, opts) in [("debug", &json[..]), ("quiet", &json[1..])] {
            let (code, stderr, f) = logged(opts, &["exec", &id, "/nonexistent"], false);
            let lines = json_log(&f, label);
            let last = lines.last().unwrap_or_else(|| panic!("{label}: empty log"));
            assert_eq!(last["level"], "error", "{label}: {lines:?}");
            assert_eq!(
                last["msg"].as_str().unwrap(),
                stderr.trim_end(),
                "{label}: stderr is not the bare error"
            );
            row.push(format!(
                "failed exec ({what}): {code:?}, debug: {}, errors: {}",
                levels(&lines).contains(&"debug"),
                levels(&lines).iter().filter(|l| **l == "error").count()
            ));
        }

        let (code, _, f) = logged(&["--debug"], &["exec", &id, "true"], false);
        let text = std::fs::read_to_string(&f).unwrap();
        row.push(format!(
            "text exec: {code:?}, all logrus lines: {}, debug: {}",
            text.lines()
                .all(|l| l.starts_with("time=\"") && l.contains(" level=")),
            text.contains(" level=debug msg=")
        ));

        let (code, _, f) = logged(&json, &["delete", "--force", &id], false);
        row.push(format!("delete: {code:?}"));
        json_log(&f, label);
        let (code, _, f) = logged(&json[1..], &["delete", &id], false);
        let lines = json_log(&f, label);
        row.push(format!("delete again: {code:?}, {:?}", levels(&lines)));
        seen.push(row);
    }
    assert_eq!(seen[0], seen[1], "berth and runc differ");
    assert!(
        seen[1].contains(&"create: Some(0), debug: true".to_string())
            && seen[1].contains(&"delete again: Some(1), [\"error\"]".to_string()),
        "{:?}",
        seen[1]
    );
}

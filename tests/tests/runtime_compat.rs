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

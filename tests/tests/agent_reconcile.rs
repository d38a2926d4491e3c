//! berthd end to end under a real systemd (booted in private namespaces) with an offline OCI image:
//! spec files (and the files they name) written, edited, touched and deleted; what systemd shows is
//! asserted.

use berth_tests::agent::{Agent, IMAGE};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn sleeper(extra: &str) -> String {
    format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n{extra}"
    )
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_write_edit_touch_delete() {
    let a = Agent::start("agent-wetd").unwrap();
    a.start_berthd(true).unwrap();
    a.write("web", &sleeper(""));
    a.write("db", &sleeper("environment: {ROLE: db}\npids_limit: -1\n"));
    a.wait(T, "web and db active", || a.active("web") && a.active("db"))
        .unwrap();
    let (web0, db0) = (a.show("web", "InvocationID"), a.show("db", "InvocationID"));
    // `pids_limit: -1` is unlimited, not systemd's default task limit.
    assert_eq!(a.show("db", "TasksMax"), "infinity");
    // `berth exec` runs inside the container, with its exit status.
    let out = a
        .berth(&["exec", "db", "sh", "-c", "echo $ROLE; exit 3"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "db");
    assert_eq!(out.status.code(), Some(3));
    assert!(!web0.is_empty());
    let env = a.show("web", "Environment");
    assert!(
        env.contains("BERTH_SPEC_HASH=sha256:"),
        "the unit carries no spec hash: {env}"
    );

    // Touch / rewrite with the same meaning: nothing restarts.
    a.write("web", &format!("# a comment\n{}", sleeper("")));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.show("web", "InvocationID"),
        web0,
        "a no-op edit restarted web"
    );

    // A real edit restarts only the edited container.
    a.write("web", &sleeper("environment: {A: b}\n"));
    a.wait(T, "web replaced", || {
        a.active("web") && a.show("web", "InvocationID") != web0
    })
    .unwrap();
    assert_eq!(
        a.show("db", "InvocationID"),
        db0,
        "editing web restarted db"
    );
    let web_env = a.show("web", "Environment");
    let st = a.berth(&["inspect", "web"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(
        v["oci_config"]["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "A=b")
    );
    assert!(web_env.contains(v["record"]["hash"].as_str().unwrap()));

    // Delete: the unit goes, the bundle goes.
    a.rm("web");
    a.wait(T, "web's unit gone", || {
        a.show("web", "LoadState") == "not-found"
    })
    .unwrap();
    a.wait(T, "web's bundle and status gone", || {
        !a.sd.root_path().join("run/berth/containers/web").exists()
            && a.ps().is_ok_and(|m| !m.contains_key("web"))
    })
    .unwrap();
    assert!(a.active("db"));
    assert_eq!(a.show("db", "InvocationID"), db0);
    assert!(a.ps().unwrap().get("web").is_none());
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_malformed_file_among_good_ones() {
    let a = Agent::start("agent-malformed").unwrap();
    a.write("good1", &sleeper(""));
    a.write("bad", &format!("image_file: {IMAGE}\nmem_limt: 1G\n"));
    a.write("good2", &sleeper(""));
    a.start_berthd(true).unwrap();
    a.wait(T, "good ones active", || {
        a.active("good1") && a.active("good2")
    })
    .unwrap();
    let ps = a.ps().unwrap();
    assert_eq!(ps["bad"]["phase"], "invalid");
    let msg = ps["bad"]["message"].as_str().unwrap();
    assert!(msg.contains("bad.yaml:2:1"), "{msg}");
    assert!(msg.contains("did you mean `mem_limit`"), "{msg}");
    assert_eq!(a.show("bad", "LoadState"), "not-found");
    let status = a.show_unit("berthd.service", "StatusText");
    assert!(status.contains("1 invalid spec"), "{status}");
    // `berth check` says so too, with a failing exit code.
    let out = a
        .berth(&[
            "check",
            "/srv/tb/specs/bad.yaml",
            "/srv/tb/specs/good1.yaml",
        ])
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // Breaking a running container's file leaves it running as it was.
    let inv = a.show("good1", "InvocationID");
    a.write("good1", "image_file: [\n");
    a.wait(T, "good1 reported invalid", || {
        a.phase("good1") == "invalid"
    })
    .unwrap();
    assert!(a.active("good1"));
    assert_eq!(a.show("good1", "InvocationID"), inv);
    // Fixing the file back (same meaning) does not restart it either.
    a.write("good1", &sleeper(""));
    a.wait(T, "good1 running again", || a.phase("good1") == "running")
        .unwrap();
    assert_eq!(a.show("good1", "InvocationID"), inv);
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_depends_on_service_healthy() {
    let a = Agent::start("agent-deps").unwrap();
    // db becomes healthy only ~3 s after it starts.
    a.write(
        "db",
        &format!(
            "image_file: {IMAGE}\ncommand: [sh, -c, 'sleep 3; touch /tmp/ready; exec sleep 3600']\nnetwork_mode: none\n\
             tmpfs: /tmp\nrestart: always\nreadiness: healthy\n\
             healthcheck: {{test: [CMD, test, -f, /tmp/ready], interval: 500ms, timeout: 1s, retries: 30}}\n"
        ),
    );
    a.write(
        "app",
        &format!(
            "{}depends_on: {{db: {{condition: service_healthy}}}}\n",
            sleeper("")
        ),
    );
    a.start_berthd(false).unwrap();
    a.wait(T, "app active", || a.active("app")).unwrap();
    let db_active: u64 = a
        .show("db", "ActiveEnterTimestampMonotonic")
        .parse()
        .unwrap();
    let db_start: u64 = a
        .show("db", "InactiveExitTimestampMonotonic")
        .parse()
        .unwrap();
    let app_start: u64 = a
        .show("app", "InactiveExitTimestampMonotonic")
        .parse()
        .unwrap();
    assert!(
        db_active - db_start >= 2_500_000,
        "db was active before its first passing check"
    );
    assert!(app_start >= db_active, "app started before db was healthy");
    assert!(a.show("app", "After").contains("berth-db.service"));
    assert!(a.show("app", "Requires").contains("berth-db.service"));
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_failing_healthcheck_restarts_container() {
    let a = Agent::start("agent-unhealthy").unwrap();
    a.write(
        "sick",
        &sleeper("healthcheck: {test: [CMD, 'false'], interval: 500ms, timeout: 1s, retries: 2}\n"),
    );
    a.start_berthd(true).unwrap();
    a.wait(T, "sick restarted by systemd", || {
        a.show("sick", "NRestarts").parse::<u32>().unwrap_or(0) >= 1
    })
    .unwrap();
    // berthd itself did not replace it: the hash is unchanged, only systemd restarted it.
    a.wait(T, "sick running again", || {
        a.phase("sick") == "running" || a.phase("sick") == "starting"
    })
    .unwrap();
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_sigkill_mid_reconcile_converges() {
    let a = Agent::start("agent-sigkill").unwrap();
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for n in &names {
        a.write(n, &sleeper(""));
    }
    a.start_berthd(false).unwrap();
    // Kill it while it is starting them.
    a.wait(T, "some container starting", || {
        names
            .iter()
            .any(|n| !a.show(n, "ActiveState").is_empty() && a.show(n, "LoadState") == "loaded")
    })
    .unwrap();
    a.kill_berthd().unwrap();
    a.start_berthd(true).unwrap();
    a.wait(T, "all active", || names.iter().all(|n| a.active(n)))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for n in &names {
        assert_eq!(a.starts(n), 1, "{n} was started more than once");
        assert_eq!(a.show(n, "NRestarts"), "0");
    }
    // Nothing leaked: one bundle per container, no failed units.
    let mut bundles: Vec<String> = std::fs::read_dir(a.sd.root_path().join("run/berth/containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    bundles.sort();
    assert_eq!(bundles, names);
    let failed =
        a.sd.systemctl(&[
            "list-units",
            "--failed",
            "--plain",
            "--no-legend",
            "berth-*",
        ])
        .unwrap();
    assert!(failed.trim().is_empty(), "{failed}");
    // And a restart of a healthy berthd adopts everything.
    let inv: Vec<String> = names.iter().map(|n| a.show(n, "InvocationID")).collect();
    a.sd.systemctl(&["stop", "berthd.service"]).unwrap();
    a.start_berthd(true).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let inv2: Vec<String> = names.iter().map(|n| a.show(n, "InvocationID")).collect();
    assert_eq!(inv, inv2);
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_fifty_specs_at_once() {
    let a = Agent::start("agent-fifty").unwrap();
    a.start_berthd(true).unwrap();
    let t0 = std::time::Instant::now();
    for i in 0..50 {
        a.write(&format!("s{i:02}"), &sleeper(""));
    }
    a.wait(Duration::from_secs(180), "50 running", || {
        a.ps()
            .map(|m| m.values().filter(|s| s["phase"] == "running").count() == 50)
            .unwrap_or(false)
    })
    .unwrap();
    eprintln!("50 specs -> 50 running in {:?}", t0.elapsed());
    let active =
        a.sd.systemctl(&[
            "list-units",
            "--state=active",
            "--plain",
            "--no-legend",
            "berth-*",
        ])
        .unwrap();
    assert_eq!(active.lines().count(), 50);
    a.wait(T, "STATUS= says 50 running", || {
        a.show_unit("berthd.service", "StatusText")
            .starts_with("50 running")
    })
    .unwrap();
}

/// `init: true`: tini is the container's PID 1 and reaps orphans; the program runs under it.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_init_true_runs_tini_as_pid1() {
    let a = Agent::start("agent-init").unwrap();
    a.start_berthd(true).unwrap();
    a.write("plain", &sleeper(""));
    a.write("withinit", &sleeper("init: true\n"));
    a.wait(T, "both active", || {
        a.active("plain") && a.active("withinit")
    })
    .unwrap();
    let comm = |name: &str| {
        let out = a.berth(&["exec", name, "cat", "/proc/1/comm"]).unwrap();
        assert!(out.status.success(), "exec in {name}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(comm("plain"), "sleep");
    assert_eq!(comm("withinit"), "docker-init");
    // An orphan (a background child whose parent exited) is reparented to PID 1: `sleep` leaves
    // it a zombie, the init reaps it.
    let zombies = |name: &str| {
        let out = a
            .berth(&[
                "exec",
                name,
                "sh",
                "-c",
                "sh -c 'sleep 0.2 &' ; sleep 1; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(zombies("plain"), "1");
    assert_eq!(zombies("withinit"), "0");
}

/// A seccomp profile is part of what runs: editing the file replaces the container once (without
/// a spec edit or the periodic resync), rewriting or touching it with the same bytes does not, and
/// a profile that goes missing is reported with its path while the container keeps running.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_seccomp_profile_edit_restarts_once() {
    let a = Agent::start("agent-seccomp").unwrap();
    let profile = a.sd.share_dir().join("profile.json");
    let deny = |calls: &str| {
        format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":[{calls}],"action":"SCMP_ACT_ERRNO"}}]}}"#
        )
    };
    let no_mkdir = deny(r#""mkdir","mkdirat""#);
    std::fs::write(&profile, &no_mkdir).unwrap();
    a.write(
        "sc",
        &sleeper("security_opt: [seccomp=/srv/tb/profile.json]\n"),
    );
    a.write("other", &sleeper(""));
    a.start_berthd(true).unwrap();
    a.wait(T, "sc and other active", || {
        a.active("sc") && a.active("other")
    })
    .unwrap();
    let (sc0, other0) = (
        a.show("sc", "InvocationID"),
        a.show("other", "InvocationID"),
    );
    let mkdir = |dir: &str| {
        a.berth(&["exec", "sc", "mkdir", dir])
            .unwrap()
            .status
            .success()
    };
    assert!(!mkdir("/d0"), "the profile does not deny mkdir");

    // The same bytes written again, then touched; then a pass for sc for sure (a no-op spec
    // edit): nothing restarts.
    std::fs::write(&profile, &no_mkdir).unwrap();
    let out = std::process::Command::new("touch")
        .arg(&profile)
        .status()
        .unwrap();
    assert!(out.success());
    a.write(
        "sc",
        &format!(
            "# same meaning\n{}",
            sleeper("security_opt: [seccomp=/srv/tb/profile.json]\n")
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.show("sc", "InvocationID"),
        sc0,
        "an unchanged profile restarted sc"
    );
    // `berth diff` agrees: nothing to do, exit code 0.
    let out = a.berth(&["diff", "--json"]).unwrap();
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diff["sc"]["action"], "nothing", "{diff}");
    assert_eq!(out.status.code(), Some(0), "{diff}");

    // An edit of the profile alone: sc is replaced, once, and runs under the new profile.
    std::fs::write(&profile, deny(r#""chroot""#)).unwrap();
    a.wait(T, "sc replaced", || {
        a.active("sc") && a.show("sc", "InvocationID") != sc0
    })
    .unwrap();
    let sc1 = a.show("sc", "InvocationID");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.show("sc", "InvocationID"),
        sc1,
        "sc restarted more than once"
    );
    assert_eq!(a.starts("sc"), 2);
    assert!(mkdir("/d1"), "the edited profile is not in force");
    assert_eq!(a.show("other", "InvocationID"), other0);

    // The profile gone: reported with its path, sc left running, other still reconciled.
    std::fs::remove_file(&profile).unwrap();
    a.wait(T, "sc reported invalid", || a.phase("sc") == "invalid")
        .unwrap();
    let msg = a.ps().unwrap()["sc"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(msg.contains("/srv/tb/profile.json"), "{msg}");
    assert_eq!(a.show("sc", "InvocationID"), sc1);
    let out = a.berth(&["diff", "--json"]).unwrap();
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diff["sc"]["action"], "invalid", "{diff}");
    assert!(
        diff["sc"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("/srv/tb/profile.json")),
        "{diff}"
    );
    a.write("other", &sleeper("environment: {A: b}\n"));
    a.wait(T, "other replaced", || {
        a.active("other") && a.show("other", "InvocationID") != other0
    })
    .unwrap();
    assert_eq!(a.show("sc", "InvocationID"), sc1);
    assert!(a.active("sc"));
}

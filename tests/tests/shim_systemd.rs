//! berth-shim as the main process of a transient unit of a real systemd (booted in private
//! namespaces), asserted through systemd itself: unit state, cgroups, journal, stop, exit status,
//! exec, adoption after the client died.

use berth_agent::systemd::{BusTarget, Systemd, UnitSpec, UnitStatus};
use berth_proto::protocol::{ExecRequest, ShimClient};
use berth_tests::systemd::{ShimBundle, TestSystemd};
use serde_json::json;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

async fn client(sd: &TestSystemd) -> Systemd {
    Systemd::connect(BusTarget::Address(sd.address()))
        .await
        .expect("connect to the test systemd")
        .with_journal_dir(sd.journal_dir().unwrap())
}

fn unit_spec(b: &ShimBundle) -> UnitSpec {
    let mut s = UnitSpec::new(&b.name, &format!("test/busybox:{}", b.name), b.shim_argv());
    s.spec_hash = format!("hash-{}", b.name);
    s.log_fields
        .insert("CONTAINER_ID".into(), format!("id-{}", b.name));
    s
}

/// `cat` of a file inside the namespace, as lines.
fn cat_inside(sd: &TestSystemd, path: &str) -> Vec<String> {
    let out = sd.exec_inside(&["cat", path]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_state(sys: &Systemd, unit: &str, pred: impl Fn(&UnitStatus) -> bool) -> UnitStatus {
    let t0 = Instant::now();
    loop {
        let st = sys.status(unit).await.unwrap().unwrap_or_default();
        if pred(&st) {
            return st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "unit {unit} never reached the expected state: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_unit_holds_container_with_limits_logs_and_exec() {
    let sd = TestSystemd::boot("shim-basic").unwrap();
    let sys = client(&sd).await;
    let b = ShimBundle::create(
        &sd,
        "web",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo hello-from-container; echo to-stderr >&2; \
             while true; do sleep 0.1; done",
        ],
        json!({}),
    )
    .unwrap();
    let mut spec = unit_spec(&b);
    spec.memory_max = Some(64 << 20);
    spec.tasks_max = Some(50);
    sys.start_unit(&spec).await.unwrap();

    let st = sys.status(&b.unit()).await.unwrap().unwrap();
    assert_eq!(st.active_state, "active");
    assert_eq!(st.sub_state, "running");
    assert_eq!(st.spec_hash(), Some("hash-web"));
    let cg = st.control_group.clone();
    assert!(cg.ends_with("/berth-web.service"), "{cg}");

    // The shim (MainPID) is alone in the supervisor leaf; the container in the container leaf.
    let mut shim = ShimClient::connect(&b.socket()).unwrap();
    let state = shim.state().unwrap();
    assert_eq!(state.shim_pid, st.main_pid);
    let sup = cat_inside(
        &sd,
        &format!("/sys/fs/cgroup/unified{cg}/supervisor/cgroup.procs"),
    );
    assert_eq!(sup, vec![st.main_pid.to_string()]);
    let ctr = cat_inside(
        &sd,
        &format!("/sys/fs/cgroup/unified{cg}/container/cgroup.procs"),
    );
    assert!(
        ctr.contains(&state.pid.to_string()),
        "{ctr:?} vs {}",
        state.pid
    );
    // No threads, ever (it reaps, forks execs and handles signals single-threaded).
    let status = cat_inside(&sd, &format!("/proc/{}/status", st.main_pid));
    assert!(status.iter().any(|l| l == "Threads:\t1"), "{status:?}");
    let unit_root = cat_inside(&sd, &format!("/sys/fs/cgroup/unified{cg}/cgroup.procs"));
    assert!(
        unit_root.is_empty(),
        "processes left in the unit's own cgroup: {unit_root:?}"
    );
    // MemoryMax lands on the unit's memory cgroup, which holds the container's.
    let lim = cat_inside(
        &sd,
        &format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes"),
    );
    assert_eq!(lim, vec![(64u64 << 20).to_string()]);
    let mem_procs = cat_inside(
        &sd,
        &format!("/sys/fs/cgroup/memory{cg}/container/cgroup.procs"),
    );
    assert!(mem_procs.contains(&state.pid.to_string()), "{mem_procs:?}");
    let pids_max = cat_inside(&sd, &format!("/sys/fs/cgroup/pids{cg}/pids.max"));
    assert_eq!(pids_max, vec!["50".to_string()]);

    // The container's own output is in the unit's journal, with the Docker-like fields.
    let e = sd
        .wait_journal(&b.unit(), Duration::from_secs(10), |e| {
            e["MESSAGE"] == "hello-from-container"
        })
        .unwrap();
    assert_eq!(e["CONTAINER_NAME"], "web");
    assert_eq!(e["CONTAINER_ID"], "id-web");
    assert_eq!(e["IMAGE_NAME"], "test/busybox:web");
    assert_eq!(e["SYSLOG_IDENTIFIER"], "web");
    assert_eq!(e["_SYSTEMD_UNIT"], "berth-web.service");
    sd.wait_journal(&b.unit(), Duration::from_secs(10), |e| {
        e["MESSAGE"] == "to-stderr" && e["PRIORITY"] == "6"
    })
    .unwrap();

    // exec: a process in the container's namespaces, with our pipes, exit code returned.
    let (mut r, w) = std::io::pipe().unwrap();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let mut ex = ShimClient::connect(&b.socket()).unwrap();
    let req = ExecRequest {
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo host=$(cat /proc/sys/kernel/hostname) pid1=$(cat /proc/1/comm); exit 5".into(),
        ],
        ..Default::default()
    };
    let pid = ex
        .exec(&req, [devnull.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()])
        .unwrap();
    assert!(pid > 0);
    drop(w);
    let status = ex.wait_exit().unwrap();
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    assert_eq!(status, 5);
    assert_eq!(out.trim(), "host=web pid1=sh");

    // Stop: the shim forwards SIGTERM, the container's handler exits 3, the shim exits 3 and
    // systemd records it as the unit's ExecMainStatus.
    sys.stop_unit(&b.unit(), Duration::from_secs(30))
        .await
        .unwrap();
    let st = sys
        .status(&b.unit())
        .await
        .unwrap()
        .expect("failed unit stays loaded");
    assert_eq!(st.active_state, "failed");
    assert_eq!(st.result, "exit-code");
    assert_eq!(st.exec_main_code, 1, "CLD_EXITED");
    assert_eq!(st.exec_main_status, 3);
    sd.wait_journal(&b.unit(), Duration::from_secs(10), |e| {
        e["MESSAGE"] == "got-term"
    })
    .unwrap();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.dir.join("exit.json")).unwrap()).unwrap();
    assert_eq!(rec["status"], 3);
    assert_eq!(rec["oom_killed"], false);
    // Nothing left behind: cgroups, sockets, runtime state.
    let left = sd
        .exec_inside(&[
            "sh",
            "-c",
            &format!("ls -d /sys/fs/cgroup/*{cg} 2>/dev/null; ls /run/berth/runtime 2>/dev/null"),
        ])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
    assert!(!b.socket().exists());
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_stop_signal_timeout_and_exit_status() {
    let sd = TestSystemd::boot("shim-stop").unwrap();
    let sys = client(&sd).await;
    // Ignores SIGTERM: systemd kills the whole unit after TimeoutStopSec.
    let stubborn = ShimBundle::create(
        &sd,
        "stubborn",
        &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
        json!({}),
    )
    .unwrap();
    // Ignores SIGTERM too, but the shim's own stop timeout kills it first and cleans up.
    let managed = ShimBundle::create(
        &sd,
        "managed",
        &[
            "sh",
            "-c",
            "trap 'echo term-ignored' TERM; while true; do sleep 0.1; done",
        ],
        json!({"stop_timeout_ms": 1000}),
    )
    .unwrap();
    // Exits by itself with a status.
    let quitter = ShimBundle::create(
        &sd,
        "quitter",
        &["sh", "-c", "sleep 0.5; exit 42"],
        json!({}),
    )
    .unwrap();
    // Asks for SIGKILL as its stop signal: the unit's KillSignal stays SIGTERM (a SIGKILLed
    // shim could not clean up) and the shim sends SIGKILL on.
    let killer = ShimBundle::create(
        &sd,
        "killer",
        &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
        json!({"stop_signal": libc::SIGKILL}),
    )
    .unwrap();
    // Cannot start: the shim reports the runtime's error and systemd the failed job.
    let broken = ShimBundle::create(&sd, "broken", &["/no/such/binary"], json!({})).unwrap();

    let mut s = unit_spec(&stubborn);
    // systemd's deadline: 1 s + the 5 s backstop.
    s.timeout_stop = Some(Duration::from_secs(1));
    sys.start_unit(&s).await.unwrap();
    let mut s = unit_spec(&managed);
    s.timeout_stop = Some(Duration::from_secs(20));
    sys.start_unit(&s).await.unwrap();
    sys.start_unit(&unit_spec(&quitter)).await.unwrap();
    // runc refuses a missing binary at create (the start job fails with the shim's 125);
    // berth-runtime fails it at exec time (the unit fails right after starting). Either way the
    // unit ends failed with a non-zero status and the reason in its journal.
    match sys.start_unit(&unit_spec(&broken)).await {
        Err(berth_agent::systemd::SystemdError::JobFailed {
            result,
            exit_status,
            logs,
            ..
        }) => {
            assert_eq!(result, "failed");
            assert_eq!(exit_status, 125);
            assert!(
                logs.iter().any(|l| l.contains("berth-shim:")),
                "shim's error in the logs: {logs:?}"
            );
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(()) => {
            let st = wait_state(&sys, &broken.unit(), |s| s.active_state == "failed").await;
            assert_ne!(st.exec_main_status, 0);
        }
    }

    let st = wait_state(&sys, &quitter.unit(), |s| s.active_state == "failed").await;
    assert_eq!(st.exec_main_status, 42);
    assert_eq!(st.result, "exit-code");

    let mut s = unit_spec(&killer);
    s.kill_signal = Some(libc::SIGTERM);
    s.timeout_stop = Some(Duration::from_secs(20));
    sys.start_unit(&s).await.unwrap();
    let t0 = Instant::now();
    sys.stop_unit(&killer.unit(), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let st = sys.status(&killer.unit()).await.unwrap().unwrap();
    assert_eq!(
        st.exec_main_status, 137,
        "the shim exited with the container's status: {st:?}"
    );
    assert_eq!(
        st.exec_main_code, 1,
        "the shim exited itself (CLD_EXITED): {st:?}"
    );
    let left = sd
        .exec_inside(&["sh", "-c", "ls -d /run/berth/runtime/killer 2>/dev/null"])
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "state left behind"
    );

    let t0 = Instant::now();
    let (u1, u2) = (stubborn.unit(), managed.unit());
    let (a, b) = tokio::join!(
        sys.stop_unit(&u1, Duration::from_secs(30)),
        sys.stop_unit(&u2, Duration::from_secs(30)),
    );
    a.unwrap();
    b.unwrap();
    let st = sys.status(&stubborn.unit()).await.unwrap().unwrap();
    assert_eq!(st.result, "timeout", "{st:?}");
    assert_eq!(
        st.exec_main_code, 2,
        "the shim was SIGKILLed too (CLD_KILLED)"
    );
    assert_eq!(st.exec_main_status, libc::SIGKILL);
    let st = sys.status(&managed.unit()).await.unwrap().unwrap();
    assert_eq!(st.exec_main_status, 137, "{st:?}");
    assert_eq!(st.result, "exit-code");
    let elapsed = t0.elapsed();
    assert!(elapsed >= Duration::from_secs(6), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    sd.wait_journal(&managed.unit(), Duration::from_secs(10), |e| {
        e["MESSAGE"] == "term-ignored"
    })
    .unwrap();
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(managed.dir.join("exit.json")).unwrap()).unwrap();
    assert_eq!(rec["exit"], json!({"signaled": 9}));
    // The shim that got to clean up left nothing in any hierarchy.
    let left = sd
        .exec_inside(&[
            "sh",
            "-c",
            "ls -d /sys/fs/cgroup/*/system.slice/berth-managed.service /run/berth/runtime/managed 2>/dev/null",
        ])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "");
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_readiness_from_health_check_and_unhealthy_exit() {
    let sd = TestSystemd::boot("shim-health").unwrap();
    let sys = client(&sd).await;
    let b = ShimBundle::create(
        &sd,
        "checked",
        &[
            "sh",
            "-c",
            "sleep 1; touch /tmp/ready; while true; do sleep 0.1; done",
        ],
        json!({
            "readiness": "healthy",
            "healthcheck": {"command": ["sh", "-c", "echo probing; test -f /tmp/ready"],
                            "interval_ms": 200, "timeout_ms": 2000, "retries": 2,
                            "start_period_ms": 5000}
        }),
    )
    .unwrap();
    let t0 = Instant::now();
    sys.start_unit(&unit_spec(&b)).await.unwrap();
    // Active only once the check passed, which cannot be before the file exists.
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    let mut c = ShimClient::connect(&b.socket()).unwrap();
    let h = c.health().unwrap();
    assert_eq!(h.status, "healthy");
    let last = h.log.last().unwrap();
    assert_eq!(last.exit_code, 0);
    assert_eq!(last.output.trim(), "probing");
    // Make it fail: two failed checks in a row → the shim kills the container and exits non-zero.
    let (_r, w) = std::io::pipe().unwrap();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let req = ExecRequest {
        args: vec!["rm".into(), "/tmp/ready".into()],
        ..Default::default()
    };
    let mut ex = ShimClient::connect(&b.socket()).unwrap();
    ex.exec(&req, [devnull.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()])
        .unwrap();
    assert_eq!(ex.wait_exit().unwrap(), 0);
    let st = wait_state(&sys, &b.unit(), |s| s.active_state == "failed").await;
    assert_eq!(st.exec_main_status, 137, "{st:?}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.dir.join("exit.json")).unwrap()).unwrap();
    assert_eq!(rec["unhealthy"], true);
}

/// Not a test by itself: the "berthd" process of `shim_units_survive_client_sigkill`, which runs
/// this test binary again with `BERTH_ADOPT_ADDRESS` set, starts units, and is SIGKILLed.
#[tokio::test]
#[ignore = "needs root: helper process of shim_units_survive_client_sigkill"]
async fn shim_adopt_helper_process() {
    let Ok(addr) = std::env::var("BERTH_ADOPT_ADDRESS") else {
        return;
    };
    let specs: Vec<Vec<String>> =
        serde_json::from_str(&std::env::var("BERTH_ADOPT_UNITS").unwrap()).unwrap();
    let sys = Systemd::connect(BusTarget::Address(addr)).await.unwrap();
    let _events = sys.events();
    for argv in specs {
        let name = argv[0].clone();
        let mut s = UnitSpec::new(&name, "test/busybox", argv[1..].to_vec());
        s.spec_hash = format!("hash-{name}");
        sys.start_unit(&s).await.unwrap();
    }
    println!("ADOPT-STARTED");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_units_survive_client_sigkill() {
    use std::io::BufRead;
    let sd = TestSystemd::boot("shim-adopt").unwrap();
    let bundles: Vec<ShimBundle> = ["alpha", "beta"]
        .iter()
        .map(|n| {
            ShimBundle::create(
                &sd,
                n,
                &["sh", "-c", "while true; do sleep 0.1; done"],
                json!({}),
            )
            .unwrap()
        })
        .collect();
    let units: Vec<Vec<String>> = bundles
        .iter()
        .map(|b| {
            let mut v = vec![b.name.clone()];
            v.extend(b.shim_argv());
            v
        })
        .collect();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shim_adopt_helper_process",
            "--include-ignored",
            "--nocapture",
        ])
        .env("BERTH_ADOPT_ADDRESS", sd.address())
        .env("BERTH_ADOPT_UNITS", serde_json::to_string(&units).unwrap())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.map(|l| l.contains("ADOPT-STARTED")).unwrap_or(false)),
        "helper did not start the units"
    );
    let sys = client(&sd).await;
    let mut before = Vec::new();
    for b in &bundles {
        let st = sys.status(&b.unit()).await.unwrap().unwrap();
        assert_eq!(st.active_state, "active");
        let pid = ShimClient::connect(&b.socket())
            .unwrap()
            .state()
            .unwrap()
            .pid;
        before.push((st.main_pid, pid, st.invocation_id.clone()));
    }
    // berthd dies hard.
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new client finds the units by listing and adopts them: same shim, same container,
    // same invocation, no restart, the spec hash to compare with.
    let sys = client(&sd).await;
    let mut listed: Vec<String> = sys
        .list_units()
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.active_state == "active")
        .filter_map(|u| u.container().map(str::to_owned))
        .collect();
    listed.sort();
    assert_eq!(listed, ["alpha", "beta"]);
    for (b, (main_pid, pid, inv)) in bundles.iter().zip(before) {
        let st = sys.status(&b.unit()).await.unwrap().unwrap();
        assert_eq!(st.main_pid, main_pid);
        assert_eq!(st.invocation_id, inv);
        assert_eq!(st.n_restarts, 0);
        assert_eq!(st.spec_hash(), Some(format!("hash-{}", b.name).as_str()));
        let now = ShimClient::connect(&b.socket()).unwrap().state().unwrap();
        assert_eq!(now.pid, pid, "container restarted");
    }
    let mut events = sys.events();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap();
    assert_eq!(first, Some(berth_agent::systemd::UnitEvent::Resync));
    sys.kill_unit(
        &bundles[0].unit(),
        berth_agent::systemd::KillWho::All,
        libc::SIGKILL,
    )
    .await
    .unwrap();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a state change of alpha")
            .unwrap();
        if let berth_agent::systemd::UnitEvent::Changed {
            unit,
            active_state: Some(s),
            ..
        } = &e
            && unit == "berth-alpha.service"
            && (s == "failed" || s == "inactive")
        {
            break;
        }
    }
}

/// A journal entry's MESSAGE as text (journalctl writes non-printable ones as byte arrays).
fn message(e: &serde_json::Value) -> String {
    match &e["MESSAGE"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => {
            let b: Vec<u8> = a
                .iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u8)
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => String::new(),
    }
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_overlay_rootfs_tty_attach_and_oom() {
    let sd = TestSystemd::boot("shim-ovl-tty").unwrap();
    let sys = client(&sd).await;

    // Overlay: the image's files in a lower dir, the container's writes in its upper dir; the
    // shim mounts it at the bundle's rootfs before create and unmounts it after delete.
    let ovl = ShimBundle::create(
        &sd,
        "ovl",
        &[
            "sh",
            "-c",
            "echo data > /written; echo ovl-ok; exec sleep 100000",
        ],
        json!({}),
    )
    .unwrap();
    std::fs::rename(ovl.dir.join("rootfs"), ovl.dir.join("lower")).unwrap();
    for d in ["rootfs", "upper", "work"] {
        std::fs::create_dir(ovl.dir.join(d)).unwrap();
    }
    let inside = |d: &str| ovl.inside.join(d).display().to_string();
    let shim_json = json!({"name": "ovl", "image": "test/busybox:ovl", "stop_timeout_ms": 300,
        "rootfs": {"lower": [inside("lower")], "upper": inside("upper"), "work": inside("work")}});
    std::fs::write(ovl.dir.join("shim.json"), shim_json.to_string()).unwrap();
    let mut s = unit_spec(&ovl);
    s.timeout_stop = Some(Duration::from_secs(10));
    sys.start_unit(&s).await.unwrap();
    sd.wait_journal(&ovl.unit(), Duration::from_secs(10), |e| {
        message(e) == "ovl-ok"
    })
    .unwrap();
    let mountinfo = || {
        let out = sd.exec_inside(&["cat", "/proc/self/mountinfo"]).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!(" {} ", inside("rootfs"))))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let m = mountinfo();
    assert!(m.iter().any(|l| l.contains(" - overlay ")), "{m:?}");
    assert_eq!(
        std::fs::read_to_string(ovl.dir.join("upper/written")).unwrap(),
        "data\n"
    );
    assert!(!ovl.dir.join("lower/written").exists());
    sys.stop_unit(&ovl.unit(), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(mountinfo(), Vec::<String>::new(), "overlay left mounted");

    // tty: the container's terminal is a pty the shim holds; its output goes to the journal,
    // attach clients see it and feed its input.
    let tty = ShimBundle::create(
        &sd,
        "tty",
        &[
            "sh",
            "-c",
            "echo tty-says-hi; while read l; do echo got:$l; done",
        ],
        json!({"tty": true}),
    )
    .unwrap();
    sys.start_unit(&unit_spec(&tty)).await.unwrap();
    sd.wait_journal(&tty.unit(), Duration::from_secs(10), |e| {
        message(e) == "tty-says-hi"
    })
    .unwrap();
    let mut c = ShimClient::connect(&tty.socket()).unwrap();
    c.resize(40, 120).unwrap();
    let mut att = ShimClient::connect(&tty.socket())
        .unwrap()
        .attach()
        .unwrap();
    use std::io::Write;
    att.write_all(b"ping\n").unwrap();
    att.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut b = [0u8; 512];
    while !String::from_utf8_lossy(&seen).contains("got:ping") {
        let n = att.read(&mut b).expect("attached output");
        assert!(
            n > 0,
            "attach stream closed: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&b[..n]);
    }
    sd.wait_journal(&tty.unit(), Duration::from_secs(10), |e| {
        message(e) == "got:ping"
    })
    .unwrap();
    // exec -t: the client gets the pty master and does its own IO.
    let mut ex = ShimClient::connect(&tty.socket()).unwrap();
    let req = ExecRequest {
        args: vec!["sh".into(), "-c".into(), "tty; echo in-tty".into()],
        ..Default::default()
    };
    let (_pid, master) = ex.exec_tty(&req).unwrap();
    let mut m = std::fs::File::from(master);
    let mut out = Vec::new();
    loop {
        match m.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
        if String::from_utf8_lossy(&out).contains("in-tty") {
            break;
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.contains("/dev/pts/") && out.contains("in-tty"),
        "{out:?}"
    );
    assert_eq!(ex.wait_exit().unwrap(), 0);
    sys.kill_unit(
        &tty.unit(),
        berth_agent::systemd::KillWho::All,
        libc::SIGKILL,
    )
    .await
    .unwrap();

    // stdin_open without tty: the container's stdin is a pipe the shim holds; attach writes to
    // it, the output still goes straight to the journal.
    let si = ShimBundle::create(
        &sd,
        "stdin",
        &[
            "sh",
            "-c",
            "while read l; do echo in:$l; done; echo stdin-closed",
        ],
        json!({"stdin_open": true}),
    )
    .unwrap();
    sys.start_unit(&unit_spec(&si)).await.unwrap();
    let mut att = ShimClient::connect(&si.socket()).unwrap().attach().unwrap();
    att.write_all(b"hello-stdin\n").unwrap();
    sd.wait_journal(&si.unit(), Duration::from_secs(10), |e| {
        message(e) == "in:hello-stdin"
    })
    .unwrap();
    drop(att);
    sys.kill_unit(
        &si.unit(),
        berth_agent::systemd::KillWho::All,
        libc::SIGKILL,
    )
    .await
    .unwrap();

    // OOM: the kernel kills the container at MemoryMax; the shim records it and exits 137.
    let oom = ShimBundle::create(
        &sd,
        "oom",
        &["sh", "-c", "echo eating; tail /dev/zero"],
        json!({}),
    )
    .unwrap();
    let mut s = unit_spec(&oom);
    s.memory_max = Some(32 << 20);
    sys.start_unit(&s).await.unwrap();
    let st = wait_state(&sys, &oom.unit(), |s| s.active_state == "failed").await;
    assert_eq!(st.exec_main_status, 137, "{st:?}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oom.dir.join("exit.json")).unwrap()).unwrap();
    assert_eq!(rec["oom_killed"], true, "{rec}");
    sd.wait_journal(&oom.unit(), Duration::from_secs(10), |e| {
        message(e).contains("OOM-killed")
    })
    .unwrap();
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_restart_policy_recreates_the_container() {
    let sd = TestSystemd::boot("shim-restart").unwrap();
    let sys = client(&sd).await;
    // Fails after a moment; systemd's Restart=on-failure starts a new shim, which must find no
    // leftovers of the previous one (runtime state, cgroup leaves, sockets) in its way.
    let b = ShimBundle::create(
        &sd,
        "flaky",
        &["sh", "-c", "echo run; sleep 0.3; exit 1"],
        json!({}),
    )
    .unwrap();
    let mut s = unit_spec(&b);
    s.restart = berth_agent::systemd::RestartPolicy::OnFailure {
        max_retries: Some(2),
    };
    s.restart_delay = Some(Duration::from_millis(100));
    sys.start_unit(&s).await.unwrap();
    let st = wait_state(&sys, &b.unit(), |s| s.active_state == "failed").await;
    assert_eq!(st.exec_main_status, 1);
    let runs = sd
        .journal(&b.unit())
        .unwrap()
        .iter()
        .filter(|e| e["MESSAGE"] == "run")
        .count();
    // on-failure:2 = 2 restarts (NRestarts also counts the one the start limit refused).
    assert_eq!(runs, 3, "{st:?}");
    assert!(st.n_restarts >= 2, "{st:?}");
}

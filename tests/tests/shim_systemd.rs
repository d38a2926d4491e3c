//! berth-shim as the main process of a transient unit of a real systemd (booted in private
//! namespaces), asserted through systemd itself: unit state, cgroups, journal, stop, exit status,
//! exec, adoption after the client died.

use berth_agent::systemd::{BusTarget, Systemd, UnitSpec, UnitStatus};
use berth_shim::protocol::{ExecRequest, ShimClient};
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

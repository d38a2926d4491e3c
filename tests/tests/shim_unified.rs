//! berth-shim under a systemd booted in pure cgroup v2 ("unified") mode, the layout of NixOS and
//! every current distribution: the unit's delegated cgroup is split into `supervisor` (the shim)
//! and `container` leaves, the container is cloned straight into its leaf (CLONE_INTO_CGROUP),
//! exec'd processes join it, and nothing is left after the stop. This machine's v2 hierarchy has
//! no controllers (they are bound to the v1 hierarchies), so limits are covered by the hybrid
//! tests and unit tests; placement is what this one checks, through the real systemd.

use berth_agent::systemd::{BusTarget, Systemd, UnitSpec};
use berth_proto::protocol::{ExecRequest, ShimClient};
use berth_tests::systemd::{ShimBundle, TestSystemd};
use serde_json::json;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
async fn shim_pure_cgroup_v2_places_shim_and_container_in_their_leaves() {
    let sd = TestSystemd::boot_mode("shim-v2", "unified").unwrap();
    let sys = Systemd::connect(BusTarget::Address(sd.address()))
        .await
        .unwrap();
    let b = ShimBundle::create(
        &sd,
        "v2",
        &["sleep", "3600"],
        json!({"stop_timeout_ms": 500}),
    )
    .unwrap();
    let mut spec = UnitSpec::new(&b.name, "test/busybox:v2", b.shim_argv());
    spec.spec_hash = "hash-v2".into();
    sys.start_unit(&spec).await.unwrap();
    let unit = b.unit();
    let st = sys.status(&unit).await.unwrap().unwrap();
    assert_eq!(st.active_state, "active", "{st:?}");

    // The v2 line (the v1 hierarchies still list every process, unmounted here).
    let cg = |pid: &str| -> String {
        let out = sd
            .exec_inside(&["cat", &format!("/proc/{pid}/cgroup")])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("0::"))
            .unwrap_or_default()
            .to_owned()
    };
    let main_pid = sd
        .systemctl(&["show", "-p", "MainPID", "--value", &unit])
        .unwrap();
    let base = format!("0::/system.slice/{unit}");
    assert_eq!(cg(main_pid.trim()), format!("{base}/supervisor"));
    let mut c = ShimClient::connect(&b.socket()).unwrap();
    let init = c.state().unwrap().pid.to_string();
    assert_eq!(cg(&init), format!("{base}/container"));

    // An exec'd process joins the container's leaf too.
    let (mut r, w) = std::io::pipe().unwrap();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let req = ExecRequest {
        args: vec!["cat".into(), "/proc/self/cgroup".into()],
        ..Default::default()
    };
    let mut ex = ShimClient::connect(&b.socket()).unwrap();
    ex.exec(&req, [devnull.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()])
        .unwrap();
    assert_eq!(ex.wait_exit().unwrap(), 0);
    drop(w);
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut r, &mut seen).unwrap();
    // (The bundle is `runc spec`'s, without a cgroup namespace: the full path shows.)
    assert!(
        seen.lines().any(|l| l == format!("{base}/container")),
        "exec'd process: {seen}"
    );

    // `sleep` as PID 1 ignores SIGTERM: the shim's stop timeout kills it.
    sys.stop_unit(&unit, Duration::from_secs(30)).await.unwrap();
    let t0 = Instant::now();
    let dir = sd.cgroup_path("", &format!("/system.slice/{unit}"));
    while dir.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} still exists after the stop",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

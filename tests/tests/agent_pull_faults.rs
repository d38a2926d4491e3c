//! berthd pulling for its containers through registry faults and onto a full disk (a real
//! systemd booted in namespaces; Debian's docker-registry and the fault-injecting proxy in the
//! namespace's network): the wait is reported in `berth status` and `STATUS=`, a full store fails
//! the pull clearly and recovers once freed, a container filling the disk gets ENOSPC alone.

use berth_tests::agent::{Agent, IMAGE};
use berth_tests::docker::{REG, registry_inside};
use berth_tests::registry::{CutProxy, Layout, random_bytes};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// The fault proxy in the namespace's network: the thread that makes its sockets joined it
/// (threads it starts inherit that).
fn proxy_inside(a: &Agent, upstream: u16) -> CutProxy {
    let pid = a.sd.pid();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        CutProxy::start(upstream, u64::MAX)
    })
    .join()
    .unwrap()
}

fn inside(a: &Agent, argv: &[&str]) -> String {
    let out = a.sd.exec_inside(argv).unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn message(a: &Agent, name: &str) -> String {
    a.ps()
        .ok()
        .and_then(|m| m.get(name)?["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, real registry"]
fn agent_pull_waits_out_registry_errors_and_says_why() {
    let a = Agent::start("hreg-wait").unwrap();
    registry_inside(&a, REG, false);
    let proxy = proxy_inside(&a, 5000);
    let host = format!("127.0.0.1:{}", proxy.port);
    std::fs::write(
        a.sd.share_dir().join("berthd.yaml"),
        format!(
            "registries:\n  insecure: [\"{host}\"]\n  retry: {{attempts: 8, backoff: 500ms, max_backoff: 2s}}\n"
        ),
    )
    .unwrap();
    proxy.fail_requests("/blobs/", 503, 4, Some(3));
    a.start_berthd_with(true, Some("/srv/tb/berthd.yaml"))
        .unwrap();
    a.write(
        "web",
        &format!(
            "image: {host}/tb/busybox:1\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n"
        ),
    );
    let says = format!("registry {host} answered 503, retry");
    a.wait(T, "berth status to say why the pull waits", || {
        message(&a, "web").contains(&says)
    })
    .unwrap();
    let phase = a.ps().unwrap()["web"]["phase"].to_string();
    assert!(phase.contains("pulling"), "{phase}");
    a.wait(
        Duration::from_secs(10),
        "berthd's STATUS= to say why",
        || {
            let status = a.show_unit("berthd.service", "StatusText");
            status.contains("1 pulling") && status.contains(&says)
        },
    )
    .unwrap();
    a.wait(T, "web running once the registry recovered", || {
        a.active("web")
    })
    .unwrap();
    assert_eq!(proxy.faults.status_left.load(Relaxed), 0);
    assert_eq!(proxy.faults.status_sent.lock().unwrap().len(), 4);
    assert_eq!(message(&a, "web"), "", "the wait's message is gone");
    // the pull itself waited it out: no failed pass in between
    let log = inside(&a, &["journalctl", "--no-pager", "-u", "berthd"]);
    assert!(!log.contains("pass failed"), "{log}");
    assert!(log.contains("answered 503, retry 4 of 8"), "{log}");
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, real registry, tmpfs"]
fn agent_full_store_fails_pull_clearly_recovers_and_container_gets_enospc() {
    let a = Agent::start("hreg-full").unwrap();
    registry_inside(&a, REG, false);
    // an image bigger than what is left on the store's filesystem
    let l = Layout::new();
    let bb = std::fs::read("/bin/busybox").expect("busybox-static installed");
    l.image(
        "big",
        "amd64",
        &[
            vec![("bin/busybox", bb)],
            vec![("big", random_bytes(24 << 20))],
        ],
    );
    let share = a.sd.share_dir().join("layout");
    inside_cp(&l.path(), &share);
    inside(
        &a,
        &[
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "oci:/srv/tb/layout:big",
            &format!("docker://{REG}/tb/big:1"),
        ],
    );
    inside(
        &a,
        &[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=16m",
            "tmpfs",
            "/srv/tb/state",
        ],
    );
    std::fs::write(
        a.sd.share_dir().join("berthd.yaml"),
        format!("registries:\n  insecure: [\"{REG}\"]\n  retry: {{attempts: 1, backoff: 100ms}}\n"),
    )
    .unwrap();
    a.start_berthd_with(true, Some("/srv/tb/berthd.yaml"))
        .unwrap();
    let sleeper = format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n"
    );
    a.write("calm", &sleeper);
    a.wait(T, "calm running", || a.active("calm")).unwrap();
    let calm0 = a.show("calm", "InvocationID");

    a.write(
        "big",
        &format!(
            "image: {REG}/tb/big:1\ncommand: [/bin/busybox, sleep, \"3600\"]\nnetwork_mode: none\n"
        ),
    );
    a.wait(T, "the full store reported", || {
        message(&a, "big").contains("image store /srv/tb/state is full")
    })
    .unwrap();
    let m = message(&a, "big");
    assert!(
        m.contains("No space left on device") && m.contains("bytes free"),
        "{m}"
    );
    let leftovers = inside(
        &a,
        &[
            "find",
            "/srv/tb/state/ingest",
            "/srv/tb/state/layers",
            "-maxdepth",
            "1",
            "-name",
            "*",
        ],
    );
    assert!(
        !leftovers.contains(".tmp-"),
        "partial layer left: {leftovers}"
    );
    assert_eq!(
        leftovers.lines().filter(|l| l.contains("/ingest/")).count(),
        0,
        "partial blob left: {leftovers}"
    );
    assert!(a.active("calm"));
    assert_eq!(a.show("calm", "InvocationID"), calm0, "calm was restarted");

    // space freed: berthd's next pass pulls and starts it
    inside(&a, &["mount", "-o", "remount,size=160m", "/srv/tb/state"]);
    a.wait(T, "big running once space is freed", || a.active("big"))
        .unwrap();

    // a container filling the disk with its writes gets ENOSPC; the others and berthd go on
    a.write(
        "filler",
        &format!(
            "image_file: {IMAGE}\ncommand: [sh, -c, \"dd if=/dev/zero of=/fill bs=1M count=400; echo dd-exit=$?; sleep 3600\"]\nnetwork_mode: none\n"
        ),
    );
    a.wait(T, "the filler told of ENOSPC", || {
        let log = inside(
            &a,
            &[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                "-u",
                "berth-filler.service",
            ],
        );
        log.contains("No space left on device") && log.contains("dd-exit=1")
    })
    .unwrap();
    assert!(a.active("filler"), "the container goes on after ENOSPC");
    let out = a.berth(&["--json", "status", "filler"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let disk = v["disk"].as_str().unwrap_or_default();
    assert!(
        disk.contains("/srv/tb/state") && disk.contains("No space left on device"),
        "berth status says the disk is full: {v}"
    );
    let text = a.berth(&["status", "calm"]).unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("problem:     the filesystem of its writable layer"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    assert!(a.active("calm") && a.active("big"));
    assert_eq!(a.show("calm", "InvocationID"), calm0);
    assert_eq!(
        a.phase("calm"),
        "running",
        "berthd answers with the disk full"
    );
    // removing it frees its upper dir
    a.rm("filler");
    a.wait(T, "filler gone and its space back", || {
        !a.active("filler")
            && inside(&a, &["df", "--output=avail", "-B1M", "/srv/tb/state"])
                .lines()
                .last()
                .and_then(|l| l.trim().parse::<u64>().ok())
                .is_some_and(|mb| mb > 100)
    })
    .unwrap();
    let out = a.berth(&["--json", "status", "calm"]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["disk"].is_null(), "space is back: {v}");
}

/// Copies a host directory into the share directory (visible inside as /srv/tb/…).
fn inside_cp(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

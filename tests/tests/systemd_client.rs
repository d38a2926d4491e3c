//! The systemd client (berth_agent::systemd) against a real systemd booted in private namespaces.

use berth_agent::systemd::{BusTarget, KillWho, Systemd, SystemdError, UnitEvent, UnitSpec};
use berth_tests::systemd::TestSystemd;
use std::time::Duration;

async fn client(sd: &TestSystemd) -> Systemd {
    Systemd::connect(BusTarget::Address(sd.address()))
        .await
        .expect("connect to the test systemd")
        .with_journal_dir(sd.journal_dir().unwrap())
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces"]
async fn systemd_client_failed_start_reports_result_and_logs() {
    let sd = TestSystemd::boot("client-fail").unwrap();
    let sys = client(&sd).await;
    assert!(sys.list_units().await.unwrap().is_empty());
    let mut spec = UnitSpec::new(
        "failing",
        "example/none:1",
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo dying-now; exit 7".into(),
        ],
    );
    spec.spec_hash = "h-fail".into();
    let err = sys.start_unit(&spec).await.unwrap_err();
    match &err {
        SystemdError::JobFailed {
            result,
            exit_status,
            logs,
            ..
        } => {
            assert_eq!(result, "failed");
            assert_eq!(*exit_status, 7);
            assert!(logs.iter().any(|l| l.contains("dying-now")), "{logs:?}");
        }
        e => panic!("unexpected error {e}"),
    }
    let st = sys.status("berth-failing.service").await.unwrap().unwrap();
    assert_eq!(st.active_state, "failed");
    assert_eq!(st.spec_hash(), Some("h-fail"));
    // The same name can be started again: the failed leftover is reset.
    let err = sys.start_unit(&spec).await.unwrap_err();
    assert!(matches!(err, SystemdError::JobFailed { .. }), "{err}");
    sys.reset_failed("berth-failing.service").await.unwrap();
    assert!(sys.status("berth-failing.service").await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs root: boots systemd in namespaces"]
async fn systemd_client_events_survive_daemon_reexec() {
    let sd = TestSystemd::boot("client-events").unwrap();
    let sys = client(&sd).await;
    let mut events = sys.events();
    assert_eq!(next(&mut events).await, UnitEvent::Resync);
    sd.systemctl(&["daemon-reexec"]).unwrap();
    // After the re-exec the stream tells us to relist, and keeps delivering events.
    wait_for(&mut events, |e| *e == UnitEvent::Resync).await;
    let spec = UnitSpec::new("after-reexec", "example/none:1", vec!["/bin/false".into()]);
    let _ = sys.start_unit(&spec).await;
    wait_for(&mut events, |e| {
        matches!(e, UnitEvent::Changed { unit, active_state: Some(s), .. } if unit == "berth-after-reexec.service" && s == "failed")
    })
    .await;
    sys.kill_unit("berth-after-reexec.service", KillWho::All, 9)
        .await
        .ok();
}

async fn next(ev: &mut berth_agent::systemd::UnitEvents) -> UnitEvent {
    tokio::time::timeout(Duration::from_secs(20), ev.next())
        .await
        .expect("event in time")
        .expect("stream open")
}

async fn wait_for(ev: &mut berth_agent::systemd::UnitEvents, f: impl Fn(&UnitEvent) -> bool) {
    loop {
        let e = next(ev).await;
        if f(&e) {
            return;
        }
    }
}

/// The client over systemd's private socket (peer to peer, no bus daemon), run inside the test
/// systemd's namespaces (systemd refuses peers from other PID namespaces there): start, status,
/// list, stop, and the event stream, checked against `systemctl` inside.
#[test]
#[ignore = "needs root: boots systemd in namespaces"]
fn systemd_client_private_socket() {
    // Built with this test; the namespace sees the target dir at the same path.
    let client = env!("CARGO_BIN_EXE_sd-private-client");
    let sd = TestSystemd::boot("client-private").unwrap();
    let name = format!("private-{}", std::process::id());
    let unit = format!("berth-{name}.service");
    // Type=notify: READY=1 must come from the main process itself.
    let ready = "import os, socket, time\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        a = os.environ['NOTIFY_SOCKET']\n\
        s.connect('\\0' + a[1:] if a.startswith('@') else a)\n\
        s.send(b'READY=1')\n\
        time.sleep(300)\n";
    let out = sd
        .exec_inside(&[
            client,
            "/run/systemd/private",
            &name,
            "/usr/bin/python3",
            "-c",
            ready,
        ])
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} line in {stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(line("first-event"), ["Some(Resync)"]);
    let started = line("started");
    assert_eq!(started[..2], ["active", "running"], "{stdout}");
    assert!(started[2].parse::<u32>().unwrap() > 1, "{stdout}");
    assert_eq!(line("listed"), ["true"]);
    assert_eq!(line("stopped"), ["gone"], "{stdout}");
    let events = line("events").join("");
    assert!(events.contains("active"), "{stdout}");
    assert!(events.ends_with("inactive"), "{stdout}");
    // systemd agrees: the unit ran (its journal says so) and is gone now.
    let shown = sd.systemctl(&["show", "-P", "ActiveState", &unit]).unwrap();
    assert_eq!(shown.trim(), "inactive");
    let listed = sd
        .systemctl(&["list-units", "--all", "--plain", "--no-legend", "berth-*"])
        .unwrap();
    assert!(!listed.contains(&unit), "{listed}");
}

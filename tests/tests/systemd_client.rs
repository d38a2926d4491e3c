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

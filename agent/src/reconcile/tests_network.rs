//! `network_mode: container:<name>` in the reconcile pass, against the fakes: the joiner waits
//! for its target, is refused a target without a namespace to share, and is restarted when
//! berthd restarts its target.

use super::decide::Decision;
use super::status::Phase;
use super::tests::env;
use super::{Action, decide};
use std::time::Duration;

#[tokio::test]
async fn a_joiner_waits_for_its_target_then_follows_its_restarts() {
    let e = env();
    e.write("b", "image: busybox\nnetwork_mode: container:a\n");
    assert_eq!(e.pass("b").await, Action::Requeue(Duration::from_secs(1)));
    assert!(matches!(
        e.ctx.board.get("b").unwrap().phase,
        Phase::Waiting { ref on } if on == "a"
    ));
    e.write("a", "image: busybox\n");
    e.pass("a").await;
    e.pass("b").await;
    assert_eq!(e.calls(), vec!["start a", "start b"]);
    // Ordered after its target and bound to it, like depends_on.
    e.pass("b").await;
    assert_eq!(e.calls(), vec!["start a", "start b"], "b is up to date");
    // berthd restarts a: b is stopped first (its namespace goes with a's run) and started
    // again once a runs.
    e.ctx.request_restart("a");
    e.pass("a").await;
    assert!(matches!(
        decide(&e.ctx, "b").await.unwrap(),
        Decision::Restart { .. }
    ));
    e.pass("b").await;
    assert_eq!(
        e.calls(),
        vec![
            "start a", "start b", "stop b", "stop a", "start a", "start b"
        ]
    );
    // Held stopped (`berth stop a`): b goes first; `berth start a` brings both back.
    e.ctx.hold_stopped("a", true).unwrap();
    e.pass("a").await;
    assert_eq!(e.calls()[6..], ["stop b", "stop a"]);
    assert!(matches!(
        decide(&e.ctx, "b").await.unwrap(),
        Decision::Wait { .. }
    ));
    e.ctx.hold_stopped("a", false).unwrap();
    e.ctx.request_restart("a");
    e.pass("a").await;
    e.pass("b").await;
    assert_eq!(e.calls()[8..], ["start a", "start b"]);
}

#[tokio::test]
async fn a_target_without_a_namespace_to_share_is_refused() {
    let e = env();
    for mode in ["host", "none"] {
        e.write("a", &format!("image: busybox\nnetwork_mode: {mode}\n"));
        e.write("b", "image: busybox\nnetwork_mode: container:a\n");
        e.pass("a").await;
        let d = decide(&e.ctx, "b").await.unwrap();
        let Decision::Invalid { error } = d else {
            panic!("{d:?}")
        };
        assert!(error.contains(&format!("network_mode: {mode}")), "{error}");
    }
}

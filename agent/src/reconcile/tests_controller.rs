//! Scheduling tests against the fakes, with tokio's paused clock: debounce, no overlap, relist,
//! and the error policy (transient failures back off to a cap, permanent ones wait for a change).

use super::controller::{self, AfterPass, Options, Trigger, after_pass};
use super::fakes::FakeUnits;
use super::status::Phase;
use super::tests::{Env, env, env_with};
use super::{Action, Persistence};
use crate::systemd::SystemdError;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

fn spawn(
    e: &Env,
    opts: Options,
) -> (
    mpsc::UnboundedSender<Trigger>,
    watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (rtx, rrx) = watch::channel(false);
    let h = tokio::spawn(controller::run(e.ctx.clone(), rx, opts, rtx));
    (tx, rrx, h)
}

#[tokio::test(start_paused = true)]
async fn controller_debounces_and_never_overlaps() {
    let units = FakeUnits {
        start_delay: Duration::from_millis(500),
        ..Default::default()
    };
    let e = env_with(units);
    for i in 0..5 {
        e.write(&format!("c{i}"), "image: busybox\n");
    }
    let (tx, mut ready, h) = spawn(&e, Options::default());
    ready.wait_for(|r| *r).await.unwrap();
    assert_eq!(e.calls().len(), 5);
    // A burst of triggers for one name while it is being replaced: one more pass, never two at once.
    e.write("c0", "image: busybox\ncommand: a\n");
    for _ in 0..10 {
        tx.send(Trigger::Name("c0".into())).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        e.calls().iter().filter(|c| c.ends_with("c0")).count(),
        3,
        "{:?}",
        e.calls()
    );
    drop(tx);
    h.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failing_pull_backs_off_then_succeeds() {
    let e = env();
    *e.ctx.images.failing_pulls.lock().unwrap() = 3;
    e.write("web", "image: nginx\n");
    let (tx, mut ready, h) = spawn(&e, Options::default());
    ready.wait_for(|r| *r).await.unwrap();
    assert_eq!(e.ctx.board.get("web").unwrap().phase, Phase::Error);
    // Pulls at 0 s, then after 1 s, 2 s, 4 s of backoff.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(e.ctx.images.pulls.lock().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(e.ctx.images.pulls.lock().unwrap().len(), 4);
    assert_eq!(e.calls(), vec!["start web"]);
    assert_eq!(e.ctx.board.get("web").unwrap().phase, Phase::Running);
    drop(tx);
    h.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn relist_finds_deletes_missed_by_events() {
    let e = env();
    e.write("a", "image: busybox\n");
    e.write("b", "image: busybox\n");
    let (tx, mut ready, h) = spawn(&e, Options::default());
    ready.wait_for(|r| *r).await.unwrap();
    e.rm("b");
    // No event for the delete (overflow); the resync finds it.
    tx.send(Trigger::All).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut calls = e.calls();
    assert_eq!(calls.pop().unwrap(), "stop b");
    calls.sort();
    assert_eq!(calls, vec!["start a", "start b"]);
    drop(tx);
    h.await.unwrap();
}

#[test]
fn error_policy_is_a_pure_decision() {
    let opts = Options {
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        ..Default::default()
    };
    let s = Duration::from_secs;
    assert_eq!(
        after_pass(Ok(Action::AwaitChange), 3, &opts),
        AfterPass::Idle
    );
    assert_eq!(
        after_pass(Ok(Action::Requeue(s(7))), 3, &opts),
        AfterPass::RunIn(s(7))
    );
    let transient = |n| after_pass(Err(Persistence::Transient), n, &opts);
    assert_eq!(transient(0), AfterPass::RunIn(s(1)));
    assert_eq!(transient(1), AfterPass::RunIn(s(2)));
    assert_eq!(transient(5), AfterPass::RunIn(s(32)));
    assert_eq!(transient(6), AfterPass::RunIn(s(60)), "capped");
    assert_eq!(transient(u32::MAX), AfterPass::RunIn(s(60)), "no overflow");
    assert_eq!(
        after_pass(Err(Persistence::Permanent), 0, &opts),
        AfterPass::Park
    );
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_to_the_cap() {
    let e = env();
    *e.ctx.images.failing_pulls.lock().unwrap() = 100;
    e.write("web", "image: nginx\n");
    let opts = Options {
        backoff_max: Duration::from_secs(2),
        ..Default::default()
    };
    let (tx, mut ready, h) = spawn(&e, opts);
    ready.wait_for(|r| *r).await.unwrap();
    // Pulls at 0 s, 1 s, then every 2 s: 3, 5, 7, 9.
    tokio::time::sleep(Duration::from_millis(9_500)).await;
    assert_eq!(e.ctx.images.pulls.lock().unwrap().len(), 6);
    let st = e.ctx.board.get("web").unwrap();
    assert_eq!(st.phase, Phase::Error);
    assert!(st.message.unwrap().contains("connection refused"));
    drop(tx);
    h.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_waits_for_its_spec_to_change() {
    let e = env();
    let rejected = || SystemdError::Invalid("systemd rejects this unit".into());
    e.ctx
        .units
        .failing_starts
        .lock()
        .unwrap()
        .extend([rejected(), rejected()]);
    e.write("web", "image: busybox\nrestart: always\n");
    let starts = || e.calls().iter().filter(|c| *c == "start web").count();
    let (tx, mut ready, h) = spawn(&e, Options::default());
    ready.wait_for(|r| *r).await.unwrap();
    assert_eq!(starts(), 1);
    let st = e.ctx.board.get("web").unwrap();
    assert_eq!(st.phase, Phase::Error);
    assert!(st.message.unwrap().contains("not retried"));
    // Neither time, nor its unit's events, nor a resync run it again...
    tx.send(Trigger::Name("web".into())).unwrap();
    tx.send(Trigger::All).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(starts(), 1, "{:?}", e.calls());
    // ...an explicit request does (and fails again)...
    tx.send(Trigger::Now("web".into())).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(starts(), 2, "{:?}", e.calls());
    tx.send(Trigger::All).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(starts(), 2, "{:?}", e.calls());
    // ...and so does a change of its spec file.
    e.write("web", "image: busybox\nrestart: always\ncommand: [a]\n");
    tx.send(Trigger::Name("web".into())).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(starts(), 3, "{:?}", e.calls());
    assert_eq!(e.ctx.board.get("web").unwrap().phase, Phase::Running);
    drop(tx);
    h.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn permanent_failure_waits_for_its_image_archive_to_change() {
    let e = env();
    let archive = e.spec_dir.join("../web.tar");
    std::fs::write(&archive, "v1").unwrap();
    let key = archive.display().to_string();
    e.ctx
        .images
        .present
        .lock()
        .unwrap()
        .insert(key, "sha256:a1".into());
    e.ctx
        .units
        .failing_starts
        .lock()
        .unwrap()
        .push(SystemdError::Invalid("systemd rejects this unit".into()));
    e.write(
        "web",
        &format!("image_file: {}\nrestart: always\n", archive.display()),
    );
    let starts = || e.calls().iter().filter(|c| *c == "start web").count();
    let (tx, mut ready, h) = spawn(&e, Options::default());
    ready.wait_for(|r| *r).await.unwrap();
    assert_eq!(starts(), 1);
    tx.send(Trigger::All).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(starts(), 1, "{:?}", e.calls());
    // A new archive (the spec file unchanged): its watch or the resync runs it again.
    std::fs::write(&archive, "v2, longer").unwrap();
    tx.send(Trigger::All).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(starts(), 2, "{:?}", e.calls());
    drop(tx);
    h.await.unwrap();
}

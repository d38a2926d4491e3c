//! Decision and scheduling tests against the fakes, with tokio's paused clock.

use super::controller::{self, Options, Trigger};
use super::fakes::{FakeImages, FakeUnits};
use super::status::Phase;
use super::*;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

struct Env {
    _dir: tempfile::TempDir,
    ctx: Arc<Ctx<FakeUnits, FakeImages>>,
    spec_dir: PathBuf,
}

fn env_with(units: FakeUnits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let settings = Settings {
        spec_dir: d.join("etc"),
        api_spec_dir: d.join("api"),
        state_dir: d.join("state"),
        bundle_dir: d.join("run"),
        volumes_dir: d.join("volumes"),
        shim: "/usr/bin/berth-shim".into(),
    };
    std::fs::create_dir_all(&settings.spec_dir).unwrap();
    let images = FakeImages {
        root: d.join("store"),
        ..Default::default()
    };
    images
        .present
        .lock()
        .unwrap()
        .insert("busybox".into(), "sha256:b1".into());
    images
        .registry
        .lock()
        .unwrap()
        .insert("nginx".into(), "sha256:n1".into());
    let spec_dir = settings.spec_dir.clone();
    Env {
        _dir: dir,
        ctx: Arc::new(Ctx::new(units, images, settings)),
        spec_dir,
    }
}

fn env() -> Env {
    env_with(FakeUnits::default())
}

impl Env {
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.spec_dir.join(format!("{name}.yaml")), text).unwrap();
    }
    fn rm(&self, name: &str) {
        std::fs::remove_file(self.spec_dir.join(format!("{name}.yaml"))).unwrap();
    }
    async fn pass(&self, name: &str) -> Action {
        reconcile(&self.ctx, name).await.unwrap()
    }
    fn calls(&self) -> Vec<String> {
        self.ctx.units.calls()
    }
    fn hash(&self, name: &str) -> Option<String> {
        self.ctx
            .units
            .units
            .lock()
            .unwrap()
            .get(name)
            .and_then(|u| u.hash.clone())
    }
}

#[tokio::test]
async fn new_spec_starts_once_and_is_then_left_alone() {
    let e = env();
    e.write("web", "image: busybox\n");
    assert_eq!(e.pass("web").await, Action::AwaitChange);
    assert_eq!(e.calls(), vec!["start web"]);
    assert!(e.ctx.settings.bundle_dir.join("web/config.json").exists());
    assert_eq!(e.ctx.board.get("web").unwrap().phase, Phase::Running);
    // Touching or reformatting the file changes nothing.
    e.write("web", "# same\nimage:   busybox\n");
    e.pass("web").await;
    e.pass("web").await;
    assert_eq!(e.calls(), vec!["start web"]);
}

#[tokio::test]
async fn edit_replaces_only_that_container() {
    let e = env();
    e.write("web", "image: busybox\n");
    e.write("db", "image: busybox\n");
    e.pass("web").await;
    e.pass("db").await;
    let old = e.hash("web").unwrap();
    e.write("web", "image: busybox\nenvironment: {A: 1}\n");
    e.pass("web").await;
    e.pass("db").await;
    assert_eq!(
        e.calls(),
        vec!["start web", "start db", "stop web", "start web"]
    );
    assert_ne!(e.hash("web").unwrap(), old);
    assert_eq!(e.ctx.images.released.lock().unwrap().as_slice(), ["web"]);
}

#[tokio::test]
async fn env_file_change_restarts() {
    let e = env();
    let envf = e.ctx.settings.state_dir.parent().unwrap().join("web.env");
    std::fs::write(&envf, "A=1\n").unwrap();
    e.write(
        "web",
        &format!("image: busybox\nenv_file: {}\n", envf.display()),
    );
    e.pass("web").await;
    e.pass("web").await;
    assert_eq!(e.calls().len(), 1);
    std::fs::write(&envf, "A=2\n").unwrap();
    e.pass("web").await;
    assert_eq!(e.calls(), vec!["start web", "stop web", "start web"]);
    // An unreadable env file: reported, unit left alone.
    std::fs::remove_file(&envf).unwrap();
    e.pass("web").await;
    assert_eq!(e.calls().len(), 3);
    assert_eq!(e.ctx.board.get("web").unwrap().phase, Phase::Invalid);
}

#[tokio::test]
async fn delete_stops_and_cleans() {
    let e = env();
    e.write("web", "image: busybox\n");
    e.pass("web").await;
    e.rm("web");
    e.pass("web").await;
    assert_eq!(e.calls(), vec!["start web", "stop web"]);
    assert!(!e.ctx.settings.bundle_dir.join("web").exists());
    assert!(!e.ctx.settings.state_dir.join("web.json").exists());
    assert!(e.ctx.board.get("web").is_none());
}

#[tokio::test]
async fn all_names_covers_specs_units_and_records() {
    let e = env();
    e.write("a", "image: busybox\n");
    e.pass("a").await;
    e.write("b", "image: busybox\n");
    e.ctx.units.insert("c", "sha256:x", "active");
    std::fs::write(e.ctx.settings.state_dir.join("d.json"), "{}").unwrap();
    assert_eq!(e.ctx.all_names().await.unwrap(), vec!["a", "b", "c", "d"]);
}

#[tokio::test]
async fn unit_without_spec_is_stopped() {
    let e = env();
    e.ctx.units.insert("orphan", "sha256:x", "active");
    e.pass("orphan").await;
    assert_eq!(e.calls(), vec!["stop orphan"]);
}

#[tokio::test]
async fn malformed_file_leaves_running_unit_alone() {
    let e = env();
    e.write("web", "image: busybox\n");
    e.pass("web").await;
    let h = e.hash("web");
    e.write("web", "image: busybox\nmem_limt: 1G\n");
    e.pass("web").await;
    assert_eq!(e.calls(), vec!["start web"]);
    assert_eq!(e.hash("web"), h);
    let st = e.ctx.board.get("web").unwrap();
    assert_eq!(st.phase, Phase::Invalid);
    assert!(st.message.unwrap().contains("did you mean `mem_limit`"));
}

#[tokio::test]
async fn agent_restart_adopts_units() {
    let e = env();
    e.write("web", "image: busybox\n");
    e.pass("web").await;
    // A new berthd (fresh board) over the same systemd: nothing restarts.
    let e2 = Ctx::new(
        FakeUnits::default(),
        FakeImages::default(),
        e.ctx.settings.clone(),
    );
    e2.images
        .present
        .lock()
        .unwrap()
        .insert("busybox".into(), "sha256:b1".into());
    e2.units.insert("web", &e.hash("web").unwrap(), "active");
    reconcile(&e2, "web").await.unwrap();
    assert!(e2.units.calls().is_empty());
    assert_eq!(e2.board.get("web").unwrap().phase, Phase::Running);
}

#[tokio::test]
async fn restart_request_restarts_once() {
    let e = env();
    e.write("web", "image: busybox\n");
    e.pass("web").await;
    e.ctx.request_restart("web");
    e.pass("web").await;
    e.pass("web").await;
    assert_eq!(e.calls(), vec!["start web", "stop web", "start web"]);
}

#[tokio::test]
async fn missing_image_is_pulled_first() {
    let e = env();
    e.write("web", "image: nginx\n");
    e.pass("web").await;
    assert_eq!(e.ctx.images.pulls.lock().unwrap().as_slice(), ["nginx"]);
    assert_eq!(e.calls(), vec!["start web"]);
    e.pass("web").await;
    assert_eq!(e.ctx.images.pulls.lock().unwrap().len(), 1);
    // pull_policy never with no image: reported, nothing started.
    e.write("db", "image: nothere\npull_policy: never\n");
    e.pass("db").await;
    assert_eq!(e.ctx.board.get("db").unwrap().phase, Phase::Invalid);
}

#[tokio::test]
async fn finished_job_is_not_rerun() {
    let units = FakeUnits::default();
    units.oneshot.lock().unwrap().insert("job".into());
    let e = env_with(units);
    e.write("job", "image: busybox\ncommand: [echo, hi]\n");
    e.pass("job").await;
    e.pass("job").await;
    assert_eq!(e.calls(), vec!["start job"]);
    assert_eq!(e.ctx.board.get("job").unwrap().phase, Phase::Exited);
    // A changed job runs again.
    e.write("job", "image: busybox\ncommand: [echo, bye]\n");
    e.pass("job").await;
    assert_eq!(e.calls(), vec!["start job", "start job"]);
}

#[tokio::test]
async fn dependency_waits_for_healthy() {
    let e = env();
    e.write(
        "db",
        "image: busybox\nreadiness: healthy\nhealthcheck: {test: 'true'}\n",
    );
    e.write(
        "app",
        "image: busybox\ndepends_on: {db: {condition: service_healthy}}\n",
    );
    assert_eq!(e.pass("app").await, Action::Requeue(Duration::from_secs(1)));
    assert!(matches!(
        e.ctx.board.get("app").unwrap().phase,
        Phase::Waiting { .. }
    ));
    e.pass("db").await;
    e.pass("app").await;
    assert_eq!(e.calls(), vec!["start db", "start app"]);
    // service_healthy on a dependency without `readiness: healthy` is explained, not guessed.
    e.write("db2", "image: busybox\n");
    e.write(
        "app2",
        "image: busybox\ndepends_on: {db2: {condition: service_healthy}}\n",
    );
    e.pass("db2").await;
    e.pass("app2").await;
    assert!(
        e.ctx
            .board
            .get("app2")
            .unwrap()
            .message
            .unwrap()
            .contains("readiness: healthy")
    );
}

#[tokio::test]
async fn decide_reports_without_acting() {
    let e = env();
    e.write("web", "image: busybox\n");
    e.write("new", "image: nginx\n");
    assert!(matches!(
        decide(&e.ctx, "web").await.unwrap(),
        Decision::Start { .. }
    ));
    assert!(matches!(
        decide(&e.ctx, "new").await.unwrap(),
        Decision::Pull { .. }
    ));
    e.pass("web").await;
    assert!(matches!(
        decide(&e.ctx, "web").await.unwrap(),
        Decision::Nothing { .. }
    ));
    e.write("web", "image: busybox\ncommand: x\n");
    assert!(matches!(
        decide(&e.ctx, "web").await.unwrap(),
        Decision::Replace { .. }
    ));
    assert_eq!(e.calls(), vec!["start web"]);
    assert!(e.ctx.images.pulls.lock().unwrap().is_empty());
}

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

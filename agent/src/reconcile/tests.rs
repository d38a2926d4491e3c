//! Decision and scheduling tests against the fakes, with tokio's paused clock.

use super::execute::reconcile_traced;
use super::fakes::{FakeImages, FakeUnits};
use super::status::Phase;
use super::*;
use crate::spec::effective::Inputs;
use crate::systemd::{ActiveState, SystemdError};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) struct Env {
    _dir: tempfile::TempDir,
    pub(super) ctx: Arc<Ctx<FakeUnits, FakeImages>>,
    pub(super) spec_dir: PathBuf,
}

pub(super) fn env_with(units: FakeUnits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let settings = Settings {
        spec_dir: d.join("etc"),
        api_spec_dir: d.join("api"),
        state_dir: d.join("state"),
        bundle_dir: d.join("run"),
        volumes_dir: d.join("volumes"),
        network: None,
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

pub(super) fn env() -> Env {
    env_with(FakeUnits::default())
}

impl Env {
    pub(super) fn write(&self, name: &str, text: &str) {
        std::fs::write(self.spec_dir.join(format!("{name}.yaml")), text).unwrap();
    }
    pub(super) fn rm(&self, name: &str) {
        std::fs::remove_file(self.spec_dir.join(format!("{name}.yaml"))).unwrap();
    }
    pub(super) async fn pass(&self, name: &str) -> Action {
        reconcile(&self.ctx, name).await.unwrap()
    }
    pub(super) fn calls(&self) -> Vec<String> {
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
async fn a_start_systemd_refused_is_tried_again_not_taken_for_a_finished_job() {
    let e = env();
    // The system bus refuses a call when a connection has too many pending replies.
    e.ctx
        .units
        .failing_starts
        .lock()
        .unwrap()
        .push(SystemdError::Call {
            method: "StartTransientUnit",
            object: "berth-job.service".into(),
            source: zbus::Error::Failure("org.freedesktop.DBus.Error.LimitsExceeded".into()),
        });
    e.write("job", "image: busybox\ncommand: [echo, hi]\n");
    assert!(reconcile(&e.ctx, "job").await.is_err());
    assert!(e.ctx.record("job").is_none());
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

#[tokio::test]
async fn seccomp_profile_change_restarts_and_unreadable_profile_is_reported() {
    let e = env();
    let profile = e.ctx.settings.state_dir.parent().unwrap().join("web.json");
    let text = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
    std::fs::write(&profile, text).unwrap();
    e.write(
        "web",
        &format!(
            "image: busybox\nsecurity_opt: [seccomp={}]\n",
            profile.display()
        ),
    );
    e.write("db", "image: busybox\n");
    e.pass("web").await;
    e.pass("db").await;
    let config = |name: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(e.ctx.settings.bundle_dir.join(name).join("config.json")).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        config("web")["linux"]["seccomp"]["syscalls"][0]["names"][0],
        "mkdir"
    );
    // The same bytes written again (a touch): nothing restarts.
    std::fs::write(&profile, text).unwrap();
    e.pass("web").await;
    assert_eq!(e.calls(), vec!["start web", "start db"]);
    // An edit: replaced once, with the new profile.
    std::fs::write(&profile, text.replace("mkdir", "rmdir")).unwrap();
    e.pass("web").await;
    e.pass("web").await;
    assert_eq!(
        e.calls(),
        vec!["start web", "start db", "stop web", "start web"]
    );
    assert_eq!(
        config("web")["linux"]["seccomp"]["syscalls"][0]["names"][0],
        "rmdir"
    );
    // Unreadable, then broken: reported with its path, the unit left alone, the others unaffected.
    let h = e.hash("web");
    std::fs::remove_file(&profile).unwrap();
    e.write("db", "image: busybox\ncommand: x\n");
    e.pass("web").await;
    e.pass("db").await;
    std::fs::write(&profile, "{oops").unwrap();
    e.pass("web").await;
    assert_eq!(e.hash("web"), h);
    let st = e.ctx.board.get("web").unwrap();
    assert_eq!(st.phase, Phase::Invalid);
    let msg = st.message.unwrap();
    assert!(msg.contains(&*profile.to_string_lossy()), "{msg}");
    assert_eq!(
        e.calls(),
        vec![
            "start web",
            "start db",
            "stop web",
            "start web",
            "stop db",
            "start db"
        ]
    );
}

/// Runs a pass after asking `decide`, and checks that the pass carried out what `decide`
/// reported, with the side effects that decision stands for. Returns the decision.
async fn decide_then_pass(e: &Env, name: &str) -> Decision {
    let decided = decide(&e.ctx, name).await.unwrap();
    let had_unit = e.ctx.units.units.lock().unwrap().contains_key(name);
    let (calls, pulls, released) = (
        e.calls().len(),
        e.ctx.images.pulls.lock().unwrap().len(),
        e.ctx.images.released.lock().unwrap().len(),
    );
    let (action, done) = reconcile_traced(&e.ctx, name).await.unwrap();
    assert_eq!(
        done[0], decided,
        "{name}: the pass did not do what diff showed"
    );
    let mut want_calls: Vec<String> = Vec::new();
    let (mut want_pulls, mut want_released) = (0, 0);
    for d in &done {
        match d {
            Decision::Nothing { .. } | Decision::Invalid { .. } | Decision::Wait { .. } => {}
            Decision::Pull { .. } => want_pulls += 1,
            Decision::Start { .. } => want_calls.push(format!("start {name}")),
            Decision::Restart { .. } | Decision::Replace { .. } => {
                if had_unit {
                    want_calls.push(format!("stop {name}"));
                }
                want_calls.push(format!("start {name}"));
                want_released += usize::from(matches!(d, Decision::Replace { .. }));
            }
            Decision::Stop { .. } => {
                if had_unit {
                    want_calls.push(format!("stop {name}"));
                }
                want_released += 1;
            }
            // Its unit stopped; the image and the bundle kept for `berth start`.
            Decision::Hold { .. } => {
                if had_unit {
                    want_calls.push(format!("stop {name}"));
                }
            }
        }
    }
    assert_eq!(e.calls()[calls..], want_calls, "{name}: {done:?}");
    assert_eq!(
        e.ctx.images.pulls.lock().unwrap().len() - pulls,
        want_pulls,
        "{name}: {done:?}"
    );
    assert_eq!(
        e.ctx.images.released.lock().unwrap().len() - released,
        want_released,
        "{name}: {done:?}"
    );
    let want_action = match done.last().unwrap() {
        Decision::Wait { .. } => Action::Requeue(Duration::from_secs(1)),
        _ => Action::AwaitChange,
    };
    assert_eq!(action, want_action, "{name}: {done:?}");
    decided
}

#[tokio::test]
async fn a_pass_does_what_decide_reports() {
    let e = env();
    let kind = |d: &Decision| {
        serde_json::to_value(d).unwrap()["action"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut seen = Vec::new();
    let mut step = async |name: &str, want: &str| {
        let d = decide_then_pass(&e, name).await;
        assert_eq!(kind(&d), want, "{name}: {d:?}");
        seen.push(d);
    };
    e.write("web", "image: busybox\nrestart: always\n");
    step("web", "start").await;
    step("web", "nothing").await;
    e.write("web", "image: busybox\nrestart: always\ncommand: x\n");
    step("web", "replace").await;
    e.ctx.request_restart("web");
    step("web", "restart").await;
    step("web", "nothing").await;
    // systemd gave up on it: started again, as its restart policy asks.
    e.ctx
        .units
        .units
        .lock()
        .unwrap()
        .get_mut("web")
        .unwrap()
        .active_state = ActiveState::Failed;
    step("web", "start").await;
    // Missing image: pulled, then started.
    e.write("pulled", "image: nginx\n");
    step("pulled", "pull").await;
    step("pulled", "nothing").await;
    e.write("never", "image: nothere\npull_policy: never\n");
    step("never", "invalid").await;
    e.write("bad", "image: busybox\nmem_limt: 1G\n");
    step("bad", "invalid").await;
    e.write(
        "noprofile",
        "image: busybox\nsecurity_opt: [seccomp=/nonexistent/profile.json]\n",
    );
    step("noprofile", "invalid").await;
    // A dependent of a container that is not there yet waits for it.
    e.write(
        "app",
        "image: busybox\ndepends_on: {dep: {condition: service_started}}\n",
    );
    step("app", "wait").await;
    e.write("dep", "image: busybox\n");
    step("dep", "start").await;
    step("app", "start").await;
    // A finished job stays finished.
    e.ctx.units.oneshot.lock().unwrap().insert("job".into());
    e.write("job", "image: busybox\n");
    step("job", "start").await;
    step("job", "nothing").await;
    // Held stopped: its unit stopped, then nothing more (not even a pull) until it may run.
    e.ctx.hold_stopped("web", true).unwrap();
    step("web", "hold").await;
    assert!(e.ctx.units.units.lock().unwrap().get("web").is_none());
    assert_eq!(e.ctx.board.get("web").unwrap().phase, Phase::Stopped);
    step("web", "hold").await;
    e.ctx.hold_stopped("web", false).unwrap();
    step("web", "start").await;
    // Gone from the spec dir: its unit stopped; a leftover record alone is removed too.
    e.rm("dep");
    step("dep", "stop").await;
    e.rm("job");
    step("job", "stop").await;
    assert!(!e.ctx.settings.state_dir.join("job.json").exists());
    // Every decision carries its reason.
    for d in &seen {
        let v = serde_json::to_value(d).unwrap();
        let why = v.get("reason").or(v.get("error")).and_then(|r| r.as_str());
        assert!(why.is_some_and(|r| !r.is_empty()), "{v}");
    }
}

#[test]
fn plan_is_pure_over_facts() {
    let spec = |t: &str| SpecFile {
        name: "web".into(),
        path: "/etc/berth/containers/web.yaml".into(),
        spec: crate::spec::parse(std::path::Path::new("/x/web.yaml"), t),
    };
    let image = ResolvedImage {
        digest: "sha256:1".into(),
        config: ImageConfig {
            cmd: Some(vec!["x".into()]),
            ..Default::default()
        },
    };
    let facts = |t: &str, img: ImageState, observed: Option<Observed>| Facts {
        name: "web".into(),
        desired: Some(spec(t)),
        observed,
        record: None,
        restart_requested: false,
        held_stopped: false,
        image: img,
        inputs: Ok(Inputs::default()),
        deps: BTreeMap::new(),
    };
    let unit = |hash: &str| Observed {
        name: "web".into(),
        hash: Some(hash.into()),
        active_state: ActiveState::Active,
        sub_state: "running".into(),
        n_restarts: 0,
    };
    // pull_policy: always pulls once for a container without a unit, and not after the pull.
    let f = facts(
        "image: busybox\npull_policy: always\n",
        ImageState::Local(image.clone()),
        None,
    );
    assert!(matches!(plan(&f).decision, Decision::Pull { .. }));
    let f = Facts {
        image: ImageState::Pulled(image.clone()),
        ..f
    };
    let p = plan(&f);
    let Decision::Start { hash, .. } = &p.decision else {
        panic!("{:?}", p.decision)
    };
    assert_eq!(&p.target.as_ref().unwrap().eff.hash, hash);
    // A unit running that hash is left alone; another hash is replaced.
    let f = facts(
        "image: busybox\npull_policy: always\n",
        ImageState::Local(image.clone()),
        Some(unit(hash)),
    );
    assert!(matches!(plan(&f).decision, Decision::Nothing { .. }));
    let f = Facts {
        observed: Some(unit("sha256:old")),
        ..f
    };
    assert_eq!(
        plan(&f).decision,
        Decision::Replace {
            old_hash: Some("sha256:old".into()),
            hash: hash.clone(),
            reason: "effective spec changed (the spec, its image or a file it names)".into()
        }
    );
    // A file that could not be read makes the spec invalid, with the error as it was.
    let f = Facts {
        inputs: Err("cannot read seccomp profile /p.json: gone".into()),
        ..f
    };
    assert_eq!(
        plan(&f).decision,
        Decision::Invalid {
            error: "cannot read seccomp profile /p.json: gone".into()
        }
    );
}

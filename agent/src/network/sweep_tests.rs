//! Unit tests of the sweep's decision and of its executor on a temporary state directory with a
//! stand-in netavark.

use super::*;

fn lease(addr: &str, holder: Option<&str>, age_s: u64) -> Lease {
    Lease {
        path: PathBuf::from(format!("/s/leases/berth/{addr}")),
        holder: holder.map(str::to_owned),
        age: Duration::from_secs(age_s),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn units(u: &[(&str, ActiveState)]) -> BTreeMap<String, ActiveState> {
    u.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn names(p: &Plan) -> Vec<(&str, Why)> {
    p.stale.iter().map(|s| (s.name.as_str(), s.why)).collect()
}

#[test]
fn nothing_on_the_host_nothing_to_do() {
    assert_eq!(plan(&Facts::default()), Plan::default());
    // Units alone (containers without a network) are not the sweep's business.
    let f = Facts {
        units: units(&[("a", ActiveState::Failed)]),
        ..Default::default()
    };
    assert_eq!(plan(&f), Plan::default());
}

#[test]
fn everything_of_a_container_without_unit_is_stale() {
    let f = Facts {
        netns: set(&["web"]),
        records: set(&["web"]),
        lock_files: set(&["web"]),
        leases: vec![lease("10.87.0.2", Some("web"), 5)],
        ..Default::default()
    };
    let p = plan(&f);
    assert_eq!(
        p.stale,
        vec![Stale {
            name: "web".into(),
            why: Why::NoUnit,
            record: true,
            netns: true,
            leases: vec![PathBuf::from("/s/leases/berth/10.87.0.2")],
        }]
    );
    assert!(p.orphan_leases.is_empty());
}

#[test]
fn a_unit_that_may_run_protects_its_state() {
    for s in [
        ActiveState::Active,
        ActiveState::Activating,
        ActiveState::Deactivating,
        ActiveState::Reloading,
        ActiveState::Maintenance,
        ActiveState::Refreshing,
        ActiveState::Unknown,
    ] {
        let f = Facts {
            netns: set(&["web"]),
            records: set(&["web"]),
            leases: vec![lease("10.87.0.2", Some("web"), 500)],
            units: units(&[("web", s)]),
            ..Default::default()
        };
        assert_eq!(plan(&f), Plan::default(), "{s}");
    }
}

#[test]
fn a_stopped_or_failed_unit_leaves_its_state_stale() {
    for s in [ActiveState::Inactive, ActiveState::Failed] {
        let f = Facts {
            netns: set(&["web"]),
            units: units(&[("web", s)]),
            ..Default::default()
        };
        assert_eq!(names(&plan(&f)), vec![("web", Why::Stopped(s))]);
    }
}

#[test]
fn a_held_lock_protects_even_without_a_unit() {
    // A shim whose unit systemd no longer lists (or that runs outside one) still holds its lock.
    let f = Facts {
        netns: set(&["web"]),
        records: set(&["web"]),
        lock_files: set(&["web"]),
        leases: vec![lease("10.87.0.2", Some("web"), 5)],
        locked: set(&["web"]),
        units: units(&[("web", ActiveState::Failed)]),
        // Even a bundle without network (the spec changed) does not beat a held lock.
        without_network: set(&["web"]),
    };
    assert_eq!(plan(&f), Plan::default());
}

#[test]
fn a_lease_alone_is_stale() {
    // A shim killed between its lease and its namespace leaves only the lease.
    let f = Facts {
        leases: vec![
            lease("10.87.0.2", Some("gone"), 1),
            lease("10.87.0.3", Some("web"), 1),
        ],
        units: units(&[("web", ActiveState::Active)]),
        ..Default::default()
    };
    let p = plan(&f);
    assert_eq!(names(&p), vec![("gone", Why::NoUnit)]);
    assert_eq!(
        p.stale[0].leases,
        vec![PathBuf::from("/s/leases/berth/10.87.0.2")]
    );
    assert!(!p.stale[0].netns && !p.stale[0].record);
}

#[test]
fn only_the_dead_containers_of_many() {
    let f = Facts {
        netns: set(&["a", "b", "c", "d"]),
        records: set(&["a", "b", "d"]),
        lock_files: set(&["a", "b", "c", "d", "e"]),
        leases: vec![
            lease("10.87.0.2", Some("a"), 9),
            lease("10.87.0.3", Some("b"), 9),
            lease("10.87.0.4", Some("c"), 9),
            lease("10.87.0.5", Some("d"), 9),
        ],
        units: units(&[
            ("a", ActiveState::Active),
            ("b", ActiveState::Failed),
            ("c", ActiveState::Activating),
        ]),
        locked: set(&["a", "c"]),
        without_network: BTreeSet::new(),
    };
    let p = plan(&f);
    assert_eq!(
        names(&p),
        vec![
            ("b", Why::Stopped(ActiveState::Failed)),
            ("d", Why::NoUnit),
            ("e", Why::NoUnit),
        ]
    );
    let e = &p.stale[2];
    assert!(!e.netns && !e.record && e.leases.is_empty());
}

#[test]
fn leases_naming_nobody_wait_for_their_grace() {
    let f = Facts {
        leases: vec![
            lease("10.87.0.2", None, 5),
            lease("10.87.0.3", None, ORPHAN_GRACE.as_secs()),
        ],
        ..Default::default()
    };
    let p = plan(&f);
    assert!(p.stale.is_empty());
    assert_eq!(
        p.orphan_leases,
        vec![PathBuf::from("/s/leases/berth/10.87.0.3")]
    );
}

#[test]
fn a_container_with_several_leases_loses_them_all() {
    let f = Facts {
        leases: vec![
            lease("10.87.0.2", Some("web"), 1),
            lease("10.88.0.2", Some("web"), 1),
        ],
        ..Default::default()
    };
    let p = plan(&f);
    assert_eq!(p.stale.len(), 1);
    assert_eq!(p.stale[0].leases.len(), 2);
}

fn paths(d: &Path) -> NetworkPaths {
    NetworkPaths {
        netavark: d.join("netavark"),
        state_dir: d.join("state"),
        aardvark: d.join("aardvark-dns"),
        netns_dir: d.join("netns"),
        declared: crate::config::Config::default().network_sources(),
        default_host_ip: None,
    }
}

/// A stand-in netavark that appends its argv and stdin to `<dir>/calls`.
fn fake_netavark(d: &Path, exit: i32) {
    use std::os::unix::fs::PermissionsExt;
    let calls = d.join("calls");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> {c}\ncat >> {c}\necho >> {c}\nexit {exit}\n",
        c = calls.display()
    );
    std::fs::write(d.join("netavark"), script).unwrap();
    std::fs::set_permissions(d.join("netavark"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[tokio::test]
async fn gathers_then_removes_the_dead_containers_state_only() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    fake_netavark(d.path(), 0);
    let s = &p.state_dir;
    for n in ["dead", "live"] {
        write(&p.netns_dir.join(n), "");
        write(
            &s.join(format!("containers/{n}.json")),
            &format!("{{\"n\":\"{n}\"}}"),
        );
    }
    write(&s.join("leases/berth/10.87.0.2"), "dead");
    write(&s.join("leases/berth/10.87.0.3"), "live");
    write(&s.join("leases/berth/.gone"), "gone");
    // The live one's shim holds its lock (here: this process, through another open file).
    let held = NetworkLock::acquire(s, "live").unwrap();
    let f = gather(&p, &d.path().join("bundles"), BTreeMap::new());
    assert_eq!(f.netns, set(&["dead", "live"]));
    assert_eq!(f.records, set(&["dead", "live"]));
    assert_eq!(f.locked, set(&["live"]));
    assert_eq!(f.leases.len(), 3);
    let removed = execute(&p, plan(&f)).await;
    let by: BTreeMap<_, _> = removed.iter().map(|r| (r.name.as_str(), r)).collect();
    assert_eq!(by.keys().copied().collect::<Vec<_>>(), vec!["dead", "gone"]);
    assert!(by["dead"].errors.is_empty(), "{removed:?}");
    // netavark was asked to tear down with the dead one's options and namespace.
    let calls = std::fs::read_to_string(d.path().join("calls")).unwrap();
    assert!(
        calls.contains(" teardown ") && calls.contains("netns/dead"),
        "{calls}"
    );
    assert!(
        calls.contains("{\"n\":\"dead\"}") && !calls.contains("live"),
        "{calls}"
    );
    assert!(!p.netns_dir.join("dead").exists() && p.netns_dir.join("live").exists());
    assert!(!s.join("containers/dead.json").exists() && s.join("containers/live.json").exists());
    assert!(
        !s.join("leases/berth/10.87.0.2").exists() && s.join("leases/berth/10.87.0.3").exists()
    );
    assert!(!s.join("leases/berth/.gone").exists());
    assert!(!s.join("locks/dead").exists() && s.join("locks/live").exists());
    drop(held);
}

#[tokio::test]
async fn a_failed_teardown_is_reported_and_the_rest_still_removed() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    fake_netavark(d.path(), 3);
    write(&p.netns_dir.join("web"), "");
    write(&p.state_dir.join("containers/web.json"), "{}");
    write(&p.state_dir.join("leases/berth/10.87.0.9"), "web");
    let removed = execute(
        &p,
        plan(&gather(&p, &d.path().join("bundles"), BTreeMap::new())),
    )
    .await;
    assert_eq!(removed.len(), 1);
    assert!(
        removed[0].errors[0].contains("teardown failed"),
        "{removed:?}"
    );
    assert!(!p.netns_dir.join("web").exists());
    assert!(!p.state_dir.join("leases/berth/10.87.0.9").exists());
}

#[tokio::test]
async fn a_lock_taken_after_the_plan_keeps_the_state() {
    // The shim started between the facts and the removal: its lock wins.
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    fake_netavark(d.path(), 0);
    write(&p.netns_dir.join("web"), "");
    let f = gather(&p, &d.path().join("bundles"), BTreeMap::new());
    let held = NetworkLock::acquire(&p.state_dir, "web").unwrap();
    assert!(execute(&p, plan(&f)).await.is_empty());
    assert!(p.netns_dir.join("web").exists());
    drop(held);
}

#[test]
fn a_running_shim_without_a_network_does_not_protect_the_old_state() {
    // Killed on the bridge, then started again with `network_mode: none` (berthd down meanwhile).
    let f = Facts {
        netns: set(&["web", "db"]),
        records: set(&["web", "db"]),
        units: units(&[("web", ActiveState::Active), ("db", ActiveState::Active)]),
        without_network: set(&["web"]),
        ..Default::default()
    };
    assert_eq!(names(&plan(&f)), vec![("web", Why::NotOnTheBridge)]);
}

#[test]
fn a_bundle_without_network_is_read_as_such() {
    let d = tempfile::tempdir().unwrap();
    let p = paths(d.path());
    let b = d.path().join("bundles");
    write(&p.netns_dir.join("none"), "");
    write(&p.netns_dir.join("bridge"), "");
    write(&p.netns_dir.join("nobundle"), "");
    write(
        &b.join("none/shim.json"),
        r#"{"name": "none", "network": null}"#,
    );
    write(
        &b.join("bridge/shim.json"),
        r#"{"name": "bridge", "network": {"netns": "/x"}}"#,
    );
    let f = gather(&p, &b, BTreeMap::new());
    assert_eq!(f.without_network, set(&["none"]));
}

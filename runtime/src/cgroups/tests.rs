//! Unit tests of the cgroup handling: hierarchy resolution over given mountinfo texts, and
//! create, join, apply, kill and destroy against fake hierarchies in temporary directories.

use super::*;

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
";

#[test]
fn hybrid_host_resolves_every_hierarchy() {
    let own = "4:memory:/shim\n3:cpu,cpuacct:/shim\n1:name=systemd:/shim\n0::/shim\n";
    let cg = Cgroup::resolve_with("/a/b", HYBRID, own).unwrap();
    assert!(!cg.v2);
    let names: Vec<_> = cg.dirs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["unified", "systemd", "cpu,cpuacct", "memory"]);
    assert_eq!(cg.dirs[3].path, Path::new("/sys/fs/cgroup/memory/a/b"));
    let rel = Cgroup::resolve_with("ctr", HYBRID, own).unwrap();
    assert_eq!(
        rel.dirs[3].path,
        Path::new("/sys/fs/cgroup/memory/shim/ctr")
    );
    assert_eq!(rel.dirs[2].controllers, ["cpu", "cpuacct"]);
}

#[test]
fn v2_host_resolves_one_directory() {
    let mi = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    let cg = Cgroup::resolve_with("sub/ctr", mi, "0::/system.slice/berth-web.service\n").unwrap();
    assert!(cg.v2);
    assert_eq!(
        cg.dirs[0].path,
        Path::new("/sys/fs/cgroup/system.slice/berth-web.service/sub/ctr")
    );
}

#[test]
fn join_writes_self_to_v1_tasks_and_v2_procs_unless_cloned_into() {
    let t = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let path = t.path().join(name).join("ctr");
        std::fs::create_dir_all(&path).unwrap();
        let file = if name == "unified" {
            "cgroup.procs"
        } else {
            "tasks"
        };
        std::fs::write(path.join(file), "").unwrap();
        Dir {
            name: name.into(),
            controllers: if name == "memory" {
                vec!["memory".into()]
            } else {
                vec![]
            },
            root: t.path().join(name),
            path,
            created_from: None,
        }
    };
    let cg = Cgroup {
        v2: false,
        dirs: vec![dir("unified"), dir("memory")],
    };
    let read = |p: &str| std::fs::read_to_string(t.path().join(p)).unwrap();
    let join = cg.prepare_join().unwrap();
    assert!(
        join.clone_into().is_some(),
        "hybrid: the unified dir is cloned into"
    );
    join.join_self(true).unwrap();
    assert_eq!(read("memory/ctr/tasks"), "0");
    assert_eq!(
        read("unified/ctr/cgroup.procs"),
        "",
        "placed by the clone already"
    );
    // A kernel without CLONE_INTO_CGROUP: the child writes itself into v2 as well.
    join.join_self(false).unwrap();
    assert_eq!(read("unified/ctr/cgroup.procs"), "0");

    // A hierarchy that is gone fails before any clone, naming the file.
    std::fs::remove_file(t.path().join("memory/ctr/tasks")).unwrap();
    let e = cg.prepare_join().unwrap_err().to_string();
    assert!(e.contains("memory/ctr/tasks"), "{e}");
}

#[test]
fn v2_create_apply_destroy_on_a_fake_hierarchy() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    std::fs::write(root.join("cgroup.controllers"), "cpu memory pids io").unwrap();
    std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    let mut cg = Cgroup {
        v2: true,
        dirs: vec![Dir {
            name: String::new(),
            controllers: vec![],
            root: root.clone(),
            path: root.join("unit/ctr"),
            created_from: None,
        }],
    };
    cg.create().unwrap();
    assert_eq!(
        cg.dirs[0].created_from.as_deref(),
        Some(root.join("unit").as_path())
    );
    // What the kernel would provide in the new cgroups.
    std::fs::write(root.join("unit/cgroup.controllers"), "memory pids").unwrap();
    std::fs::write(root.join("unit/cgroup.subtree_control"), "").unwrap();
    for f in [
        "memory.max",
        "pids.max",
        "cgroup.procs",
        "cgroup.freeze",
        "cgroup.events",
    ] {
        std::fs::write(root.join("unit/ctr").join(f), "").unwrap();
    }
    cg.write_resources(&res(r#"{"memory":{"limit":4096},"pids":{"limit":7}}"#))
        .unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("unit/ctr/memory.max"), "4096");
    assert_eq!(read("unit/ctr/pids.max"), "7");
    assert_eq!(read("cgroup.subtree_control"), "+memory +pids");
    assert_eq!(read("unit/cgroup.subtree_control"), "+memory +pids");
    // A process in the cgroup, as the kernel would list it.
    std::fs::write(root.join("unit/ctr/cgroup.procs"), "1234").unwrap();
    assert_eq!(cg.pids().unwrap(), [1234]);
    std::fs::write(
        root.join("unit/ctr/cgroup.events"),
        "populated 1\nfrozen 1\n",
    )
    .unwrap();
    cg.freeze(true).unwrap();
    assert_eq!(read("unit/ctr/cgroup.freeze"), "1");
    // A real cgroup directory is empty to rmdir; clear the fake files first.
    for d in ["unit/ctr", "unit"] {
        for e in std::fs::read_dir(root.join(d)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    cg.destroy().unwrap();
    assert!(!root.join("unit").exists());
}

/// A fake v1 hierarchy per controller in `names`, the container's directory holding `files`.
fn fake_v1(t: &Path, names: &[&str], files: &[&str]) -> Cgroup {
    let dirs = names
        .iter()
        .map(|n| {
            let path = t.join(n).join("ctr");
            std::fs::create_dir_all(&path).unwrap();
            for f in files.iter().filter(|f| f.starts_with(&format!("{n}."))) {
                std::fs::write(path.join(f), "").unwrap();
            }
            Dir {
                name: n.to_string(),
                controllers: vec![n.to_string()],
                root: t.join(n),
                path,
                created_from: None,
            }
        })
        .collect();
    Cgroup { v2: false, dirs }
}

#[test]
fn v1_settings_the_host_cannot_apply_are_errors() {
    let t = tempfile::tempdir().unwrap();
    let files = [
        "devices.allow",
        "devices.deny",
        "blkio.bfq.weight",
        "memory.limit_in_bytes",
    ];
    let cg = fake_v1(t.path(), &["devices", "blkio", "memory"], &files);
    let read = |p: &str| std::fs::read_to_string(t.path().join(p)).unwrap();
    // No `blkio.weight` (BFQ, not CFQ): the weight goes to `blkio.bfq.weight`.
    cg.apply(&res(r#"{"blockIO":{"weight":500}}"#)).unwrap();
    assert_eq!(read("blkio/ctr/blkio.bfq.weight"), "500");
    let e = cg
        .apply(&res(r#"{"unified":{"memory.high":"1"}}"#))
        .unwrap_err();
    assert_eq!(e.to_string(), "cannot use unified on cgroup v1");
    // hugetlb is not mounted: an error, and nothing else written before it.
    let e = cg
        .apply(&res(
            r#"{"memory":{"limit":4096},"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#,
        ))
        .unwrap_err();
    assert!(matches!(e, CgroupError::NoController("hugetlb")), "{e}");
    assert_eq!(read("memory/ctr/memory.limit_in_bytes"), "");
    let e = cg.apply(&res(r#"{"network":{"classID":1}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot set net_cls limit: no net_cls cgroup hierarchy is mounted"
    );
}

#[test]
fn destroy_removes_sub_cgroups_the_container_made_deepest_first() {
    let t = tempfile::tempdir().unwrap();
    let cg = fake_v1(t.path(), &["memory", "pids"], &[]);
    std::fs::create_dir_all(t.path().join("memory/ctr/sub/deeper")).unwrap();
    std::fs::create_dir_all(t.path().join("memory/ctr/other")).unwrap();
    std::fs::create_dir_all(t.path().join("pids/ctr/sub")).unwrap();
    std::fs::write(t.path().join("pids/ctr/sub/cgroup.procs"), "42\n").unwrap();
    std::fs::write(
        t.path().join("memory/ctr/sub/deeper/cgroup.procs"),
        "7\n42\n",
    )
    .unwrap();
    assert_eq!(
        cg.pids().unwrap(),
        [7, 42],
        "processes of sub-cgroups count"
    );
    for f in [
        "pids/ctr/sub/cgroup.procs",
        "memory/ctr/sub/deeper/cgroup.procs",
    ] {
        std::fs::remove_file(t.path().join(f)).unwrap();
    }
    cg.destroy().unwrap();
    assert!(!t.path().join("memory/ctr").exists());
    assert!(!t.path().join("pids/ctr").exists());
    assert!(t.path().join("pids").exists());
}

#[test]
fn destroy_leaves_a_created_parent_that_others_use_now() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let mut cg = Cgroup {
        v2: false,
        dirs: vec![Dir {
            name: "blkio".into(),
            controllers: vec!["blkio".into()],
            root: root.clone(),
            path: root.join("system.slice/a.service/container"),
            created_from: None,
        }],
    };
    cg.create().unwrap();
    assert_eq!(
        cg.dirs[0].created_from.as_deref(),
        Some(root.join("system.slice").as_path())
    );
    // Another container's cgroup appeared under the shared parent meanwhile.
    std::fs::create_dir_all(root.join("system.slice/b.service/container")).unwrap();
    let t0 = Instant::now();
    cg.destroy().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(!root.join("system.slice/a.service").exists());
    assert!(root.join("system.slice/b.service/container").exists());
}

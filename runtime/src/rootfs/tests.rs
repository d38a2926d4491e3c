//! Unit tests of the mount plan, against the recording fake kernel.

use super::*;
use crate::syscall::Recorder;

fn spec_json(extra_mounts: &str) -> Spec {
    let s = format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs","readonly":true}},
        "mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},
          {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755"]}},
          {{"destination":"/dev/pts","type":"devpts","source":"devpts","options":["newinstance","ptmxmode=0666"]}}
          {extra_mounts}],
        "linux":{{"maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"]}}}}"#
    );
    serde_json::from_str(&s).unwrap()
}

#[test]
fn mount_plan_in_order_with_devices_and_links() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(t.path().join("hosts"), "x").unwrap();
    let spec = spec_json(
        r#",{"destination":"/etc/hosts","type":"bind","source":"hosts","options":["rbind","ro"]}"#,
    );
    let rec = Recorder {
        strip: Some(t.path().to_path_buf()),
        ..Default::default()
    };
    let ctx = RootfsContext {
        sys: &rec,
        bundle: t.path(),
        rootfs: &rootfs,
        spec: &spec,
        in_user_ns: false,
        cgroups: &[],
        bind_sources: &[],
    };
    ctx.prepare().unwrap();
    let calls = rec.calls.borrow().clone();
    let mounts: Vec<&str> = calls
        .iter()
        .filter(|c| c.starts_with("mount"))
        .map(String::as_str)
        .collect();
    assert_eq!(mounts[0], "mount - / - REC|SLAVE -");
    assert_eq!(mounts[1], "mount /rootfs /rootfs - BIND|REC -");
    assert_eq!(mounts[2], "mount proc /rootfs/proc proc - -");
    assert_eq!(
        mounts[3],
        "mount tmpfs /rootfs/dev tmpfs NOSUID|STRICTATIME mode=755"
    );
    assert_eq!(
        mounts[4],
        "mount devpts /rootfs/dev/pts devpts - newinstance,ptmxmode=0666"
    );
    assert_eq!(mounts[5], "mount /hosts /rootfs/etc/hosts - BIND|REC -");
    assert_eq!(
        mounts[6],
        "mount /hosts /rootfs/etc/hosts - RDONLY|REMOUNT|BIND -"
    );
    assert!(calls.contains(&"mknod /rootfs/dev/null c 1:3 666".to_string()));
    assert!(calls.contains(&"symlink pts/ptmx /rootfs/dev/ptmx".to_string()));
    assert!(calls.contains(&"symlink /proc/self/fd /rootfs/dev/fd".to_string()));
    assert!(
        rootfs.join("etc/hosts").is_file(),
        "file mount point created"
    );
}

fn prepare_with(extra_mounts: &str) -> (tempfile::TempDir, Result<Vec<String>>) {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let spec = spec_json(extra_mounts);
    let rec = Recorder {
        strip: Some(t.path().to_path_buf()),
        ..Default::default()
    };
    let ctx = RootfsContext {
        sys: &rec,
        bundle: t.path(),
        rootfs: &rootfs,
        spec: &spec,
        in_user_ns: false,
        cgroups: &[],
        bind_sources: &[],
    };
    let r = ctx.prepare().and_then(|()| ctx.finish());
    let calls = rec.calls.borrow().clone();
    (t, r.map(|()| calls))
}

/// Options a bind mount would ignore are refused; recursive ones become mount_setattr.
#[test]
fn bind_options_are_known_or_refused_and_recursive_ones_applied() {
    let (_t, r) = prepare_with(
        r#",{"destination":"/h","type":"bind","source":"/tmp","options":["rbind","mode=755"]}"#,
    );
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("unknown mount option") && e.contains("mode=755"),
        "{e}"
    );
    let (_t, r) = prepare_with(
        r#",{"destination":"/h","type":"bind","source":"/tmp","options":["rbind","rro","rnosuid"]}"#,
    );
    let calls = r.unwrap();
    assert!(
        calls.contains(&"mount_setattr /rootfs/h set=0x3 clr=0x0".to_string()),
        "{calls:?}"
    );
}

/// A read-only /dev is mounted writable, populated, and made read-only in `finish`.
#[test]
fn read_only_dev_is_remounted_after_it_is_populated() {
    let (_t, r) = prepare_with("");
    assert!(!r.unwrap().iter().any(|c| c.starts_with("mount /dev /dev")));
    let (_t, r) = prepare_with(
        r#",{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","ro","mode=755"]}"#,
    );
    let calls = r.unwrap();
    let dev_mounts: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("mount tmpfs /rootfs/dev tmpfs"))
        .collect();
    assert!(
        dev_mounts.iter().all(|c| !c.contains("RDONLY")),
        "{dev_mounts:?}"
    );
    let last_mknod = calls.iter().rposition(|c| c.starts_with("mknod")).unwrap();
    let remount = calls
        .iter()
        .position(|c| c == "mount /dev /dev - RDONLY|NOSUID|REMOUNT|BIND -")
        .expect("read-only remount of /dev");
    assert!(remount > last_mknod);
}

/// Without a mount namespace nothing is mounted: specs that ask for mounts are refused.
#[test]
fn shared_mount_namespace_refuses_mounts_and_restricted_paths() {
    let spec = spec_json("");
    let e = RootfsContext::check_shared(&spec).unwrap_err().to_string();
    assert!(e.contains("unable to restrict sys entries"), "{e}");
    let mut spec = spec;
    spec.set_linux(None);
    let e = RootfsContext::check_shared(&spec).unwrap_err().to_string();
    assert!(e.contains("mounts need a private mount namespace"), "{e}");
    spec.set_mounts(Some(vec![]));
    let e = RootfsContext::check_shared(&spec).unwrap_err().to_string();
    assert!(e.contains("read-only root"), "{e}");
    spec.set_root(None);
    assert!(RootfsContext::check_shared(&spec).is_ok());
}

#[test]
fn user_namespace_binds_devices_and_pivot_detaches_old_root() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let spec = spec_json("");
    let rec = Recorder {
        strip: Some(t.path().to_path_buf()),
        ..Default::default()
    };
    let ctx = RootfsContext {
        sys: &rec,
        bundle: t.path(),
        rootfs: &rootfs,
        spec: &spec,
        in_user_ns: true,
        cgroups: &[],
        bind_sources: &[],
    };
    ctx.prepare().unwrap();
    ctx.pivot().unwrap();
    let calls = rec.calls.borrow().clone();
    assert!(!calls.iter().any(|c| c.starts_with("mknod")));
    assert!(calls.contains(&"mount /dev/null /rootfs/dev/null - BIND -".to_string()));
    let tail: Vec<&str> = calls[calls.len() - 5..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "chdir /rootfs",
            "pivot_root . .",
            "mount - . - REC|SLAVE -",
            "umount .",
            "chdir /"
        ]
    );
}

#[test]
fn cgroup_v1_mount_is_a_tmpfs_of_bound_hierarchies() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let spec = spec_json(
        r#",{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["nosuid","ro"]}"#,
    );
    let cgs = [CgroupMount {
        name: "cpu,cpuacct".into(),
        host_dir: "/cg/cpu,cpuacct/c1".into(),
    }];
    let rec = Recorder {
        strip: Some(t.path().to_path_buf()),
        ..Default::default()
    };
    let ctx = RootfsContext {
        sys: &rec,
        bundle: t.path(),
        rootfs: &rootfs,
        spec: &spec,
        in_user_ns: false,
        cgroups: &cgs,
        bind_sources: &[],
    };
    ctx.prepare().unwrap();
    let calls = rec.calls.borrow().clone();
    let i = calls
        .iter()
        .position(|c| c.contains("/sys/fs/cgroup tmpfs"))
        .unwrap();
    assert_eq!(
        calls[i],
        "mount tmpfs /rootfs/sys/fs/cgroup tmpfs NOSUID mode=755"
    );
    assert_eq!(
        calls[i + 1],
        "mount /cg/cpu,cpuacct/c1 /rootfs/sys/fs/cgroup/cpu,cpuacct - BIND|REC -"
    );
    assert_eq!(
        calls[i + 2],
        "mount /cg/cpu,cpuacct/c1 /rootfs/sys/fs/cgroup/cpu,cpuacct - RDONLY|NOSUID|REMOUNT|BIND -"
    );
    assert!(calls.contains(&"symlink cpu,cpuacct /rootfs/sys/fs/cgroup/cpu".to_string()));
}

#[test]
fn bind_mounts_into_proc_follow_runcs_rule() {
    let no = || false;
    assert!(
        proc_bind_refusal(Path::new("/proc/1"), no).is_some_and(|w| w.contains("inside /proc"))
    );
    assert!(proc_bind_refusal(Path::new("/proc/sys/kernel/core_pattern"), no).is_some());
    assert!(
        proc_bind_refusal(Path::new("/proc"), no).is_some_and(|w| w.contains("not of type proc"))
    );
    assert_eq!(proc_bind_refusal(Path::new("/proc"), || true), None);
    assert_eq!(proc_bind_refusal(Path::new("/proc/meminfo"), no), None);
    assert_eq!(proc_bind_refusal(Path::new("/procfoo"), no), None);
    assert_eq!(proc_bind_refusal(Path::new("/etc/hosts"), no), None);
}

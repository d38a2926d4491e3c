//! Library-level checks of `berth_runtime` used the way berth-shim uses it (runs as the test
//! process, as root): the init and exec'd processes are direct children of the caller, the init
//! is PID 1 of its namespace, the caller's cwd, mount namespace, signal mask and thread count are
//! untouched, and NOTIFY_SOCKET does not leak. A plain `main` instead of the test harness keeps
//! the process single-threaded, as the runtime requires of its caller. Like an `#[ignore]`d
//! test it runs only with `--include-ignored` (scripts/test.sh passes it).

use std::os::fd::AsRawFd;
use std::path::Path;

use berth_runtime::{CreateOptions, ExecOptions, Runtime, Status};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

fn status_field(pid: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

fn ppid_of(pid: i32) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(1).unwrap().parse().unwrap()
}

fn bundle(dir: &Path, cgroup: &str) {
    let rootfs = dir.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("busybox")).expect("busybox-static installed");
    for a in ["sh", "sleep", "true", "test"] {
        std::os::unix::fs::symlink("busybox", rootfs.join(a)).unwrap();
    }
    let mut spec = berth_runtime::spec::default_spec();
    let p = spec.process_mut().as_mut().unwrap();
    p.set_terminal(Some(false));
    p.set_args(Some(vec!["sleep".into(), "30".into()]));
    spec.linux_mut()
        .as_mut()
        .unwrap()
        .set_cgroups_path(Some(cgroup.into()));
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args
        .iter()
        .any(|a| a == "--include-ignored" || a == "--ignored")
    {
        println!(
            "test library_create_exec_as_the_shim_does ... ignored, needs root: namespaces, mounts, cgroups"
        );
        return;
    }
    print!("test library_create_exec_as_the_shim_does ... ");
    let me = std::process::id().to_string();
    let t = tempfile::tempdir().unwrap();
    let id = format!("berth-test-lib-{me}");
    let cgroup = format!("/{id}");
    bundle(t.path(), &cgroup);
    let rt = Runtime::new(t.path().join("state"));

    let before = (
        std::env::current_dir().unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap(),
        status_field("self", "SigBlk:"),
        status_field("self", "Threads:"),
    );
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let fd = null.as_raw_fd();
    let opts = CreateOptions {
        stdio: Some([fd, fd, fd]),
        ..Default::default()
    };
    #[allow(unsafe_code)]
    // SAFETY: this test binary has its own main (no test harness) and starts no threads.
    let created = unsafe { rt.create(&id, t.path(), &opts) }.expect("create");
    let pid = created.pid;
    assert_eq!(
        ppid_of(pid),
        std::process::id() as i32,
        "the init is the caller's child"
    );
    assert!(
        status_field(&pid.to_string(), "NSpid:").ends_with("\t1"),
        "PID 1 in its namespace"
    );
    let after = (
        std::env::current_dir().unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap(),
        status_field("self", "SigBlk:"),
        status_field("self", "Threads:"),
    );
    assert_eq!(
        before, after,
        "caller's cwd, mount namespace, signal mask, threads"
    );
    assert_eq!(rt.info(&id).unwrap().status, Status::Created);
    rt.start(&id).expect("start");
    assert_eq!(
        rt.state(&id).unwrap().status(),
        &oci_spec::runtime::ContainerState::Running
    );

    let mut p = oci_spec::runtime::Process::default();
    p.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "test -z \"$NOTIFY_SOCKET\" && exit 3".into(),
    ]));
    p.set_env(Some(vec![
        "PATH=/bin".into(),
        "NOTIFY_SOCKET=/run/systemd/notify".into(),
    ]));
    let eopts = ExecOptions {
        stdio: Some([fd, fd, fd]),
        ..Default::default()
    };
    #[allow(unsafe_code)]
    // SAFETY: as for the create above: one thread.
    let epid = unsafe { rt.exec(&id, &p, &eopts) }.expect("exec");
    assert_eq!(
        ppid_of(epid),
        std::process::id() as i32,
        "exec'd process is the caller's child"
    );
    assert_eq!(
        waitpid(Pid::from_raw(epid), None).unwrap(),
        WaitStatus::Exited(Pid::from_raw(epid), 3),
        "NOTIFY_SOCKET removed"
    );

    rt.kill(&id, libc::SIGKILL, false).expect("kill");
    assert!(matches!(
        waitpid(Pid::from_raw(pid), None).unwrap(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    assert_eq!(rt.info(&id).unwrap().status, Status::Stopped);
    rt.delete(&id, false).expect("delete");
    assert!(rt.list().unwrap().is_empty());
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(
            !h.path().join(&id).exists(),
            "cgroup left in {}",
            h.path().display()
        );
    }
    println!("ok");
    device_program_on_cgroup2();
}

/// The cgroup v2 device program, loaded by the kernel's verifier and enforced: checked on this
/// host's cgroup2 hierarchy (hybrid hosts have one at /sys/fs/cgroup/unified).
fn device_program_on_cgroup2() {
    print!("test library_cgroup2_device_program_is_enforced ... ");
    let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.controllers").exists())
        .expect("a cgroup2 hierarchy");
    let dir = root.join(format!("berth-test-bpf-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let res: oci_spec::runtime::LinuxResources = serde_json::from_str(
        r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#,
    )
    .unwrap();
    berth_runtime::cgroups::apply_device_program(&dir, &res).expect("load and attach");
    let tmp = tempfile::tempdir().unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs; echo x > /dev/null && echo null-ok; \
         (exec 3>>/dev/kmsg) 2>/dev/null && echo kmsg-allowed || echo kmsg-denied; \
         mknod {t}/loop b 7 0 && echo mknod-ok-by-default; \
         (exec 3</dev/full) && echo full-ok-by-default",
        dir.display(),
        t = tmp.path().display()
    );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&dir);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("null-ok"), "{out}");
    assert!(
        out.contains("kmsg-denied"),
        "a device no rule allows (kmsg) is not: {out}"
    );
    // "deny all" brings the default devices (like runc): /dev/full among them, and creating
    // any node.
    assert!(out.contains("mknod-ok-by-default"), "{out}");
    assert!(out.contains("full-ok-by-default"), "{out}");
    println!("ok");
}

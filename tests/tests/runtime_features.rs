//! berth-runtime implements the runtime spec: each feature is checked from inside a busybox
//! container (its own view of /proc, mounts, ids, limits), some also from the host.

use berth_tests::bundle::{Bundle, Runtime, assert_nothing_left, cgroup_dirs, unique};
use serde_json::{Value, json};

/// Runs the bundle in the foreground; returns stdout, asserting success.
fn run(rt: &Runtime, b: &Bundle, id: &str) -> String {
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), id]);
    assert!(
        out.status.success(),
        "run failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup(name: &str, script: &str) -> (Runtime, Bundle, String, String) {
    let rt = Runtime::berth();
    let id = unique(name);
    let cg = format!("/{id}");
    let b = Bundle::busybox(&rt.bin, &["sh", "-c", script], &cg);
    rt.track(&id, &cg);
    (rt, b, id, cg)
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in output:\n{out}"))
        .trim()
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_process_user_caps_rlimits_env_cwd_umask_oom() {
    let script = "echo id=$(id); echo pwd=$(pwd); echo umask=$(umask); echo nofile=$(ulimit -n); \
        echo oom=$(cat /proc/self/oom_score_adj); echo foo=$FOO; echo notify=${NOTIFY_SOCKET:-unset}; echo home=$HOME; \
        grep -E '^(CapEff|CapBnd|CapPrm|CapInh|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
        echo nice=$(cut -d' ' -f19 /proc/self/stat); echo policy=$(cut -d' ' -f41 /proc/self/stat); echo io=$(ionice)";
    let (rt, mut b, id, cg) = setup("process", script);
    let p = &mut b.config["process"];
    p["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 23});
    p["cwd"] = json!("/tmp");
    p["env"] = json!([
        "PATH=/bin",
        "FOO=bar baz",
        "NOTIFY_SOCKET=/run/systemd/notify"
    ]);
    p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 333, "soft": 222}]);
    p["oomScoreAdj"] = json!(123);
    p["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    p["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    p["noNewPrivileges"] = json!(true);
    let caps = json!(["CAP_NET_BIND_SERVICE", "CAP_KILL"]);
    p["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps});
    b.save();
    let out = run(&rt, &b, &id);
    assert_eq!(
        line(&out, "id="),
        "uid=1000(user) gid=1000(user) groups=5,7"
    );
    assert_eq!(line(&out, "pwd="), "/tmp");
    assert_eq!(line(&out, "umask="), "0027");
    assert_eq!(line(&out, "nofile="), "222");
    assert_eq!(line(&out, "oom="), "123");
    assert_eq!(line(&out, "foo="), "bar baz");
    assert_eq!(
        line(&out, "notify="),
        "unset",
        "NOTIFY_SOCKET must not leak into the container"
    );
    assert_eq!(line(&out, "home="), "/home/user");
    // CAP_KILL (5) and CAP_NET_BIND_SERVICE (10): 0x420 in every set, ambient included.
    for set in ["CapEff:", "CapBnd:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(line(&out, set), "0000000000000420", "{set}");
    }
    assert_eq!(line(&out, "NoNewPrivs:"), "1");
    assert_eq!(line(&out, "nice="), "5", "scheduler nice");
    assert_eq!(line(&out, "policy="), "3", "SCHED_BATCH");
    assert_eq!(line(&out, "io="), "idle", "ioPriority");
    assert_eq!(line(&out, "Seccomp:"), "0");
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_seccomp_profile_is_enforced() {
    let script = "mkdir /tmp/x 2>&1; echo mkdir=$?; grep -E '^Seccomp:' /proc/self/status; echo ok > /tmp/f && cat /tmp/f";
    let (rt, mut b, id, cg) = setup("seccomp", script);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            // Argument filter: personality(0xffffffff) (a query) is refused, others pass.
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    b.save();
    let out = run(&rt, &b, &id);
    assert!(
        out.contains("Permission denied"),
        "mkdir must fail with errnoRet 13 (EACCES):\n{out}"
    );
    assert_eq!(line(&out, "mkdir="), "1");
    assert_eq!(line(&out, "Seccomp:"), "2");
    assert!(
        out.trim_end().ends_with("ok"),
        "other syscalls still work:\n{out}"
    );
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_rootfs_mounts_devices_masked_readonly_hostname_sysctl() {
    let script = "echo host=$(hostname); echo domain=$(cat /proc/sys/kernel/domainname); \
        touch /rootfile 2>/dev/null; echo rootwrite=$?; \
        echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); \
        echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; echo procsys=$?; \
        echo timers=$(wc -c < /proc/timer_list); echo acpi=$(ls /proc/acpi 2>/dev/null | wc -l); \
        echo data=$(cat /data/hello); echo x > /data/new 2>/dev/null; echo datawrite=$?; \
        echo tmp=$(grep ' /scratch ' /proc/self/mounts); echo y > /scratch/f && echo scratch=ok; \
        ls -l /dev | awk '{print $1, $5, $6, $NF}'; ls -l /dev | grep -- '->'; \
        echo mynull=$(ls -l /dev/mynull | tr -s ' ' | cut -d' ' -f1,3,5,6); \
        echo mq=$(grep -c ' /dev/mqueue mqueue ' /proc/self/mounts); echo cg=$(ls /sys/fs/cgroup | tr '\\n' ' '); \
        echo arch=$(uname -m)";
    let (rt, mut b, id, cg) = setup("rootfs", script);
    let data = b.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello"), "world").unwrap();
    let c = &mut b.config;
    c["hostname"] = json!("box1");
    c["domainname"] = json!("example.org");
    c["root"]["readonly"] = json!(true);
    c["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}),
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=1777"]}),
    ]);
    c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    c["linux"]["personality"] = json!({"domain": "LINUX32"});
    c["linux"]["devices"] = json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 0}]);
    b.save();
    let out = run(&rt, &b, &id);
    assert_eq!(line(&out, "host="), "box1");
    assert_eq!(line(&out, "domain="), "example.org");
    assert_ne!(line(&out, "rootwrite="), "0", "readonly root");
    assert_eq!(line(&out, "fwd="), "1", "sysctl in the container's netns");
    assert_ne!(line(&out, "procsys="), "0", "/proc/sys is a readonly path");
    assert_eq!(line(&out, "timers="), "0", "/proc/timer_list is masked");
    assert_eq!(line(&out, "acpi="), "0", "/proc/acpi is masked");
    assert_eq!(line(&out, "data="), "world");
    assert_ne!(line(&out, "datawrite="), "0", "ro bind mount");
    assert!(line(&out, "tmp=").contains("nosuid,nodev"), "{out}");
    assert_eq!(line(&out, "scratch="), "ok");
    for dev in [
        "crw-rw-rw- 1, 3 null",
        "crw-rw-rw- 1, 5 zero",
        "crw-rw-rw- 1, 7 full",
        "crw-rw-rw- 1, 8 random",
        "crw-rw-rw- 1, 9 urandom",
        "crw-rw-rw- 5, 0 tty",
    ] {
        assert!(out.contains(dev), "missing {dev}:\n{out}");
    }
    for link in [
        "fd -> /proc/self/fd",
        "stdin -> /proc/self/fd/0",
        "stdout -> /proc/self/fd/1",
        "stderr -> /proc/self/fd/2",
        "ptmx -> pts/ptmx",
    ] {
        assert!(out.contains(link), "missing /dev/{link}:\n{out}");
    }
    assert_eq!(
        line(&out, "mynull="),
        "crw-r----- user 1, 3",
        "mode and owner from the spec"
    );
    assert_eq!(line(&out, "mq="), "1");
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(line(&out, "arch="), "i686", "personality LINUX32");
    }
    let hierarchies = line(&out, "cg=");
    assert!(
        hierarchies.contains("memory") && hierarchies.contains("pids"),
        "{hierarchies}"
    );
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_cgroup_limits_visible_inside_and_removed_after() {
    let script = "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); echo pids=$(cat /sys/fs/cgroup/pids/pids.max); \
        echo shares=$(cat /sys/fs/cgroup/cpu/cpu.shares); echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); \
        echo self=$(grep memory /proc/self/cgroup); \
        mknod /tmp/kmsg c 1 11 && (exec 3>>/tmp/kmsg) 2>&1; echo kmsg=$?; mknod /tmp/null c 1 3 && echo null=ok; head -c1 /dev/sda >/dev/null && echo specdev=ok";
    let (rt, mut b, id, cg) = setup("cgroups", script);
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 67108864},
        "pids": {"limit": 32},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "devices": [{"allow": false, "access": "rwm"}]
    });
    // With CAP_MKNOD, the devices cgroup lets any node be created (as runc does) but refuses to
    // open /dev/kmsg (1:11), and allows the defaults (1:9 here, under a name the spec lists).
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    }
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/sda", "type": "c", "major": 1, "minor": 9}]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    b.save();
    let out = run(&rt, &b, &id);
    assert_eq!(line(&out, "mem="), "67108864");
    assert_eq!(line(&out, "pids="), "32");
    assert_eq!(line(&out, "shares="), "512");
    assert_eq!(line(&out, "quota="), "50000");
    assert!(
        line(&out, "self=").ends_with(":/"),
        "cgroup namespace: own cgroup is the root: {out}"
    );
    assert!(
        out.contains("Operation not permitted"),
        "devices cgroup denies 1:11:\n{out}"
    );
    assert_ne!(line(&out, "kmsg="), "0");
    assert_eq!(line(&out, "null="), "ok");
    assert_eq!(line(&out, "specdev="), "ok");
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_cgroup_files_on_host_while_running_and_kill_all_ps_pause() {
    let (rt, mut b, id, cg) = setup("cghost", "sleep 100 & sleep 100 & wait");
    b.config["linux"]["resources"] = json!({"memory": {"limit": 33554432}, "pids": {"limit": 10}});
    b.save();
    rt.ok_detached(&[
        "run",
        "--detach",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let mem = std::path::Path::new("/sys/fs/cgroup/memory").join(cg.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "33554432"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pids: Vec<i64> = vec![];
    while pids.len() < 3 && std::time::Instant::now() < deadline {
        pids = serde_json::from_str::<Vec<i64>>(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    }
    assert_eq!(pids.len(), 3, "sh and two sleeps");
    let table = rt.ok(&["ps", &id]);
    assert!(
        table.lines().next().unwrap().contains("PID") && table.contains("sleep 100"),
        "{table}"
    );
    rt.ok(&["pause", &id]);
    assert_eq!(rt.state(&id)["status"], "paused");
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer").join(cg.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(freezer.join("freezer.state"))
            .unwrap()
            .trim(),
        "FROZEN"
    );
    rt.ok(&["resume", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    rt.ok(&["kill", "--all", &id, "KILL"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rt.state(&id)["status"] != "stopped" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(rt.state(&id)["status"], "stopped");
    rt.ok(&["delete", &id]);
    assert!(cgroup_dirs(&cg).is_empty());
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_user_namespace_with_mappings() {
    let script = "echo id=$(id -u):$(id -g); echo map=$(cat /proc/self/uid_map | tr -s ' '); echo null=$(echo x > /dev/null && echo ok)";
    let (rt, mut b, id, cg) = setup("userns", script);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.save();
    let out = run(&rt, &b, &id);
    assert_eq!(line(&out, "id="), "0:0");
    assert_eq!(line(&out, "map="), "0 100000 65536");
    assert_eq!(
        line(&out, "null="),
        "ok",
        "/dev/null bind mounted from the host"
    );
    // From the host the container's root is uid 100000.
    b.args(&["sleep", "30"]);
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("100000")),
        "{status}"
    );
    rt.ok(&["delete", "-f", &id]);
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_join_namespaces_by_path() {
    let rt = Runtime::berth();
    let (a_id, b_id) = (unique("join-a"), unique("join-b"));
    let (a_cg, b_cg) = (format!("/{a_id}"), format!("/{b_id}"));
    let a = Bundle::busybox(&rt.bin, &["sleep", "30"], &a_cg);
    rt.track(&a_id, &a_cg);
    rt.ok_detached(&["run", "-d", "--bundle", a.path().to_str().unwrap(), &a_id]);
    let apid = rt.state(&a_id)["pid"].as_i64().unwrap();
    let mut b = Bundle::busybox(
        &rt.bin,
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; ls /proc | grep -c '^[0-9]'; echo $$",
        ],
        &b_cg,
    );
    rt.track(&b_id, &b_cg);
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        let t = n["type"].as_str().unwrap().to_string();
        let file = match t.as_str() {
            "network" => "net",
            "ipc" => "ipc",
            "pid" => "pid",
            _ => continue,
        };
        n["path"] = json!(format!("/proc/{apid}/ns/{file}"));
    }
    b.config["hostname"] = Value::Null;
    b.save();
    let out = run(&rt, &b, &b_id);
    let host = |f: &str| {
        std::fs::read_link(format!("/proc/{apid}/ns/{f}"))
            .unwrap()
            .display()
            .to_string()
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], host("net"));
    assert_eq!(lines[1], host("ipc"));
    assert_ne!(lines[2], host("uts"), "uts was new");
    assert_eq!(
        lines[3], "4",
        "in A's pid namespace: A's sleep, B's sh, ls and grep"
    );
    assert_ne!(lines[4], "1", "B's init is not PID 1 of A's namespace");
    rt.ok(&["delete", "-f", &a_id]);
    assert_nothing_left(&rt, &a, &a_cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_exec_process_file_user_cgroup_and_exit_code() {
    let (rt, b, id, cg) = setup("exec", "sleep 30");
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let proc_json = b.path().join("process.json");
    std::fs::write(&proc_json, serde_json::to_vec(&json!({
        "user": {"uid": 1000, "gid": 1000}, "cwd": "/tmp", "env": ["PATH=/bin", "X=1"],
        "args": ["sh", "-c", "echo $(id -u) $(pwd) $X; grep -E '^[0-9]+:memory:' /proc/self/cgroup; exit 5"]
    })).unwrap()).unwrap();
    let pidfile = b.path().join("exec.pid");
    let out = rt.run(&[
        "exec",
        "--process",
        proc_json.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("1000 /tmp 1"));
    assert!(
        lines.next().unwrap().ends_with(&cg),
        "exec'd process is in the container's cgroup: {stdout}"
    );
    assert!(
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
            > 0
    );
    let bad = rt.run(&["exec", &id, "no-such-binary"]);
    assert_eq!(bad.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("executable file not found"));
    // This one fails before it reads the runtime's go-ahead: its own error must still be
    // what the user sees (not the channel's reset).
    let bad = rt.run(&["exec", "--cwd", "/no-such-dir", &id, "true"]);
    assert_eq!(bad.status.code(), Some(255));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("chdir to cwd") && err.contains("/no-such-dir"),
        "{err}"
    );
    rt.ok(&["delete", "-f", &id]);
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_preserve_fds_passes_fd_3_and_nothing_else() {
    let (rt, b, id, cg) = setup(
        "preserve",
        "echo preserved >&3; ls /proc/self/fd | sort -n | tr '\\n' ' '",
    );
    let out_file = b.path().join("fd3.out");
    // bash opens fd 3 (not close-on-exec) for the runtime, as containerd/podman pass extra fds.
    let script = format!(
        "exec 3>{}; exec {} --root {} run --preserve-fds 1 --bundle {} {}",
        out_file.display(),
        rt.bin.display(),
        rt.root().display(),
        b.path().display(),
        id
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "preserved\n");
    // 0-2, the preserved 3, and the directory fd ls itself opens: nothing of the runtime's.
    let fds: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&fds[..4], ["0", "1", "2", "3"], "{fds:?}");
    assert!(
        fds.len() <= 5,
        "no runtime fd leaked into the container: {fds:?}"
    );
    assert_nothing_left(&rt, &b, &cg, None);
}

/// The pure cgroup v2 path end to end: in a private mount namespace whose /sys/fs/cgroup is the
/// cgroup2 hierarchy (as on NixOS), the container gets a v2 cgroup, its `cgroup` mount shows
/// it, its device rules are enforced by the eBPF program, and delete removes the directory.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_pure_cgroup_v2_host() {
    let script = "echo self=$(grep '^0::' /proc/self/cgroup); echo files=$(ls /sys/fs/cgroup | grep -c '^cgroup.controllers$'); \
        mknod /tmp/kmsg c 1 11 && { (exec 3>>/tmp/kmsg) 2>/dev/null && echo kmsg=allowed || echo kmsg=denied; }; \
        mknod /tmp/null c 1 3 && echo null=allowed";
    let (rt, mut b, id, cg) = setup("v2", script);
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    }
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    b.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    b.save();
    let harness = format!(
        "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec {} --root {} run --bundle {} {}",
        rt.bin.display(),
        rt.root().display(),
        b.path().display(),
        id
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &harness])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        line(&stdout, "self="),
        format!("0::{cg}"),
        "only the v2 hierarchy"
    );
    assert_eq!(
        line(&stdout, "files="),
        "1",
        "the cgroup mount is the v2 cgroup"
    );
    assert_eq!(line(&stdout, "kmsg="), "denied", "eBPF device program");
    assert_eq!(line(&stdout, "null="), "allowed");
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_time_namespace_with_clock_offsets() {
    // A boottime offset of ~100 days shows in /proc/uptime inside, not on the host; monotonic
    // moves by its own offset.
    let script = "echo up=$(cut -d. -f1 /proc/uptime); echo ns=$(readlink /proc/self/ns/time)";
    let (rt, mut b, id, cg) = setup("timens", script);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({
        "boottime": {"secs": 8_640_000, "nanosecs": 0},
        "monotonic": {"secs": 86_400, "nanosecs": 0}
    });
    b.save();
    let out = run(&rt, &b, &id);
    let host_up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let inside: f64 = line(&out, "up=").parse().unwrap();
    assert!(
        inside >= 8_640_000.0 + host_up - 5.0 && inside < 8_640_000.0 + host_up + 60.0,
        "uptime inside {inside}, host {host_up}"
    );
    let host_ns = std::fs::read_link("/proc/self/ns/time").unwrap();
    assert_ne!(line(&out, "ns="), host_ns.to_string_lossy(), "{out}");
    assert_nothing_left(&rt, &b, &cg, None);

    // Offsets without a new time namespace are refused with a clear error, leaving nothing.
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "time");
    b.save();
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("timeOffsets"),
        "{}: {err}",
        out.status
    );
    assert_nothing_left(&rt, &b, &cg, None);
}

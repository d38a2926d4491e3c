//! Confinement of a container started by berthd with a default spec, probed from inside with
//! `berth exec`: no mount, no module load, no write to /proc/sys, /proc/sysrq-trigger or /sys,
//! masked /proc paths, no raw socket without NET_RAW, the default seccomp profile, the PID
//! namespace, `no-new-privileges` with a setuid binary, and nothing of berth's sockets, state or
//! runtime binary in reach. Every probe is also run where it must succeed (on the host, or in a
//! container given the capability or `seccomp=unconfined`) to show that the probe itself works.
//! Runs in the test process against a real systemd booted in private namespaces.

use berth_tests::agent::{Agent, IMAGE};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A static prober for what busybox cannot do: `euid` prints the effective uid, `keyctl` and
/// `ptrace PID` make the syscall and print its result or errno.
const PROBE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long r;
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "euid")) { printf("%d\n", (int)geteuid()); return 0; }
    if (!strcmp(argv[1], "keyctl")) r = syscall(SYS_keyctl, 0L, -3L, 0L);
    else if (!strcmp(argv[1], "ptrace") && argc > 2) r = ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0);
    else return 2;
    if (r < 0) { printf("%s: errno %d (%s)\n", argv[1], errno, strerror(errno)); return 1; }
    printf("%s: ok %ld\n", argv[1], r);
    return 0;
}
"#;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `sh -c SCRIPT` in container `name` through `berth exec`.
fn exec(a: &Agent, name: &str, script: &str) -> Output {
    a.berth(&["exec", name, "sh", "-c", script]).unwrap()
}

/// `sh -c SCRIPT` on the host (the test process's namespaces, as root).
fn host(script: &str) -> Output {
    Command::new("sh").args(["-c", script]).output().unwrap()
}

/// `sh -c SCRIPT` in the test systemd's namespaces, where berthd runs.
fn beside(a: &Agent, script: &str) -> Output {
    a.sd.exec_inside(&["sh", "-c", script]).unwrap()
}

/// Asserts that `probe` succeeded (`ok`) or failed, with its output in the message.
#[track_caller]
fn expect(probe: &str, where_: &str, o: &Output, ok: bool) {
    let want = if ok { "succeed" } else { "fail" };
    assert_eq!(
        o.status.success(),
        ok,
        "probe `{probe}` should {want} in {where_}:\n{}",
        text(o)
    );
}

/// Writes the spec of a long-running container (`network_mode: none`) with `extra` keys.
fn sleeper(a: &Agent, name: &str, extra: &str) {
    a.write(
        name,
        &format!(
            "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n{extra}"
        ),
    );
}

fn wait_active(a: &Agent, names: &[&str]) {
    a.wait(T, &format!("{names:?} active"), || {
        names.iter().all(|n| a.active(n))
    })
    .unwrap();
}

/// Builds the prober into `dir` (host path), setuid root.
fn build_probe(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("probe.c");
    std::fs::write(&src, PROBE_C).unwrap();
    let bin = dir.join("probe");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc (scripts/setup.sh installs it)");
    assert!(out.status.success(), "gcc: {}", text(&out));
    let out = Command::new("chmod")
        .arg("4755")
        .arg(&bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "chmod u+s: {}", text(&out));
}

/// No mount, no module load, no write to /proc/sys, /proc/sysrq-trigger or /sys, no kernel log.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn confinement_no_mount_module_load_or_kernel_writes() {
    let a = Agent::start("confine-kernel").unwrap();
    a.start_berthd(true).unwrap();
    sleeper(&a, "box", "");
    // The same mount probe with the capability and no seccomp filter: it must succeed there.
    sleeper(
        &a,
        "admin",
        "cap_add: [SYS_ADMIN]\nsecurity_opt: [seccomp=unconfined]\n",
    );
    wait_active(&a, &["box", "admin"]);

    let mount = "mkdir -p /mnt && mount -t tmpfs x /mnt && grep ' /mnt ' /proc/mounts";
    expect(
        "mount",
        "a default container",
        &exec(&a, "box", mount),
        false,
    );
    expect(
        "mount",
        "a container with SYS_ADMIN and seccomp=unconfined",
        &exec(&a, "admin", mount),
        true,
    );

    // A bogus module: the host's kernel answers it (here: no module support, or a bad format);
    // in the container it must be refused before the kernel looks at it.
    let insmod = "echo bogus > /tmp/m.ko && insmod /tmp/m.ko";
    let o = exec(&a, "box", insmod);
    expect("insmod", "a default container", &o, false);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Operation not permitted"),
        "probe `insmod` should be refused with EPERM in a default container:\n{}",
        text(&o)
    );
    let h = host("f=$(mktemp) && echo bogus > $f && insmod $f; r=$?; rm -f $f; exit $r");
    assert!(
        !String::from_utf8_lossy(&h.stderr).contains("Operation not permitted"),
        "probe `insmod` on the host should reach the kernel (not EPERM):\n{}",
        text(&h)
    );

    // Writing a sysctl's own value back changes nothing where it is allowed.
    let sysctl = "v=$(cat /proc/sys/kernel/hostname) && echo \"$v\" > /proc/sys/kernel/hostname";
    expect(
        "write /proc/sys/kernel/hostname",
        "a default container",
        &exec(&a, "box", sysctl),
        false,
    );
    expect(
        "write /proc/sys/kernel/hostname",
        "a UTS namespace on the host",
        &Command::new("unshare")
            .args(["-u", "sh", "-c", sysctl])
            .output()
            .unwrap(),
        true,
    );
    // A global setting, not namespaced: the host's own value written back.
    let vm =
        "v=$(cat /proc/sys/vm/overcommit_memory) && echo \"$v\" > /proc/sys/vm/overcommit_memory";
    expect(
        "write /proc/sys/vm/overcommit_memory",
        "a default container",
        &exec(&a, "box", vm),
        false,
    );
    expect(
        "write /proc/sys/vm/overcommit_memory",
        "the host",
        &host(vm),
        true,
    );
    let modprobe = "v=$(cat /proc/sys/kernel/modprobe) && echo \"$v\" > /proc/sys/kernel/modprobe";
    if Path::new("/proc/sys/kernel/modprobe").exists() {
        expect(
            "write /proc/sys/kernel/modprobe",
            "a default container",
            &exec(&a, "box", modprobe),
            false,
        );
    } else {
        eprintln!(
            "SKIPPED probe `write /proc/sys/kernel/modprobe`: this kernel has no module support"
        );
    }

    // An open for writing that writes nothing triggers nothing.
    let sysrq = ": > /proc/sysrq-trigger";
    expect(
        "open /proc/sysrq-trigger for writing",
        "a default container",
        &exec(&a, "box", sysrq),
        false,
    );
    if Path::new("/proc/sysrq-trigger").exists() {
        expect(
            "open /proc/sysrq-trigger for writing",
            "the host",
            &host(sysrq),
            true,
        );
    } else {
        eprintln!(
            "SKIPPED the host's side of probe `open /proc/sysrq-trigger`: this kernel has no magic SysRq"
        );
    }
    // The kernel log: syslog(2) needs CAP_SYSLOG, and the default profile allows it only then.
    let dmesg = "dmesg > /dev/null";
    expect(dmesg, "a default container", &exec(&a, "box", dmesg), false);
    expect(dmesg, "the host", &host(dmesg), true);
    // uevent_seqnum is in every kernel's sysfs; touching it changes only its timestamps.
    let sys = "touch /sys/kernel/uevent_seqnum";
    expect(
        "touch /sys/kernel/uevent_seqnum",
        "a default container",
        &exec(&a, "box", sys),
        false,
    );
    expect(
        "touch /sys/kernel/uevent_seqnum",
        "the host",
        &host(sys),
        true,
    );
    let o = exec(&a, "box", "grep ' /sys ' /proc/mounts");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(" ro,"),
        "/sys should be mounted read-only in a default container:\n{}",
        text(&o)
    );
}

/// Every path berth masks reads as empty (a masked file is /dev/null, a masked directory an empty
/// read-only tmpfs); on the host the same probe sees content where the kernel has any.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn confinement_masked_proc_paths_read_empty() {
    let a = Agent::start("confine-masked").unwrap();
    a.start_berthd(true).unwrap();
    sleeper(&a, "box", "");
    wait_active(&a, &["box"]);
    let mut probed = 0;
    for p in berth_agent::bundle::MASKED_PATHS {
        let probe = format!(
            "if [ -d {p} ]; then test -z \"$(ls -A {p})\"; else test -z \"$(cat {p} 2>/dev/null)\"; fi"
        );
        expect(
            &format!("masked {p} reads empty"),
            "a default container",
            &exec(&a, "box", &probe),
            true,
        );
        let h = host(&probe);
        if h.status.success() {
            eprintln!(
                "SKIPPED the host's side of probe `masked {p}`: absent or empty on this host"
            );
        } else {
            probed += 1;
        }
    }
    // This kernel has /proc/interrupts, /proc/keys, /proc/timer_list and /sys/firmware: at
    // least those must have shown the probe can tell content from a mask.
    assert!(
        probed >= 3,
        "only {probed} masked paths have content on the host"
    );
}

/// A raw socket needs NET_RAW: busybox ping works with the default capabilities (Docker's set
/// has NET_RAW) and is refused without it. Loopback only (`network_mode: none`).
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn confinement_raw_socket_needs_net_raw() {
    let a = Agent::start("confine-raw").unwrap();
    a.start_berthd(true).unwrap();
    sleeper(&a, "box", "");
    sleeper(&a, "noraw", "cap_drop: [NET_RAW]\n");
    wait_active(&a, &["box", "noraw"]);
    let ping = "ping -c1 -W2 127.0.0.1";
    expect(ping, "a default container", &exec(&a, "box", ping), true);
    let o = exec(&a, "noraw", ping);
    expect(ping, "a container with cap_drop: [NET_RAW]", &o, false);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ermission denied")
            || String::from_utf8_lossy(&o.stderr).contains("not permitted"),
        "probe `{ping}` without NET_RAW should fail with a permission error:\n{}",
        text(&o)
    );
}

/// The default seccomp profile blocks what Docker's does (user namespaces, keyctl), and the PID
/// namespace hides other containers' processes: no kill, no ptrace of them.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn confinement_seccomp_and_pid_namespace() {
    let a = Agent::start("confine-seccomp").unwrap();
    build_probe(&a.sd.share_dir().join("probe"));
    a.start_berthd(true).unwrap();
    let vol = "volumes: [\"/srv/tb/probe:/probe:ro\"]\n";
    sleeper(&a, "box", vol);
    sleeper(
        &a,
        "unconf",
        &format!("{vol}security_opt: [seccomp=unconfined]\n"),
    );
    a.write(
        "other",
        &format!(
            "image_file: {IMAGE}\ncommand: [sleep, \"7777\"]\nnetwork_mode: none\nrestart: always\n"
        ),
    );
    wait_active(&a, &["box", "unconf", "other"]);

    let userns = "unshare -U true";
    expect(
        userns,
        "a default container",
        &exec(&a, "box", userns),
        false,
    );
    expect(
        userns,
        "a container with seccomp=unconfined",
        &exec(&a, "unconf", userns),
        true,
    );

    let keyctl = "/probe/probe keyctl";
    let o = exec(&a, "box", keyctl);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("errno 1 "),
        "probe `keyctl` should get EPERM in a default container:\n{}",
        text(&o)
    );
    let o = exec(&a, "unconf", keyctl);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("errno 1 ") && o.stdout.starts_with(b"keyctl"),
        "probe `keyctl` should reach the kernel with seccomp=unconfined:\n{}",
        text(&o)
    );

    // The other container's sleep, as berthd's namespace sees it.
    let o = beside(&a, "pgrep -f -x 'sleep 7777'");
    let pid = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(
        !pid.is_empty() && !pid.contains('\n'),
        "one `sleep 7777` beside berthd:\n{}",
        text(&o)
    );
    let kill = format!("kill -0 {pid}");
    expect(&kill, "berthd's namespace", &beside(&a, &kill), true);
    let list = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done";
    let o = exec(&a, "box", list);
    assert!(
        o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("sleep 7777"),
        "probe `other container's process visible` should find nothing in a default container:\n{}",
        text(&o)
    );
    let o = beside(&a, list);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("sleep 7777"),
        "the same listing beside berthd should show `sleep 7777`:\n{}",
        text(&o)
    );
    let absent = format!("[ ! -e /proc/{pid} ]");
    expect(
        &absent,
        "a default container",
        &exec(&a, "box", &absent),
        true,
    );
    expect(&kill, "a default container", &exec(&a, "box", &kill), false);
    let ptrace = format!("/probe/probe ptrace {pid}");
    let o = exec(&a, "box", &ptrace);
    expect(&ptrace, "a default container", &o, false);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ptrace: errno"),
        "probe `{ptrace}` should be refused by the kernel:\n{}",
        text(&o)
    );
}

/// `no-new-privileges` honoured: a setuid-root binary run by uid 1000 keeps euid 1000 with it,
/// and becomes root without it (the probe works).
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn confinement_no_new_privileges_with_a_setuid_binary() {
    let a = Agent::start("confine-nnp").unwrap();
    build_probe(&a.sd.share_dir().join("probe"));
    a.start_berthd(true).unwrap();
    let base = "volumes: [\"/srv/tb/probe:/probe:ro\"]\nuser: \"1000\"\n";
    sleeper(
        &a,
        "nnp",
        &format!("{base}security_opt: [no-new-privileges]\n"),
    );
    sleeper(&a, "suid", base);
    wait_active(&a, &["nnp", "suid"]);
    let probe = "id -u && /probe/probe euid";
    let o = exec(&a, "nnp", probe);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1000\n1000\n",
        "probe `setuid-root euid` under no-new-privileges:\n{}",
        text(&o)
    );
    let o = exec(&a, "suid", probe);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1000\n0\n",
        "probe `setuid-root euid` without no-new-privileges:\n{}",
        text(&o)
    );
}

/// Nothing of berth is reachable from a default container: its sockets (berthd's, the Docker
/// API's, every shim's), its state directories, and its binaries through /proc (pid 1's exe
/// is the container's own busybox; no process in the namespace is a berth binary).
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn confinement_berth_sockets_state_and_binaries_unreachable() {
    let a = Agent::start("confine-state").unwrap();
    a.start_berthd(true).unwrap();
    sleeper(&a, "box", "");
    wait_active(&a, &["box"]);

    // What berthd's namespace holds: sockets under /run/berth, the state directory.
    let o = beside(&a, "find /run/berth /srv/tb/state -type s");
    let sockets: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        sockets.iter().any(|s| s.ends_with("/berthd.sock")) && sockets.len() >= 2,
        "berthd's socket and a shim's beside berthd:\n{}",
        text(&o)
    );
    for path in sockets.iter().map(String::as_str).chain([
        "/run/berth",
        "/var/lib/berth",
        "/srv/tb/state",
        "/srv/tb",
    ]) {
        let probe = format!("[ ! -e {path} ]");
        expect(
            &probe,
            "a default container",
            &exec(&a, "box", &probe),
            true,
        );
    }
    let o = exec(&a, "box", "find / -type s 2>/dev/null");
    assert!(
        o.stdout.is_empty(),
        "probe `find / -type s` should find no socket in a default container:\n{}",
        text(&o)
    );

    let o = exec(&a, "box", "readlink /proc/1/exe");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/bin/busybox\n",
        "probe `readlink /proc/1/exe`:\n{}",
        text(&o)
    );
    let exes = "for p in /proc/[0-9]*; do readlink $p/exe; tr '\\0' ' ' < $p/cmdline; echo; done";
    let o = exec(&a, "box", exes);
    assert!(
        o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("berth"),
        "probe `a berth binary among the container's processes` should find none:\n{}",
        text(&o)
    );
    let shim = a.show("box", "MainPID");
    let o = beside(&a, &format!("readlink /proc/{shim}/exe"));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("berth-shim"),
        "the same probe beside berthd sees the shim (pid {shim}):\n{}",
        text(&o)
    );
}

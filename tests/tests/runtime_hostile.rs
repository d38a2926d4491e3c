//! berth-runtime on hostile and restrictive configs, most of them run under Debian's runc as
//! well and compared with what the container sees there (run in the test process, as root).

use std::process::Output;

use berth_tests::bundle::{Bundle, Runtime, assert_nothing_left, unique};
use serde_json::{Value, json};

/// Both runtimes under test: berth-runtime first, then runc.
fn runtimes() -> [(&'static str, Runtime); 2] {
    [("berth", Runtime::berth()), ("runc", Runtime::runc())]
}

/// `run`s a busybox bundle (runc's `spec`, then `edit`) under `rt`: the output and the bundle.
fn run_with(
    rt: &Runtime,
    test: &str,
    args: &[&str],
    edit: impl FnOnce(&mut Bundle),
) -> (Output, Bundle) {
    let id = unique(test);
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(std::path::Path::new("runc"), args, &cg);
    edit(&mut b);
    b.save();
    rt.track(&id, &cg);
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    (out, b)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A seccomp profile that allows everything but `denied` (EPERM).
fn deny(denied: &[&str]) -> Value {
    json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": denied, "action": "SCMP_ACT_ERRNO"}]})
}

/// A profile denying what the init used between the filter and the exec (close_range for the
/// fds, fcntl, signal resets) must not kill the container, with or without no_new_privs.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_seccomp_denying_fd_and_signal_calls_runs_like_runc() {
    for nnp in [true, false] {
        for (label, rt) in runtimes() {
            let (out, _b) = run_with(
                &rt,
                &format!("nofdcalls-{nnp}-{label}"),
                &["echo", "hi"],
                |b| {
                    b.config["process"]["noNewPrivileges"] = json!(nnp);
                    b.config["linux"]["seccomp"] =
                        deny(&["close_range", "fcntl", "rt_sigaction", "rt_sigprocmask"]);
                },
            );
            assert!(out.status.success(), "{label}, nnp {nnp}: {}", text(&out));
            assert_eq!(stdout(&out), "hi\n", "{label}, nnp {nnp}");
        }
    }
}

/// The same for a process `exec` adds (it inherits the container's profile).
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_exec_under_a_profile_denying_fd_and_signal_calls_like_runc() {
    for (label, rt) in runtimes() {
        let id = unique(&format!("execnofd-{label}"));
        let cg = format!("/{id}");
        let mut b = Bundle::busybox(std::path::Path::new("runc"), &["sleep", "30"], &cg);
        b.config["linux"]["seccomp"] =
            deny(&["close_range", "fcntl", "rt_sigaction", "rt_sigprocmask"]);
        b.save();
        rt.track(&id, &cg);
        rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
        let out = rt.run(&["exec", &id, "echo", "hi"]);
        assert!(out.status.success(), "{label}: {}", text(&out));
        assert_eq!(stdout(&out), "hi\n", "{label}");
        rt.ok(&["delete", "-f", &id]);
    }
}

/// An init that dies between `start` and the program (an exec that fails, a failing
/// startContainer hook) makes `start` fail with its error; the container is stopped. runc
/// 1.1's `start` returns 0 here and leaves the message on the container's stderr; berth follows
/// the spec ("MUST generate an error").
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_start_fails_with_the_init_error() {
    let rt = Runtime::berth();
    for (case, want) in [
        ("exec", "exec /bin/bad: exec format error"),
        ("hook", "startContainer"),
    ] {
        let id = unique(&format!("latefail-{case}"));
        let cg = format!("/{id}");
        let mut b = Bundle::busybox(&rt.bin, &["/bin/bad"], &cg);
        std::fs::write(b.rootfs().join("bin/bad"), b"\x7fELFnot really").unwrap();
        std::fs::set_permissions(
            b.rootfs().join("bin/bad"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        if case == "hook" {
            b.args(&["true"]);
            b.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
            b.save();
        }
        rt.track(&id, &cg);
        rt.ok_detached(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let out = rt.run(&["start", &id]);
        assert!(!out.status.success(), "{case}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{case}: {err}");
        assert_eq!(rt.state(&id)["status"], "stopped", "{case}");
        rt.ok(&["delete", &id]);
        assert_nothing_left(&rt, &b, &cg, None);
    }
}

/// A static program for the container that makes raw syscalls: each argument `NR[,A0,A1…]`
/// prints `NR[,A0…] -> RET ERRNO`.
const PROBE_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    unsigned long a[6] = {0};
    char *p = argv[i]; long nr = strtol(p, &p, 0); int k = 0;
    while (*p == ',' && k < 6) a[k++] = strtoul(p + 1, &p, 0);
    errno = 0;
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    printf("%s -> %ld %d\n", argv[i], r, r < 0 ? errno : 0);
  }
  return 0;
}
"#;

/// Puts the syscall prober at /bin/probe in `b`'s rootfs (gcc -static).
fn install_probe(b: &Bundle) {
    let src = b.path().join("probe.c");
    std::fs::write(&src, PROBE_C).unwrap();
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(b.rootfs().join("bin/probe"))
        .arg(&src)
        .output()
        .expect("gcc (scripts/setup.sh installs it)");
    assert!(out.status.success(), "gcc: {}", text(&out));
}

/// Runs the prober with `calls` under a seccomp `profile` in both runtimes; returns berth's
/// output after checking it equals runc's.
fn probe_both(test: &str, profile: &Value, calls: &[String]) -> String {
    let mut args = vec!["probe"];
    args.extend(calls.iter().map(String::as_str));
    let mut seen = Vec::new();
    for (label, rt) in runtimes() {
        let (out, _b) = run_with(&rt, &format!("{test}-{label}"), &args, |b| {
            install_probe(b);
            b.config["linux"]["seccomp"] = profile.clone();
        });
        assert!(out.status.success(), "{label}: {}", text(&out));
        seen.push(stdout(&out));
    }
    assert_eq!(
        seen[0], seen[1],
        "{test}: berth (left) and runc (right) judge the calls differently under {profile}"
    );
    seen.swap_remove(0)
}

/// Every argument comparison operator, with and without `valueTwo`, judged as runc judges it:
/// one rule per syscall that ignores its arguments (getppid, getpgrp, …), called with argument
/// values around each rule's.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_seccomp_argument_comparisons_match_runc() {
    // Syscalls that take no arguments, unused by the static prober itself.
    const NRS: [u32; 6] = [110, 111, 24, 186, 104, 108];
    let cases: Vec<Vec<Value>> = vec![
        vec![json!({"index": 0, "op": "SCMP_CMP_NE", "value": 3})],
        vec![json!({"index": 0, "op": "SCMP_CMP_LT", "value": 3})],
        vec![json!({"index": 0, "op": "SCMP_CMP_LE", "value": 3, "valueTwo": 9})],
        vec![json!({"index": 0, "op": "SCMP_CMP_EQ", "value": 3})],
        vec![json!({"index": 0, "op": "SCMP_CMP_GE", "value": 0x1_0000_0000u64})],
        vec![json!({"index": 0, "op": "SCMP_CMP_GT", "value": 3})],
        // Docker's clone rule: value is the mask, valueTwo what the masked argument must be.
        vec![
            json!({"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0x7E02_0000u64, "valueTwo": 0}),
        ],
        vec![json!({"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0xff, "valueTwo": 0x12})],
        vec![json!({"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 3})],
        // Two conditions on one argument (ORed, as runc does) and on two (ANDed).
        vec![
            json!({"index": 0, "op": "SCMP_CMP_EQ", "value": 1}),
            json!({"index": 0, "op": "SCMP_CMP_EQ", "value": 3}),
        ],
        vec![
            json!({"index": 0, "op": "SCMP_CMP_GT", "value": 1}),
            json!({"index": 1, "op": "SCMP_CMP_LT", "value": 5}),
        ],
    ];
    let values: [u64; 11] = [
        0,
        1,
        2,
        3,
        4,
        0x12,
        0x112,
        0x1000_0000,
        0x7E02_0000,
        0x1_0000_0000,
        u64::MAX,
    ];
    for (n, chunk) in cases.chunks(NRS.len()).enumerate() {
        let rules: Vec<Value> = chunk
            .iter()
            .zip(NRS)
            .map(|(args, nr)| {
                json!({"names": [name_of(nr)], "action": "SCMP_ACT_ERRNO", "errnoRet": 99, "args": args})
            })
            .collect();
        let profile = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules});
        let calls: Vec<String> = NRS[..chunk.len()]
            .iter()
            .flat_map(|nr| {
                values
                    .iter()
                    .flat_map(move |v| [format!("{nr},{v:#x}"), format!("{nr},{v:#x},9")])
            })
            .collect();
        let out = probe_both(&format!("seccmp{n}"), &profile, &calls);
        if n == 1 {
            // The Docker clone rule (getppid, the first of this chunk): 0 matches, a namespace
            // flag does not.
            assert!(out.contains("110,0x0 -> -1 99\n"), "{out}");
            assert!(out.contains("110,0x10000000 -> 0 0\n"), "{out}");
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn name_of(nr: u32) -> &'static str {
    match nr {
        110 => "getppid",
        111 => "getpgrp",
        24 => "sched_yield",
        186 => "gettid",
        104 => "getgid",
        108 => "getegid",
        _ => unreachable!(),
    }
}

/// Syscalls a profile with a denying default does not name: above the highest one it names
/// they fail with ENOSYS (runc's stub, so libc falls back from clone3 or close_range), below
/// with the default errno (`defaultErrnoRet`, else EPERM).
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_seccomp_unnamed_new_syscalls_get_enosys_like_runc() {
    let header = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
        .expect("linux-libc-dev (scripts/setup.sh)");
    // Everything below clone3 (435) but getppid (110).
    let older: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define __NR_")?.split_once(' '))
        .filter(|(name, nr)| nr.parse::<u32>().is_ok_and(|n| n < 435) && *name != "getppid")
        .map(|(name, _)| name)
        .collect();
    let calls: Vec<String> = ["110", "435", "436,1000,1000", "437", "439", "449", "500"]
        .map(String::from)
        .to_vec();
    for (n, (default_errno, extra)) in [(None, None), (Some(5), None), (None, Some("openat2"))]
        .into_iter()
        .enumerate()
    {
        let mut names = older.clone();
        names.extend(extra);
        let mut profile = json!({"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]});
        if let Some(e) = default_errno {
            profile["defaultErrnoRet"] = json!(e);
        }
        let out = probe_both(&format!("secnosys{n}"), &profile, &calls);
        let want_default = default_errno.unwrap_or(1);
        assert!(
            out.contains(&format!("110 -> -1 {want_default}\n")),
            "{out}"
        );
        assert!(out.contains("439 -> -1 38\n"), "{out}");
        if extra.is_none() {
            assert!(out.contains("435 -> -1 38\n"), "{out}");
        } else {
            assert!(
                out.contains("435 -> -1 1\n") && out.contains("437 -> -1 22\n"),
                "{out}"
            );
        }
    }
}

/// proc and sysfs must go on a directory: an image whose /proc or /sys is a symlink is
/// refused (with runc's message) instead of getting procfs mounted where the link points.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_proc_or_sys_as_symlink_is_refused_like_runc() {
    for dir in ["proc", "sys"] {
        for (label, rt) in runtimes() {
            let (out, b) = run_with(&rt, &format!("{dir}link-{label}"), &["true"], |b| {
                let r = b.rootfs();
                std::fs::remove_dir(r.join(dir)).unwrap();
                std::fs::create_dir(r.join("elsewhere")).unwrap();
                std::os::unix::fs::symlink("/elsewhere", r.join(dir)).unwrap();
            });
            let err = String::from_utf8_lossy(&out.stderr);
            let fs = if dir == "proc" { "proc" } else { "sysfs" };
            assert!(!out.status.success(), "{label} {dir}: {}", text(&out));
            assert!(
                err.contains(&format!(
                    "filesystem \\\"{fs}\\\" must be mounted on ordinary directory"
                )),
                "{label} {dir}: {err}"
            );
            assert_eq!(
                std::fs::read_dir(b.rootfs().join("elsewhere"))
                    .unwrap()
                    .count(),
                0
            );
        }
    }
}

/// Recursive mount attributes (`rro`, `rnosuid`, …) reach the mounts below a bind mount; a
/// read-only /dev is populated first; `tmpcopyup` fills a tmpfs with what it covers. The
/// container sees the same under both runtimes.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_recursive_options_read_only_dev_and_tmpcopyup_like_runc() {
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(mounted.success());
    let script = "grep -E ' /(h|h/sub|dev|etc) ' /proc/mounts | cut -d' ' -f2,4 | sed 's/,size=[^,]*//'; \
        touch /h/sub/x 2>/dev/null && echo sub-writable || echo sub-read-only; \
        touch /dev/x 2>/dev/null && echo dev-writable || echo dev-read-only; \
        ls /dev | tr '\\n' ' '; echo; stat -c '%n %A %u:%g' /etc/*; echo link: $(readlink /etc/link)";
    let mut seen = Vec::new();
    for (label, rt) in runtimes() {
        let (out, _b) = run_with(
            &rt,
            &format!("recopts-{label}"),
            &["sh", "-c", script],
            |b| {
                let mounts = b.config["mounts"].as_array_mut().unwrap();
                for m in mounts.iter_mut() {
                    if m["destination"] == "/dev" {
                        m["options"].as_array_mut().unwrap().push(json!("ro"));
                    }
                }
                mounts.push(
                    json!({"destination": "/h", "type": "bind", "source": host.path(),
                "options": ["rbind", "rro", "rnosuid", "rnodev"]}),
                );
                mounts.push(
                    json!({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                "options": ["tmpcopyup", "mode=755"]}),
                );
                std::fs::create_dir(b.rootfs().join("etc/private")).unwrap();
                std::os::unix::fs::symlink("passwd", b.rootfs().join("etc/link")).unwrap();
            },
        );
        assert!(out.status.success(), "{label}: {}", text(&out));
        seen.push(stdout(&out));
    }
    let _ = std::process::Command::new("umount").arg(&sub).status();
    assert!(seen[0].contains("/h/sub ro,nosuid,nodev"), "{}", seen[0]);
    assert!(seen[0].contains("sub-read-only") && seen[0].contains("dev-read-only"));
    assert!(seen[0].contains("link: passwd"), "{}", seen[0]);
    assert_eq!(seen[0], seen[1], "berth (left) and runc (right) differ");
}

/// Options the kernel would ignore on a bind mount are refused, not silently dropped.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_unknown_bind_mount_option_is_an_error() {
    let rt = Runtime::berth();
    let (out, _b) = run_with(&rt, "unknownopt", &["true"], |b| {
        b.config["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/h", "type": "bind", "source": "/tmp", "options": ["rbind", "rro", "recursive-ro"]}),
        );
    });
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown mount option") && err.contains("recursive-ro"),
        "{err}"
    );
}

/// A config without namespaces shares the caller's (the spec allows it): berth runs it in a
/// chroot, mounting nothing. With masked or read-only paths it is refused with runc's message.
/// runc 1.1 would mount the spec's mounts in the caller's namespace (and leave them there):
/// berth refuses mounts without a mount namespace instead.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_no_namespaces_shares_the_callers() {
    let rt = Runtime::berth();
    let id = unique("nons");
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(
        std::path::Path::new("runc"),
        &["sh", "-c", "echo ok; ls /dev/null; cat /etc/passwd | wc -l"],
        &cg,
    );
    rt.track(&id, &cg);
    b.config["linux"]["namespaces"] = json!([]);
    b.config["mounts"] = json!([]);
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.config["hostname"].take();
    b.config["root"]["readonly"] = json!(false);
    b.save();
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "ok\n/dev/null\n2\n", "{}", text(&out));
    assert_nothing_left(&rt, &b, &cg, None);

    for (label, rt) in runtimes() {
        let (out, b) = run_with(&rt, &format!("nonsmasked-{label}"), &["true"], |b| {
            b.config["linux"]["namespaces"] = json!([]);
            b.config["mounts"] = json!([]);
            b.config["hostname"].take();
        });
        assert!(!out.status.success(), "{label}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unable to restrict sys entries without a private MNT namespace"),
            "{label}: {err}"
        );
        assert_eq!(
            berth_tests::bundle::mounts_under(b.path()),
            Vec::<String>::new()
        );
    }
}

/// runc 1.1 does not check `ociVersion` (missing, empty, not SemVer, another major): neither
/// does berth, so every bundle runc runs, berth runs.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_oci_version_is_not_checked_like_runc() {
    for (n, v) in [None, Some(""), Some("garbage"), Some("2.0.0")]
        .into_iter()
        .enumerate()
    {
        for (label, rt) in runtimes() {
            let (out, _b) = run_with(&rt, &format!("ociver{n}-{label}"), &["true"], |b| match v {
                None => drop(b.config.as_object_mut().unwrap().remove("ociVersion")),
                Some(v) => b.config["ociVersion"] = json!(v),
            });
            assert!(out.status.success(), "{label} {v:?}: {}", text(&out));
        }
    }
}

/// In a user namespace, bind mount sources the container's root cannot reach (under a 0700
/// directory of the host's root) are mounted all the same, as runc does: the runtime clones
/// them (open_tree) before the container enters its namespace.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_user_namespace_binds_unreachable_sources_like_runc() {
    let host = tempfile::tempdir().unwrap();
    let private = host.path().join("private");
    std::fs::create_dir_all(private.join("dir")).unwrap();
    std::fs::write(private.join("dir/in"), "inside\n").unwrap();
    std::fs::write(private.join("file"), "file\n").unwrap();
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut seen = Vec::new();
    for (label, rt) in runtimes() {
        let (out, _b) = run_with(
            &rt,
            &format!("usersrc-{label}"),
            &[
                "sh",
                "-c",
                "cat /d/in /f; grep -E ' /(d|f) ' /proc/mounts | cut -d' ' -f2,4",
            ],
            |b| {
                // Mount points the mapped root cannot create in a rootfs the host's root owns.
                std::fs::create_dir(b.rootfs().join("d")).unwrap();
                std::fs::write(b.rootfs().join("f"), "").unwrap();
                b.config["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                b.config["linux"]["uidMappings"] = map.clone();
                b.config["linux"]["gidMappings"] = map;
                let mounts = b.config["mounts"].as_array_mut().unwrap();
                mounts.retain(|m| m["type"] != "cgroup");
                mounts.push(json!({"destination": "/d", "type": "bind",
                    "source": private.join("dir"), "options": ["rbind", "ro"]}));
                mounts.push(json!({"destination": "/f", "type": "bind",
                    "source": private.join("file"), "options": ["bind"]}));
            },
        );
        assert!(out.status.success(), "{label}: {}", text(&out));
        seen.push(stdout(&out));
    }
    assert!(seen[0].starts_with("inside\nfile\n"), "{}", seen[0]);
    assert!(seen[0].contains("/d ro,"), "{}", seen[0]);
    assert_eq!(seen[0], seen[1], "berth (left) and runc (right) differ");
}

/// runc 1.1 loads the filter before the startContainer hooks, with and without
/// no_new_privs: a hook is subject to the container's seccomp profile under both runtimes.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_start_container_hooks_run_under_the_filter_like_runc() {
    for nnp in [true, false] {
        let mut seen = Vec::new();
        for (label, rt) in runtimes() {
            let (out, _b) = run_with(
                &rt,
                &format!("hookfilter-{nnp}-{label}"),
                &[
                    "sh",
                    "-c",
                    "ls -d /tmp/hookdir 2>/dev/null || echo no-hookdir; cat /tmp/hookerr",
                ],
                |b| {
                    b.config["process"]["noNewPrivileges"] = json!(nnp);
                    b.config["root"]["readonly"] = json!(false);
                    let mut profile = deny(&["mkdir", "mkdirat"]);
                    profile["syscalls"][0]["errnoRet"] = json!(5);
                    b.config["linux"]["seccomp"] = profile;
                    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/sh",
                        "args": ["sh", "-c", "mkdir /tmp/hookdir 2>/tmp/hookerr; true"]}]});
                },
            );
            assert!(out.status.success(), "{label}, nnp {nnp}: {}", text(&out));
            seen.push(stdout(&out));
        }
        assert!(
            seen[0].starts_with("no-hookdir\n"),
            "nnp {nnp}: {}",
            seen[0]
        );
        assert_eq!(
            seen[0], seen[1],
            "nnp {nnp}: berth (left) and runc (right) differ"
        );
    }
}

/// Sysctls the container's namespaces do not isolate would change the host's kernel: refused
/// with runc's messages; a domain name without a UTS namespace is left alone, as runc does.
/// The values written are the host's own, so a regression changes nothing on the host.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_host_kernel_settings_are_refused_like_runc() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    let host = |p: &str| (p.to_string(), read(p));
    let before = [
        host("/proc/sys/vm/swappiness"),
        host("/proc/sys/kernel/shmmax"),
        host("/proc/sys/net/ipv4/ip_forward"),
        host("/proc/sys/kernel/domainname"),
    ];
    let cases: [(&str, &str, &str, &str); 4] = [
        (
            "vm.swappiness",
            "",
            "/proc/sys/vm/swappiness",
            "is not in a separate kernel namespace",
        ),
        (
            "kernel.shmmax",
            "ipc",
            "/proc/sys/kernel/shmmax",
            "is not allowed in the hosts ipc namespace",
        ),
        (
            "net.ipv4.ip_forward",
            "network",
            "/proc/sys/net/ipv4/ip_forward",
            "not allowed in host network namespace",
        ),
        (
            "kernel.domainname",
            "uts",
            "/proc/sys/kernel/domainname",
            "is not in a separate kernel namespace",
        ),
    ];
    for (n, (sysctl, drop_ns, file, want)) in cases.into_iter().enumerate() {
        for (label, rt) in runtimes() {
            let (out, _b) = run_with(&rt, &format!("sysctl{n}-{label}"), &["true"], |b| {
                b.config["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|ns| ns["type"] != drop_ns);
                if drop_ns == "uts" {
                    b.config["hostname"].take();
                }
                b.config["linux"]["sysctl"] = json!({sysctl: read(file)});
            });
            assert!(!out.status.success(), "{label} {sysctl}: {}", text(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(want), "{label} {sysctl}: {err}");
        }
    }
    for (label, rt) in runtimes() {
        let (out, _b) = run_with(
            &rt,
            &format!("domain-{label}"),
            &["cat", "/proc/sys/kernel/domainname"],
            |b| {
                b.config["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|ns| ns["type"] != "uts");
                b.config["hostname"].take();
                b.config["domainname"] = json!("berth-test.invalid");
            },
        );
        assert!(out.status.success(), "{label}: {}", text(&out));
        assert_eq!(stdout(&out).trim(), before[3].1, "{label}");
    }
    for (path, value) in before {
        assert_eq!(read(&path), value, "{path} changed on the host");
    }
}

/// Bind mounts into /proc follow runc's rule: over /proc only a procfs, below it only the
/// files lxcfs emulates (/proc/cpuinfo, …); /proc/1 or /proc/self/… are refused.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_bind_mounts_into_proc_are_refused_like_runc() {
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("cpuinfo");
    std::fs::write(&file, "not a cpu\n").unwrap();
    let cases = [
        (
            "/proc/1",
            host.path(),
            Some("cannot be mounted because it is inside /proc"),
        ),
        (
            "/proc/self/attr/current",
            file.as_path(),
            Some("cannot be mounted because it is inside /proc"),
        ),
        (
            "/proc",
            host.path(),
            Some("cannot be mounted because it is not of type proc"),
        ),
        ("/proc/cpuinfo", file.as_path(), None),
    ];
    for (n, (dest, src, refusal)) in cases.into_iter().enumerate() {
        for (label, rt) in runtimes() {
            let (out, _b) = run_with(
                &rt,
                &format!("procbind{n}-{label}"),
                &["cat", "/proc/cpuinfo"],
                |b| {
                    b.config["mounts"].as_array_mut().unwrap().push(
                    json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind"]}),
                );
                },
            );
            match refusal {
                Some(want) => {
                    assert!(!out.status.success(), "{label} {dest}: {}", text(&out));
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(err.contains(want), "{label} {dest}: {err}");
                }
                None => {
                    assert!(out.status.success(), "{label} {dest}: {}", text(&out));
                    assert_eq!(stdout(&out), "not a cpu\n", "{label}");
                }
            }
        }
    }
}

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

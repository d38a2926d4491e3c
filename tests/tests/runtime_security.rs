//! berth-runtime's security properties: the runtime binary cannot be reached through /proc
//! from the container (CVE-2019-5736), and the console socket protocol (SCM_RIGHTS).
#![allow(unsafe_code)]

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixListener;

use berth_tests::bundle::{Bundle, Runtime, assert_nothing_left, unique};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde_json::json;

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_cve_2019_5736_runtime_exe_not_openable() {
    let rt = Runtime::berth();
    let id = unique("cve");
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(
        &rt.bin,
        &[
            "sh",
            "-c",
            "echo init=$(readlink /proc/1/exe); for p in /proc/[0-9]*; do readlink $p/exe; done | grep -c berth-runtime; true",
        ],
        &cg,
    );
    rt.track(&id, &cg);
    let out = tempfile::tempdir().unwrap();
    let result = out.path().join("result");
    // The startContainer hook runs inside the container, as the container's user with the
    // container's capabilities, while the init (the runtime binary's image, between set-up
    // and exec) waits for it: exactly the position of a malicious container process. It tries
    // to reach the init's executable, and as a control a dumpable process of its own with the
    // same capabilities.
    let probe = "readlink /proc/1/exe >/dev/null 2>&1 && echo init=readable || echo init=denied; \
        cat /proc/1/exe >/dev/null 2>&1 && echo initopen=readable || echo initopen=denied; \
        sleep 5 & c=$!; readlink /proc/$c/exe >/dev/null 2>&1 && echo control=readable || echo control=denied; kill $c; \
        grep CapEff /proc/self/status";
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/out", "type": "bind", "source": out.path(), "options": ["rbind", "rw"]}));
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("({probe}) > /out/result")]}]});
    b.save();
    let run = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r = std::fs::read_to_string(&result).unwrap();
    assert!(
        r.contains("control=readable"),
        "control: a dumpable process with the same capabilities is reachable:\n{r}"
    );
    assert!(
        r.contains("init=denied"),
        "the init's /proc/PID/exe must be refused:\n{r}"
    );
    assert!(r.contains("initopen=denied"), "{r}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("init=/bin/busybox"),
        "after exec the init is the user's program: {stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("0"),
        "no process in the container runs the runtime binary"
    );
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_console_socket_receives_pty_master() {
    let rt = Runtime::berth();
    let id = unique("console");
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(
        &rt.bin,
        &[
            "sh",
            "-c",
            "tty; ls -l /dev/console | cut -c1; echo hi-from-tty",
        ],
        &cg,
    );
    rt.track(&id, &cg);
    b.config["process"]["terminal"] = json!(true);
    b.save();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut create = rt
        .cmd(&[
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            &id,
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut master = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
            master = Some(unsafe { std::fs::File::from_raw_fd(fds[0]) });
        }
    }
    let mut master = master.expect("a pty master fd over SCM_RIGHTS");
    assert!(create.wait().unwrap().success());
    rt.ok(&["start", &id]);
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match master.read(&mut chunk) {
            Ok(0) | Err(_) => break, // EIO once the slave side is closed
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("hi-from-tty"), "{out}");
    assert!(
        out.contains("\nc") || out.starts_with('c') || out.contains("\r\nc"),
        "/dev/console is the pty: {out}"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &b, &cg, None);
}

#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_run_with_terminal_and_no_console_socket_proxies_the_pty() {
    let rt = Runtime::berth();
    let id = unique("runtty");
    let cg = format!("/{id}");
    let mut b = Bundle::busybox(&rt.bin, &["sh", "-c", "tty; echo via-pty; exit 4"], &cg);
    rt.track(&id, &cg);
    b.config["process"]["terminal"] = json!(true);
    b.save();
    let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("/dev/pts/0") && stdout.contains("via-pty"),
        "{stdout}"
    );
    // exec --tty without a console socket: the same proxy.
    b.config["process"]["terminal"] = json!(false);
    b.args(&["sleep", "30"]);
    rt.ok_detached(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let out = rt.run(&["exec", "--tty", &id, "sh", "-c", "tty; exit 6"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"));
    rt.ok(&["delete", "-f", &id]);
    assert_nothing_left(&rt, &b, &cg, None);
}

/// Creates `id` from `b` with a console socket, starts it and returns what the container wrote
/// on its terminal.
fn console_output(rt: &Runtime, b: &Bundle, id: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut create = rt
        .cmd(&[
            "create",
            "--bundle",
            b.path().to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            id,
        ])
        .spawn()
        .unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut master = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
            master = Some(unsafe { std::fs::File::from_raw_fd(fds[0]) });
        }
    }
    let mut master = master.expect("a pty master fd over SCM_RIGHTS");
    assert!(create.wait().unwrap().success());
    rt.ok(&["start", id]);
    let mut out = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match master.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

/// The container's user owns its terminal (the pty slave, its stdio and /dev/console) and the
/// stdio it was lent, as under runc: uid changed, the tty group kept, /dev/null left alone.
#[test]
#[ignore = "needs root: namespaces, mounts, cgroups"]
fn runtime_tty_and_stdio_belong_to_the_container_user_like_runc() {
    let probe = "stat -L -c '%n %u:%g %a' /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2";
    let mut seen = Vec::new();
    for (label, rt) in [("berth", Runtime::berth()), ("runc", Runtime::runc())] {
        let id = unique(&format!("ttyowner-{label}"));
        let cg = format!("/{id}");
        let mut b = Bundle::busybox(
            std::path::Path::new("runc"),
            &["sh", "-c", &format!("{probe} /dev/console")],
            &cg,
        );
        rt.track(&id, &cg);
        b.config["process"]["terminal"] = json!(true);
        b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        // runc spec's ambient set cannot be raised (berth warns, runc does not): left out.
        b.config["process"]["capabilities"]["ambient"] = json!([]);
        b.save();
        let tty = console_output(&rt, &b, &id);
        rt.ok(&["delete", "--force", &id]);
        // Without a terminal: the pipes `run` gets from this test (runc's own in foreground).
        b.config["process"]["terminal"] = json!(false);
        b.args(&["sh", "-c", &format!("{probe} | tail -2")]);
        let out = rt.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        assert!(out.status.success(), "{label}: {out:?}");
        seen.push(format!("{tty}{}", String::from_utf8_lossy(&out.stdout)));
    }
    assert!(seen[0].contains("/dev/console 1000:5 620"), "{}", seen[0]);
    assert!(seen[0].contains("/proc/self/fd/2 1000:"), "{}", seen[0]);
    assert_eq!(seen[0], seen[1], "berth (left) and runc (right) differ");
}

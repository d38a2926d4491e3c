//! The `berth` CLI against berthd under a real systemd (booted in private namespaces): every
//! container command with `--json` prints JSON that parses and says what happened; the last exit
//! (code, signal, OOM kill) read from the shim's `exit.json`; and `berth exec -it` on a real
//! terminal (window size and TERM reach the process).
#![allow(unsafe_code)]

use berth_tests::agent::{Agent, IMAGE};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_status_shows_last_exit_and_oom_kill() {
    let a = Agent::start("agent-exit").unwrap();
    a.start_berthd(true).unwrap();
    a.write(
        "three",
        &format!("image_file: {IMAGE}\ncommand: [sh, -c, 'exit 3']\nnetwork_mode: none\nrestart: \"no\"\n"),
    );
    a.write(
        "hog",
        &format!(
            "image_file: {IMAGE}\ncommand: [sh, -c, 'echo eating; tail /dev/zero']\nnetwork_mode: none\n\
             restart: \"no\"\nmem_limit: 32M\n"
        ),
    );
    let last_exit = |name: &str| {
        a.ps()
            .ok()
            .and_then(|m| m.get(name).map(|s| s["last_exit"].clone()))
            .filter(|v| !v.is_null())
    };
    a.wait(T, "both exits recorded", || {
        last_exit("three").is_some() && last_exit("hog").is_some()
    })
    .unwrap();
    let three = last_exit("three").unwrap();
    assert_eq!(three["exit"]["exited"], 3, "{three}");
    assert_eq!(three["oom_killed"], false, "{three}");
    let out = a.berth(&["status", "three"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("last exit:") && l.trim_end().ends_with("exited 3")),
        "{text}"
    );
    let hog = last_exit("hog").unwrap();
    assert_eq!(hog["oom_killed"], true, "{hog}");
    assert_eq!(hog["status"], 137, "{hog}");
    let out = a.berth(&["status", "hog"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("last exit:   killed by signal 9 (OOM-killed)"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&a.berth(&["inspect", "hog"]).unwrap().stdout).unwrap();
    assert_eq!(v["status"]["last_exit"]["oom_killed"], true, "{v}");
}

/// `berth exec -it` on a terminal the test owns (the pty is the controlling terminal of the
/// `berth` process, as a shell's terminal is): the process in the container sees the terminal's
/// size from its start, a later resize (SIGWINCH) reaches it, and TERM is the client's.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_exec_tty_window_size_and_term() {
    use berth_proto::protocol::ConsoleSize;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    use std::time::Instant;

    let a = Agent::start("agent-exec-tty").unwrap();
    a.start_berthd(true).unwrap();
    a.write(
        "box",
        &format!(
            "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n"
        ),
    );
    a.wait(T, "box active", || a.active("box")).unwrap();

    let pty = nix::pty::openpty(None, None).unwrap();
    ConsoleSize {
        rows: 37,
        cols: 101,
    }
    .set_on(pty.master.as_fd())
    .unwrap();
    let berth = berth_tests::systemd::bin_path("berth");
    let mut cmd = std::process::Command::new("nsenter");
    cmd.arg("-t")
        .arg(a.sd.pid().to_string())
        .arg("-a")
        .arg(&berth)
        .args(["exec", "-it", "box", "sh", "-c"])
        .arg(
            "stty size; echo T=$TERM; while [ \"$(stty size)\" = \"37 101\" ]; do sleep 0.1; done; \
             stty size; echo done",
        )
        .env("TERM", "screen-256color")
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    // SAFETY: between fork and exec the child only calls setsid and ioctl (async-signal-safe)
    // to make the pty on its stdin its controlling terminal.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);
    let master = std::fs::File::from(pty.master);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 1024];
        while let Ok(n) = reader.read(&mut b) {
            if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let mut read_until = |what: &str| {
        let t0 = Instant::now();
        while !out.contains(what) {
            let left = Duration::from_secs(20).saturating_sub(t0.elapsed());
            match rx.recv_timeout(left) {
                Ok(b) => out.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("no {what:?} from berth exec -it; output so far: {out:?}"),
            }
        }
        out.clone()
    };
    let first = read_until("T=screen-256color");
    assert!(first.contains("37 101"), "{first:?}");
    assert!(first.contains("T=screen-256color"), "{first:?}");
    // A resize of the client's terminal reaches the process in the container.
    ConsoleSize {
        rows: 50,
        cols: 120,
    }
    .set_on(master.as_fd())
    .unwrap();
    let t0 = Instant::now();
    while !out.contains("done") && t0.elapsed() < Duration::from_secs(20) {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(200)) {
            out.push_str(&String::from_utf8_lossy(&b));
        }
    }
    if !out.contains("done") {
        let ps = a
            .berth(&["exec", "box", "ps", "-o", "pid,stat,args"])
            .unwrap();
        panic!(
            "no resize seen by the process: {out:?}; processes in the container:\n{}",
            String::from_utf8_lossy(&ps.stdout)
        );
    }
    let all = out.clone();
    assert!(all.contains("50 120"), "{all:?}");
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}: {all:?}");
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_every_container_command_prints_json() {
    let a = Agent::start("agent-cli-json").unwrap();
    a.start_berthd(true).unwrap();
    let spec = format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n"
    );
    a.write("web", &spec);
    a.wait(T, "web running", || a.phase("web") == "running")
        .unwrap();
    // berthd's lines about a pass carry the container as a journal field (the pass's span), not
    // as a prefix of the message.
    let out =
        a.sd.exec_inside(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "berthd",
            "CONTAINER=web",
        ])
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout);
    assert!(lines.lines().any(|l| l == "starting"), "{lines}");
    // `berth --json ARGS`: the exit code it had and its output as JSON.
    let json = |args: &[&str]| -> (Option<i32>, Value) {
        // First: after `exec NAME` everything is the command's.
        let mut argv = vec!["--json"];
        argv.extend_from_slice(args);
        let out = a.berth(&argv).unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "berth {argv:?} printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    };

    let (code, ps) = json(&["ps"]);
    assert_eq!(code, Some(0));
    assert_eq!(ps[0]["name"], "web", "{ps}");
    assert_eq!(ps[0]["phase"], "running", "{ps}");
    let (_, all) = json(&["status"]);
    assert_eq!(all, ps);
    let (code, st) = json(&["status", "web"]);
    assert_eq!(code, Some(0));
    assert_eq!(st["unit"]["active_state"], "active", "{st}");
    let (_, inspect) = json(&["inspect", "web"]);
    assert!(inspect["record"]["hash"].is_string(), "{inspect}");
    let (code, check) = json(&["check", "/srv/tb/specs/web.yaml"]);
    assert_eq!(code, Some(0));
    assert_eq!(check[0]["ok"], true, "{check}");
    let (code, diff) = json(&["diff"]);
    assert_eq!((code, &diff["web"]["action"]), (Some(0), &"nothing".into()));
    let (code, exec) = json(&["exec", "web", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code, Some(3));
    assert_eq!(
        exec,
        serde_json::json!({"exit_code": 3, "stdout": "out\n", "stderr": "err\n"})
    );

    let invocation = a.show("web", "InvocationID");
    let (code, r) = json(&["restart", "web"]);
    assert_eq!((code, &r["restarting"]), (Some(0), &"web".into()), "{r}");
    a.wait(T, "web restarted", || {
        a.active("web") && a.show("web", "InvocationID") != invocation
    })
    .unwrap();

    let api = a.sd.share_dir().join("api.yaml");
    std::fs::write(&api, &spec).unwrap();
    let (code, r) = json(&["apply", "/srv/tb/api.yaml", "--name", "api"]);
    assert_eq!((code, &r["applied"]), (Some(0), &"api".into()), "{r}");
    a.wait(T, "api active", || a.active("api")).unwrap();
    let (code, r) = json(&["rm", "api"]);
    assert_eq!((code, &r["deleted"]), (Some(0), &"api".into()), "{r}");

    // `logs --json`: one journal entry per line.
    let out = a.berth(&["logs", "web", "--json"]).unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|e| e["__CURSOR"].is_string()), "{lines:?}");
}

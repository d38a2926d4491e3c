//! The `berth` CLI against berthd under a real systemd (booted in private namespaces): every
//! container command with `--json` prints JSON that parses and says what happened.

use berth_tests::agent::{Agent, IMAGE};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

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

//! What the `berth` CLI shows of a container, end to end under a real systemd with berthd: the
//! last exit (code, signal, OOM kill) read from the shim's `exit.json`, and `berth exec -it` on a
//! real terminal (window size and TERM reach the process).

use berth_tests::agent::{Agent, IMAGE};
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

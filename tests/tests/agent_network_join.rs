//! `network_mode: container:<name>` under a real systemd, in the test systemd's own network
//! namespace (no traffic leaves it): a busybox httpd in a bridge container is reached from a
//! second container on 127.0.0.1 through the namespace they share, the joiner sees its target's
//! /etc/hosts, follows the target when berthd restarts it, and `berth check` refuses a target
//! without a namespace to share at its line and column.

use berth_tests::agent::{Agent, IMAGE};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn exec(a: &Agent, name: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", name];
    args.extend_from_slice(argv);
    let out = a.berth(&args).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_container_mode_shares_the_targets_namespace() {
    let a = Agent::start("agent-net-join").unwrap();
    a.start_berthd(true).unwrap();
    // b first: it waits for its target.
    a.write(
        "b",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: container:web\nstop_grace_period: 1s\n\
             command: [sleep, '3600']\n"
        ),
    );
    a.write(
        "web",
        &format!(
            "image_file: {IMAGE}\nstop_grace_period: 1s\n\
             command: [sh, -c, 'mkdir -p /www && echo served-by-web > /www/index.html && \
             exec httpd -f -p 80 -h /www']\n"
        ),
    );
    a.wait(T, "both running", || {
        a.phase("web") == "running" && a.phase("b") == "running"
    })
    .unwrap();
    let get = || exec(&a, "b", &["wget", "-qO-", "http://127.0.0.1/"]);
    a.wait(T, "b reaching web's httpd on 127.0.0.1", || {
        get().contains("served-by-web")
    })
    .unwrap_or_else(|e| {
        let out = a.berth(&["exec", "b", "wget", "-qO-", "http://127.0.0.1/"]);
        panic!(
            "{e}\nlast: {out:?}\nb: {}\nweb: {}\nb ns: {}",
            exec(&a, "b", &["ip", "-o", "-4", "addr"]),
            exec(&a, "web", &["ip", "-o", "-4", "addr"]),
            exec(&a, "b", &["cat", "/etc/hosts"]),
        )
    });
    // One namespace: the same interfaces, web's address in web's /etc/hosts, seen from b.
    let addr = a.ps().unwrap()["web"]["network"]["networks"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(exec(&a, "b", &["ip", "-o", "-4", "addr"]).contains(&addr));
    let hosts = exec(&a, "b", &["cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{addr}\tweb")), "{hosts}");
    // berthd restarts web: b's namespace went with it, so b is restarted and reaches web again.
    let b_pid = a.show("b", "MainPID");
    let out = a.berth(&["restart", "web"]).unwrap();
    assert!(out.status.success(), "{out:?}");
    a.wait(T, "b restarted after web", || {
        let p = a.show("b", "MainPID");
        p != b_pid && p != "0" && a.phase("b") == "running" && a.phase("web") == "running"
    })
    .unwrap();
    a.wait(T, "b reaching web again", || {
        get().contains("served-by-web")
    })
    .unwrap_or_else(|e| panic!("{e}\nlast: {}", get()));

    // berth check: a target on the host network, at the line and column of network_mode.
    a.write("h", &format!("image_file: {IMAGE}\nnetwork_mode: host\n"));
    a.write(
        "bad",
        &format!("image_file: {IMAGE}\nnetwork_mode: container:h\n"),
    );
    let out = a.berth(&["check", "/srv/tb/specs/bad.yaml"]).unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("/srv/tb/specs/bad.yaml:2:1") && err.contains("network_mode: host"),
        "{err}"
    );
    for n in ["bad", "h", "b", "web"] {
        a.rm(n);
    }
    a.wait(T, "all gone", || a.ps().is_ok_and(|m| m.is_empty()))
        .unwrap();
}

//! `systemctl daemon-reload` and `daemon-reexec` under a running berthd (a real systemd 252 in
//! private namespaces): berthd keeps its D-Bus connection or gets it back, its unit watch still
//! sees units change, no container is restarted, and a spec change right after is applied.

use berth_tests::agent::{Agent, IMAGE};
use std::time::Duration;

/// Well below berthd's periodic resync (5 min): what happens within it came from a watch.
const T: Duration = Duration::from_secs(60);

fn spec(round: u32) -> String {
    format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n\
         stop_grace_period: 1s\nenvironment: {{ROUND: \"{round}\"}}\n"
    )
}

fn ids(a: &Agent, names: &[&str]) -> Vec<String> {
    names.iter().map(|n| a.show(n, "InvocationID")).collect()
}

/// The ROUND the container's unit was started with (its bundle's config.json).
fn running_round(a: &Agent, n: &str) -> String {
    let p =
        a.sd.root_path()
            .join(format!("run/berth/containers/{n}/config.json"));
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| {
            s.split('"')
                .find_map(|f| f.strip_prefix("ROUND=").map(str::to_owned))
        })
        .unwrap_or_default()
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_systemd_daemon_reload_and_reexec_keep_containers_and_watches() {
    let a = Agent::start("agent-reexec").unwrap();
    a.start_berthd(true).unwrap();
    let names = ["r1", "r2", "r3"];
    for n in &names {
        a.write(n, &spec(0));
    }
    a.wait(T, "all running", || {
        names.iter().all(|n| a.phase(n) == "running")
    })
    .unwrap();
    let berthd = a.show_unit("berthd.service", "MainPID");
    let mut round = 0;
    for verb in ["daemon-reload", "daemon-reexec"] {
        let before = ids(&a, &names);
        let r1_starts = a.starts("r1");
        let systemd_pid_before = a.sd.pid();
        // systemctl returns once systemd answers again; the spec changes at once after.
        a.sd.systemctl(&[verb]).unwrap();
        round += 1;
        a.write("r1", &spec(round));
        assert_eq!(a.sd.pid(), systemd_pid_before);
        a.wait(
            T,
            &format!("r1 restarted with its new spec after {verb}"),
            || running_round(&a, "r1") == round.to_string() && a.phase("r1") == "running",
        )
        .unwrap();
        // A second start would come soon after the first: give it time to show.
        std::thread::sleep(Duration::from_secs(2));
        let after = ids(&a, &names);
        assert_ne!(after[0], before[0], "{verb}: r1 kept its old spec");
        assert_eq!(
            a.starts("r1"),
            r1_starts + 1,
            "{verb}: r1 started more than once"
        );
        assert_eq!(after[1..], before[1..], "{verb} restarted r2 or r3");
        assert_eq!(
            a.show_unit("berthd.service", "MainPID"),
            berthd,
            "{verb}: berthd itself was restarted"
        );
        // The unit watch: a container stopped behind berthd's back is started again at once
        // (an event, not the periodic resync).
        let unit = format!("berth-{}.service", names[2]);
        a.sd.systemctl(&["stop", &unit]).unwrap();
        a.wait(T, &format!("r3 started again after {verb}"), || {
            a.active("r3") && a.show("r3", "InvocationID") != after[2]
        })
        .unwrap();
    }
    // systemd re-executes while berthd restarts containers (its jobs queued, their ends awaited).
    let starts: Vec<usize> = names.iter().map(|n| a.starts(n)).collect();
    round += 1;
    for n in &names {
        a.write(n, &spec(round));
    }
    std::thread::sleep(Duration::from_millis(300));
    a.sd.systemctl(&["daemon-reexec"]).unwrap();
    a.wait(
        T,
        "all restarted with their new spec across the re-execution",
        || {
            names
                .iter()
                .all(|n| running_round(&a, n) == round.to_string() && a.phase(n) == "running")
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let now: Vec<usize> = names.iter().map(|n| a.starts(n)).collect();
    assert_eq!(now, starts.iter().map(|s| s + 1).collect::<Vec<_>>());
    // systemd did re-execute (or the test above could not fail for the reason it names).
    let out =
        a.sd.exec_inside(&[
            "journalctl",
            "--no-pager",
            "-q",
            "_PID=1",
            "-g",
            "Reexecuting",
        ])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Reexecuting"),
        "no re-execution in the journal: {out:?}"
    );
    let out = a.berth(&["status", "--json"]).unwrap();
    assert!(out.status.success(), "{out:?}");
}

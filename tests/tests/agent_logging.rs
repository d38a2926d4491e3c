//! A container's output and journald's rate limit, under a real systemd and journald (booted in
//! private namespaces): berth's default keeps a 100,000-line burst whole (journald's own default
//! keeps about 35,000), `logging.options` sets the unit's limit, and `berth status` says how many
//! lines the limit dropped.

use berth_tests::agent::{Agent, IMAGE};
use std::process::Command;
use std::time::{Duration, Instant};

/// The unit's lines as plain messages (`journalctl -o cat`), oldest first.
fn messages(a: &Agent, name: &str) -> Vec<String> {
    let out = Command::new("journalctl")
        .arg("-D")
        .arg(a.sd.journal_dir().unwrap())
        .args([
            "--no-pager",
            "-o",
            "cat",
            "-u",
            &format!("berth-{name}.service"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until the container has written `marker` (journald is read every second: the whole
/// journal of a burst is too big to parse every 100 ms).
fn wait_for_line(a: &Agent, name: &str, marker: &str, timeout: Duration) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let m = messages(a, name);
        if m.iter().any(|l| l == marker) {
            return m;
        }
        assert!(
            t0.elapsed() < timeout,
            "no line {marker:?} of {name} in {timeout:?}; {} lines, last: {:?}",
            m.len(),
            m.last()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The numbered lines `seq` wrote, in the order journald kept them.
fn numbers(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.parse().ok()).collect()
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_log_burst_is_kept_whole_and_drops_are_reported() {
    let a = Agent::start("agent-logs").unwrap();
    a.start_berthd(true).unwrap();
    a.write(
        "burst",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\n\
             command: [sh, -c, 'seq 1 100000; echo done; exec sleep 3600']\n"
        ),
    );
    // A limit of 1000 lines per 2 s, then a line after the window: journald reports what it
    // dropped when the next line passes.
    a.write(
        "limited",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\n\
             logging:\n  driver: journald\n  options: {{rate-limit-burst: 1000, rate-limit-interval: 2s}}\n\
             command: [sh, -c, 'seq 1 20000; sleep 3; echo done; exec sleep 3600']\n"
        ),
    );
    let t = Duration::from_secs(180);

    let burst = wait_for_line(&a, "burst", "done", t);
    let n = numbers(&burst);
    assert_eq!(n.len(), 100_000, "lines of the burst kept by journald");
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "lines out of order");
    assert!(
        !burst.iter().any(|l| l.starts_with("Suppressed ")),
        "journald dropped lines of the burst"
    );
    assert_eq!(
        a.show("burst", "LogRateLimitBurst"),
        "100000",
        "berth's default on the unit"
    );

    let limited = wait_for_line(&a, "limited", "done", t);
    assert_eq!(a.show("limited", "LogRateLimitBurst"), "1000");
    assert_eq!(a.show("limited", "LogRateLimitIntervalUSec"), "2s");
    let kept = numbers(&limited).len() as u64;
    assert!(
        kept < 20_000,
        "the limit dropped nothing: {kept} lines kept"
    );
    // `berth logs` shows journald's report where the lines went missing.
    let logs = a.berth(&["logs", "limited"]).unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("Suppressed ") && logs.contains("berth-limited.service"),
        "{logs}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&a.berth(&["status", "limited", "--json"]).unwrap().stdout).unwrap();
    let dropped = v["journal_dropped"].as_u64().unwrap();
    assert_eq!(kept + dropped, 20_000, "kept {kept} + dropped {dropped}");
    let text = a.berth(&["status", "limited"]).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "log lines:   {dropped} dropped by journald's rate limit"
        )),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&a.berth(&["status", "burst", "--json"]).unwrap().stdout).unwrap();
    assert_eq!(v["journal_dropped"], 0, "{v}");
}

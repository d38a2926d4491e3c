//! Load: berthd under a real systemd and journald (booted in private namespaces). 30 containers, 29
//! with a health check and one writing numbered lines as fast as it can: health stays passing,
//! berthd's native API answers (p50/p99 measured in this process over the socket), and journald
//! holds every line once and in order. Then many `sleep` containers: time to all running, and what
//! berthd and systemd cost per container. Sizes come from the environment (CI runs the defaults;
//! bench/load.sh the full size) and, with `BERTH_LOAD_OUT=DIR`, the figures go to DIR/*.json.

use berth_agent::api::{Client, Request};
use berth_proto::protocol::ShimClient;
use berth_tests::agent::{Agent, IMAGE};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HEALTHY: usize = 29;
const FLOODER: &str = "flood";
/// Health check period of the 29: each check is an exec into the container.
const CHECK_EVERY_S: u64 = 2;
/// How often the API sampler asks berthd for `ps` (a `berth ps` every 50 ms).
const API_EVERY: Duration = Duration::from_millis(50);

/// The two tests measure: one at a time, even when the harness runs them in parallel.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Writes the figures to `$BERTH_LOAD_OUT/<name>.json` when set, and prints them.
fn report(name: &str, figures: &Value) {
    println!("load figures {name}: {figures}");
    if let Some(dir) = std::env::var_os("BERTH_LOAD_OUT") {
        std::fs::create_dir_all(&dir).unwrap();
        let path = Path::new(&dir).join(format!("{name}.json"));
        std::fs::write(path, serde_json::to_vec_pretty(figures).unwrap()).unwrap();
    }
}

/// berthd's journal, beside the figures in `$BERTH_LOAD_OUT` (where the time went).
fn save_berthd_log(a: &Agent, name: &str) {
    let Some(dir) = std::env::var_os("BERTH_LOAD_OUT") else {
        return;
    };
    let out = Command::new("journalctl")
        .arg("-D")
        .arg(a.sd.journal_dir().unwrap())
        .args(["--no-pager", "-o", "short-precise", "-u", "berthd"])
        .output()
        .unwrap();
    std::fs::write(
        Path::new(&dir).join(format!("{name}-berthd.log")),
        out.stdout,
    )
    .unwrap();
}

/// The `q` quantile (nearest rank) of `v`, in ms.
fn quantile_ms(v: &[Duration], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    s[i].as_secs_f64() * 1000.0
}

fn latency_json(v: &[Duration]) -> Value {
    json!({
        "requests": v.len(),
        "p50_ms": quantile_ms(v, 0.50),
        "p99_ms": quantile_ms(v, 0.99),
        "max_ms": quantile_ms(v, 1.0),
    })
}

/// Asks berthd for `ps` every [`API_EVERY`] over its socket, a new connection each time as
/// `berth ps` makes, until `stop`; returns each request's round trip and the container counts seen.
fn api_sampler(sock: PathBuf, stop: Arc<AtomicBool>) -> JoinHandle<(Vec<Duration>, Vec<usize>)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (mut lat, mut counts) = (Vec::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            let ps = rt.block_on(async {
                let mut c = Client::connect(&sock).await?;
                c.call(&Request::Ps).await
            });
            let took = t0.elapsed();
            let ps = ps.unwrap_or_else(|e| panic!("berthd's ps over {}: {e}", sock.display()));
            lat.push(took);
            counts.push(ps.as_array().map_or(0, Vec::len));
            std::thread::sleep(API_EVERY.saturating_sub(took));
        }
        (lat, counts)
    })
}

/// What the health sampler saw: every check result by container and start time, and the
/// statuses other than `healthy` it was told.
#[derive(Default)]
struct HealthSeen {
    checks: BTreeMap<String, BTreeMap<u64, i32>>,
    not_healthy: Vec<String>,
}

/// Asks each shim for its health report every second until `stop`.
fn health_sampler(
    bundles: PathBuf,
    names: Vec<String>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<HealthSeen> {
    std::thread::spawn(move || {
        let mut seen = HealthSeen::default();
        while !stop.load(Ordering::Relaxed) {
            for n in &names {
                let h = ShimClient::for_bundle(&bundles.join(n)).and_then(|mut c| c.health());
                match h {
                    Ok(h) => {
                        if h.status != "healthy" {
                            seen.not_healthy
                                .push(format!("{n}: {} (streak {})", h.status, h.failing_streak));
                        }
                        let m = seen.checks.entry(n.clone()).or_default();
                        for r in h.log {
                            m.insert(r.started_at_ms, r.exit_code);
                        }
                    }
                    Err(e) => seen.not_healthy.push(format!("{n}: no health report: {e}")),
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        seen
    })
}

/// What the unit's processes wrote to the journal, as plain messages, oldest first (`-n`: only
/// the last lines). systemd's own lines about the unit are not among them.
fn messages(a: &Agent, unit: &str, last: Option<usize>) -> Vec<String> {
    let mut cmd = Command::new("journalctl");
    cmd.arg("-D")
        .arg(a.sd.journal_dir().unwrap())
        .args(["--no-pager", "-o", "cat"])
        .arg(format!("_SYSTEMD_UNIT={unit}"))
        .arg("_TRANSPORT=stdout");
    if let Some(n) = last {
        cmd.args(["-n", &n.to_string()]);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// CPU time (user + system, in clock ticks) and RSS (kB) of a process of the namespace.
fn usage(a: &Agent, pid: &str) -> (u64, u64) {
    let proc = a.sd.root_path().join("proc").join(pid);
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap();
    // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(proc.join("status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

fn berthd_pid(a: &Agent) -> String {
    let pid = a.show_unit("berthd.service", "MainPID");
    assert!(pid != "0" && !pid.is_empty(), "berthd has no main pid");
    pid
}

fn socket(a: &Agent) -> PathBuf {
    a.sd.root_path().join("run/berth/berthd.sock")
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn load_log_flood_loses_no_line_and_keeps_health_and_api() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let flood_s = env_or("BERTH_LOAD_FLOOD_SECS", 10);
    let a = Agent::start("load-flood").unwrap();
    a.start_berthd(true).unwrap();
    let names: Vec<String> = (1..=HEALTHY).map(|i| format!("h{i:02}")).collect();
    for n in &names {
        a.write(
            n,
            &format!(
                "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nstop_signal: SIGKILL\n\
                 healthcheck: {{test: [CMD, \"true\"], interval: {CHECK_EVERY_S}s, timeout: 20s, retries: 3}}\n\
                 readiness: healthy\n"
            ),
        );
    }
    a.wait(Duration::from_secs(300), "29 containers healthy", || {
        names.iter().all(|n| a.active(n))
    })
    .unwrap();

    // The API while the 29 idle, for comparison.
    let stop = Arc::new(AtomicBool::new(false));
    let idle = api_sampler(socket(&a), stop.clone());
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let (idle_lat, _) = idle.join().unwrap();

    let bundles = a.sd.root_path().join("run/berth/containers");
    let stop = Arc::new(AtomicBool::new(false));
    let api = api_sampler(socket(&a), stop.clone());
    let health = health_sampler(bundles, names.clone(), stop.clone());
    let ticks0 = usage(&a, &berthd_pid(&a)).0;
    // `seq` writes its lines in large buffered writes, a thousand numbers per run; the loop ends
    // at a flag file, between two runs, so no line is cut in two at the end. journald's rate
    // limit is off for the flooder (`rate-limit-burst: 0`): the test is about the path from the
    // container to the journal (the limit: tests/tests/agent_logging.rs).
    a.write(
        FLOODER,
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\nstop_signal: SIGKILL\n\
             logging: {{options: {{rate-limit-burst: 0}}}}\n\
             command: [sh, -c, 'mkdir -p /tmp; (i=1; while [ ! -e /tmp/stop ]; do seq $i $((i+999)); \
             i=$((i+1000)); done) & sleep {flood_s}; touch /tmp/stop; wait; echo done; exec sleep 3600']\n"
        ),
    );
    let unit = format!("berth-{FLOODER}.service");
    let t0 = Instant::now();
    let flood_from = now_ms();
    let deadline = Duration::from_secs(flood_s * 4 + 120);
    while !messages(&a, &unit, Some(3)).iter().any(|l| l == "done") {
        if t0.elapsed() > deadline {
            let kept = messages(&a, &unit, None);
            panic!(
                "the flooder's `done` is not in the journal after {deadline:?} (dropped by \
                 journald?): {} lines kept, the last {:?}",
                kept.len(),
                kept.last()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let flood_to = now_ms();
    let flood_wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (lat, counts) = api.join().unwrap();
    let seen = health.join().unwrap();
    let berthd_ticks = usage(&a, &berthd_pid(&a)).0 - ticks0;

    let lines = messages(&a, &unit, None);
    let numbers: Vec<u64> = lines.iter().filter_map(|l| l.parse().ok()).collect();
    let others: Vec<&String> = lines
        .iter()
        .filter(|l| l.parse::<u64>().is_err() && *l != "done")
        .take(5)
        .collect();
    let n = numbers.len() as u64;
    let figures = json!({
        "containers": HEALTHY + 1,
        "flood_seconds": flood_s,
        "lines": n,
        "lines_per_second": n as f64 / flood_s as f64,
        "api_idle": latency_json(&idle_lat),
        "api_during_flood": latency_json(&lat),
        "berthd_cpu_percent_during_flood": berthd_ticks as f64 / clock_ticks() * 100.0
            / flood_wall.as_secs_f64(),
        "health_checks_during_flood": seen.checks.values()
            .map(|m| m.range(flood_from..flood_to).count()).sum::<usize>(),
    });
    report("flood", &figures);
    save_berthd_log(&a, "flood");

    // Every line once, in order: the n-th line kept is the number n.
    assert!(
        others.is_empty(),
        "lines that are no sequence number: {others:?}"
    );
    if let Some((i, w)) = numbers
        .iter()
        .enumerate()
        .find(|(i, v)| **v != *i as u64 + 1)
    {
        panic!(
            "line {} of the journal is {w}, not {}: a line lost, duplicated or reordered",
            i + 1,
            i + 1
        );
    }
    assert!(
        n >= 1000 * flood_s,
        "only {n} lines in {flood_s} s: the flooder did not flood"
    );

    // The others' health checks kept running and passing all along.
    assert!(
        seen.not_healthy.is_empty(),
        "not healthy during the flood: {:?}",
        seen.not_healthy
    );
    for name in &names {
        let during: Vec<i32> = seen.checks.get(name).map_or(Vec::new(), |m| {
            m.range(flood_from..flood_to).map(|(_, c)| *c).collect()
        });
        let expected = (flood_s / CHECK_EVERY_S / 2).max(1) as usize;
        assert!(
            during.len() >= expected,
            "{name}: {} health checks during the flood, expected at least {expected}",
            during.len()
        );
        assert!(
            during.iter().all(|c| *c == 0),
            "{name}: failed checks during the flood: {during:?}"
        );
    }

    // berthd answered every request, listing the 29 until the flooder's first pass and all 30
    // from then on, within a bound a loaded 2-core CI machine keeps.
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1])
            && counts.first() >= Some(&HEALTHY)
            && counts.last() == Some(&(HEALTHY + 1)),
        "ps did not list the 29, then all 30: {counts:?}"
    );
    let p99 = quantile_ms(&lat, 0.99);
    assert!(p99 < 1000.0, "berthd's ps p99 {p99:.1} ms during the flood");
}

/// The namespace's whole tree as the v1 `pids` and `memory` controllers see it.
fn tree_usage(a: &Agent) -> (u64, u64) {
    let read = |c: &str, f: &str| -> u64 {
        std::fs::read_to_string(a.sd.cgroup_path(c, "/").join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        read("pids", "pids.current"),
        read("memory", "memory.usage_in_bytes"),
    )
}

/// The ceilings that bound the number of containers here, to set against the per-container costs.
fn limits(a: &Agent) -> Value {
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let mem_available_kib = read("/proc/meminfo".into())
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    let procs = a.sd.root_path().join("proc/sys");
    json!({
        "tree_pids_max": read(a.sd.cgroup_path("pids", "/").join("pids.max")),
        "kernel_pid_max": read(procs.join("kernel/pid_max")),
        "kernel_threads_max": read(procs.join("kernel/threads-max")),
        "mem_available_kib": mem_available_kib,
        "systemd_default_tasks_max": a.sd.systemctl(&["show", "-p", "DefaultTasksMax", "--value"]).unwrap_or_default().trim(),
    })
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn load_many_sleep_containers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let n = env_or("BERTH_LOAD_SLEEPERS", 60) as usize;
    let a = Agent::start("load-many").unwrap();
    a.start_berthd(true).unwrap();
    // The first container imports and unpacks the image: not part of the figure.
    let spec = format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nstop_signal: SIGKILL\n"
    );
    a.write("warm", &spec);
    a.wait(Duration::from_secs(120), "the first container", || {
        a.active("warm")
    })
    .unwrap();
    a.rm("warm");
    a.wait(Duration::from_secs(60), "the first container gone", || {
        a.ps().is_ok_and(|m| m.is_empty())
    })
    .unwrap();

    let hz = clock_ticks();
    let berthd = berthd_pid(&a);
    let (b_ticks0, b_rss0) = usage(&a, &berthd);
    let (s_ticks0, s_rss0) = usage(&a, "1");
    let (pids0, mem0) = tree_usage(&a);
    let stop = Arc::new(AtomicBool::new(false));
    let api = api_sampler(socket(&a), stop.clone());
    let t0 = Instant::now();
    for i in 1..=n {
        a.write(&format!("s{i:03}"), &spec);
    }
    let mut running = 0;
    // When each quarter was running: a start rate that falls as the count grows is saturation.
    let mut quarters = Vec::new();
    let deadline = Duration::from_secs(120 + n as u64 * 3);
    while running < n {
        let ps = a.ps().unwrap_or_default();
        running = ps.values().filter(|s| s["phase"] == "running").count();
        while quarters.len() < 4 && running * 4 >= n * (quarters.len() + 1) {
            quarters.push(t0.elapsed().as_secs_f64());
        }
        assert!(
            t0.elapsed() < deadline,
            "{running} of {n} running after {deadline:?}; the others: {:?}",
            ps.values()
                .filter(|s| s["phase"] != "running")
                .take(5)
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let to_running = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (lat, _) = api.join().unwrap();
    let (b_ticks1, _) = usage(&a, &berthd);
    let (s_ticks1, _) = usage(&a, "1");
    // Settled: what stays resident, and what idling costs over 20 s.
    std::thread::sleep(Duration::from_secs(10));
    let (b_ticks2, b_rss) = usage(&a, &berthd);
    let (s_ticks2, s_rss) = usage(&a, "1");
    std::thread::sleep(Duration::from_secs(20));
    let (b_ticks3, _) = usage(&a, &berthd);
    let (s_ticks3, _) = usage(&a, "1");
    let (pids1, mem1) = tree_usage(&a);
    let failed =
        a.sd.exec_inside(&[
            "systemctl",
            "list-units",
            "--state=failed",
            "--no-legend",
            "--plain",
        ])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let nf = n as f64;
    let cpu_s = |t: u64| t as f64 / hz;
    let figures = json!({
        "containers": n,
        "seconds_to_all_running": to_running.as_secs_f64(),
        "starts_per_second": nf / to_running.as_secs_f64(),
        "seconds_to_each_quarter": quarters,
        "api_while_starting": latency_json(&lat),
        "berthd": {
            "cpu_seconds_starting": cpu_s(b_ticks1 - b_ticks0),
            "cpu_ms_per_container": cpu_s(b_ticks1 - b_ticks0) * 1000.0 / nf,
            "rss_kib_before": b_rss0,
            "rss_kib_after": b_rss,
            "rss_kib_per_container": (b_rss as f64 - b_rss0 as f64) / nf,
            "idle_cpu_percent": cpu_s(b_ticks3 - b_ticks2) * 100.0 / 20.0,
        },
        "systemd": {
            "cpu_seconds_starting": cpu_s(s_ticks1 - s_ticks0),
            "cpu_ms_per_container": cpu_s(s_ticks1 - s_ticks0) * 1000.0 / nf,
            "rss_kib_before": s_rss0,
            "rss_kib_after": s_rss,
            "rss_kib_per_container": (s_rss as f64 - s_rss0 as f64) / nf,
            "idle_cpu_percent": cpu_s(s_ticks3 - s_ticks2) * 100.0 / 20.0,
        },
        "tree": {
            "tasks_per_container": (pids1 as f64 - pids0 as f64) / nf,
            "memory_mib_per_container": (mem1 as f64 - mem0 as f64) / nf / 1048576.0,
        },
        "failed_units": failed.lines().count(),
        "limits": limits(&a),
    });
    report("sleepers", &figures);
    save_berthd_log(&a, "sleepers");
    assert!(failed.trim().is_empty(), "failed units: {failed}");
    let idle = cpu_s(b_ticks3 - b_ticks2) * 100.0 / 20.0;
    assert!(
        idle < 5.0,
        "berthd idles at {idle:.1} % of a CPU with {n} containers"
    );
}

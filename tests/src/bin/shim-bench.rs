//! `shim-bench`: the berth side of bench/shim.sh. Boots a test systemd in private namespaces,
//! starts N busybox containers as `berth-*.service` units through the systemd client, and prints
//! (JSON) for each the time from StartTransientUnit to the container's process running and to the
//! unit active, then the RSS and private dirty memory of every berth-shim.
//! Usage: shim-bench --shim PATH [--count N] [--runtime-binary PATH]

use anyhow::{Context, Result, bail};
use berth_agent::systemd::{BusTarget, Systemd, UnitSpec};
use berth_tests::systemd::{ShimBundle, TestSystemd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `(Rss, Private_Dirty)` in KiB from /proc/PID/smaps_rollup.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |k: &str| -> u64 {
        t.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("Rss:"), field("Private_Dirty:")))
}

/// Host PIDs of processes whose argv[0] ends with `bin` and whose argv contains `needle`.
fn host_pids(bin: &str, needle: &str) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let parts: Vec<String> = c
            .split(|&b| b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        if parts.first().is_some_and(|a| a.ends_with(bin))
            && parts.iter().any(|p| p.contains(needle))
        {
            v.push(pid);
        }
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let shim = PathBuf::from(arg(&args, "--shim").context("--shim PATH")?);
    let count: usize = arg(&args, "--count")
        .map(|c| c.parse())
        .transpose()?
        .unwrap_or(50);
    let binary = arg(&args, "--runtime-binary");
    let sd = TestSystemd::boot("shim-bench")?;
    let sys = Systemd::connect(BusTarget::Address(sd.address()))
        .await?
        .with_journal_dir(sd.journal_dir()?);
    let mut running_ms = Vec::new();
    let mut active_ms = Vec::new();
    for i in 0..count {
        let name = format!("bench-{i}");
        let b = ShimBundle::create(
            &sd,
            &name,
            &["sh", "-c", "touch /running; exec sleep 100000"],
            serde_json::json!({}),
        )?;
        let marker = b.dir.join("rootfs/running");
        let mut argv = vec![
            shim.display().to_string(),
            "--bundle".into(),
            b.inside.display().to_string(),
        ];
        if let Some(bin) = &binary {
            argv.push("--runtime-binary".into());
            argv.push(bin.clone());
        }
        let spec = UnitSpec::new(&name, "bench/busybox", argv);
        let t0 = Instant::now();
        let start = sys.start_unit(&spec);
        tokio::pin!(start);
        let mut running: Option<Duration> = None;
        let active = loop {
            tokio::select! {
                r = &mut start => { r?; break t0.elapsed(); }
                _ = tokio::time::sleep(Duration::from_micros(200)), if running.is_none() => {
                    if marker.exists() { running = Some(t0.elapsed()); }
                }
            }
        };
        let running = match running {
            Some(r) => r,
            None => {
                while !marker.exists() {
                    if t0.elapsed() > Duration::from_secs(30) {
                        bail!("container {name} never ran");
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                t0.elapsed()
            }
        };
        running_ms.push(running.as_secs_f64() * 1000.0);
        active_ms.push(active.as_secs_f64() * 1000.0);
    }
    let units = sys.list_units().await?;
    let active = units.iter().filter(|u| u.active_state == "active").count();
    if active != count {
        bail!("only {active} of {count} units active");
    }
    // Let the shims settle (lazy pages, journald streams) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = host_pids("berth-shim", "/srv/tb/bench-");
    let mut rss = Vec::new();
    let mut pd = Vec::new();
    for p in &pids {
        let (r, d) = memory(*p)?;
        rss.push(r as f64);
        pd.push(d as f64);
    }
    println!(
        "{}",
        serde_json::json!({
            "containers": count,
            "shims": pids.len(),
            "rss_kib_median": median(rss),
            "private_dirty_kib_median": median(pd),
            "to_running_ms_median": median(running_ms.clone()),
            "to_active_ms_median": median(active_ms.clone()),
            "to_running_ms_max": running_ms.iter().cloned().fold(0.0, f64::max),
            "to_active_ms_max": active_ms.iter().cloned().fold(0.0, f64::max),
        })
    );
    Ok(())
}

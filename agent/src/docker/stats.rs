//! `GET /containers/{id}/stats`: a container's resource use in Docker's JSON, read from its
//! unit's cgroup (cgroup v2's `cpu.stat`, `memory.current`/`memory.max`/`memory.stat`,
//! `pids.current`, `io.stat`; on a hybrid host the v1 memory and pids hierarchies, as systemd
//! realises only those for a unit) and from the network devices of the container's namespace
//! (`/proc/<pid>/net/dev`). Each sample carries the previous one as `precpu_stats`, so that
//! clients compute the CPU share as Docker's do. Runs in berthd.

use super::containers::container_id;
use super::lifecycle::find;
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const CG: &str = "/sys/fs/cgroup";
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Deserialize)]
pub struct StatsQuery {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default, rename = "one-shot")]
    one_shot: Option<String>,
}

fn flag(v: &Option<String>, default: bool) -> bool {
    match v.as_deref() {
        None | Some("") => default,
        Some(s) => matches!(s, "1" | "true" | "True"),
    }
}

/// `key value` lines (`cpu.stat`, `memory.stat`).
pub fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `/proc/<pid>/net/dev`: per interface (but `lo`) Docker's eight counters.
pub fn net_dev(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let n: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if name == "lo" || n.len() < 12 {
            continue;
        }
        out.insert(
            name.to_owned(),
            json!({
                "rx_bytes": n[0], "rx_packets": n[1], "rx_errors": n[2], "rx_dropped": n[3],
                "tx_bytes": n[8], "tx_packets": n[9], "tx_errors": n[10], "tx_dropped": n[11],
            }),
        );
    }
    out
}

/// cgroup v2's `io.stat` as Docker's `io_service_bytes_recursive`.
pub fn io_stat(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let op = match kv.split_once('=') {
                Some(("rbytes", v)) => ("read", v),
                Some(("wbytes", v)) => ("write", v),
                _ => continue,
            };
            if let Ok(value) = op.1.parse::<u64>() {
                out.push(json!({"major": major, "minor": minor, "op": op.0, "value": value}));
            }
        }
    }
    out
}

/// The host's CPU time so far in nanoseconds (`/proc/stat`'s first line, in USER_HZ ticks).
pub fn system_cpu_ns(proc_stat: &str) -> u64 {
    let ticks: u64 = proc_stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux architecture berth runs on.
    ticks * 10_000_000
}

/// Where the unit's cgroup is in each hierarchy berth reads.
struct Dirs {
    v2: PathBuf,
    /// v1 memory and pids directories on a hybrid host.
    memory_v1: Option<PathBuf>,
    pids_v1: Option<PathBuf>,
}

fn dirs(control_group: &str) -> Dirs {
    let rel = control_group.trim_start_matches('/');
    let pure = std::path::Path::new(CG).join("cgroup.controllers").exists();
    let v1 = |h: &str| {
        let d = std::path::Path::new(CG).join(h).join(rel);
        (!pure && d.is_dir()).then_some(d)
    };
    Dirs {
        v2: if pure {
            std::path::Path::new(CG).join(rel)
        } else {
            std::path::Path::new(CG).join("unified").join(rel)
        },
        memory_v1: v1("memory"),
        pids_v1: v1("pids"),
    }
}

fn read(p: PathBuf) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: PathBuf) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// Processes of the cgroup tree at `dir`.
fn procs(dir: &std::path::Path, out: &mut Vec<i32>) {
    if let Some(t) = read(dir.join("cgroup.procs")) {
        out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                procs(&e.path(), out);
            }
        }
    }
}

fn host_mem_total() -> u64 {
    read("/proc/meminfo".into())
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |k| k * 1024)
}

/// One sample of the unit's cgroup (`None`: the container is not running).
fn sample(unit: Option<(&str, u32)>) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let system = system_cpu_ns(&read("/proc/stat".into()).unwrap_or_default());
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some((cg, main_pid)) = unit else {
        return json!({
            "read": now, "pids_stats": {}, "blkio_stats": {}, "memory_stats": {},
            "cpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": system, "online_cpus": ncpu},
        });
    };
    let d = dirs(cg);
    let cpu = flat_keyed(&read(d.v2.join("cpu.stat")).unwrap_or_default());
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    let (usage, limit, stats) = match &d.memory_v1 {
        Some(m) => {
            let mut stats = flat_keyed(&read(m.join("memory.stat")).unwrap_or_default());
            // Docker's clients subtract `inactive_file` (v2's name) or `total_inactive_file`.
            if let Some(v) = stats.get("total_inactive_file").copied() {
                stats.insert("inactive_file".into(), v);
            }
            (
                read_u64(m.join("memory.usage_in_bytes")),
                read_u64(m.join("memory.limit_in_bytes")),
                stats,
            )
        }
        None => (
            read_u64(d.v2.join("memory.current")),
            read_u64(d.v2.join("memory.max")),
            flat_keyed(&read(d.v2.join("memory.stat")).unwrap_or_default()),
        ),
    };
    let host = host_mem_total();
    let limit = limit.filter(|l| *l < host).unwrap_or(host);
    let pids = read_u64(
        d.pids_v1
            .clone()
            .unwrap_or(d.v2.clone())
            .join("pids.current"),
    );
    let mut all = Vec::new();
    procs(d.pids_v1.as_deref().unwrap_or(&d.v2), &mut all);
    let container_pid = all.into_iter().find(|p| *p as u32 != main_pid);
    let networks = container_pid
        .and_then(|p| read(format!("/proc/{p}/net/dev").into()))
        .map(|t| net_dev(&t))
        .unwrap_or_default();
    json!({
        "read": now,
        "pids_stats": {"current": pids},
        "blkio_stats": {"io_service_bytes_recursive": io_stat(&read(d.v2.join("io.stat")).unwrap_or_default())},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": us("usage_usec"),
                "usage_in_usermode": us("user_usec"),
                "usage_in_kernelmode": us("system_usec"),
            },
            "system_cpu_usage": system,
            "online_cpus": ncpu,
            "throttling_data": {
                "periods": cpu.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": cpu.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": us("throttled_usec"),
            },
        },
        "memory_stats": {"usage": usage, "limit": limit, "stats": stats},
        "networks": networks,
    })
}

/// `sample` with the previous one's CPU figures as `precpu_stats`, and the container's names.
fn framed(cur: &Value, prev: Option<&Value>, name: &str) -> Value {
    let mut v = cur.clone();
    v["name"] = json!(format!("/{name}"));
    v["id"] = json!(container_id(name));
    v["preread"] = prev.map_or(json!("0001-01-01T00:00:00Z"), |p| p["read"].clone());
    v["precpu_stats"] = prev.map_or(json!({"cpu_usage": {"total_usage": 0}}), |p| {
        p["cpu_stats"].clone()
    });
    v
}

/// The unit's cgroup and main PID while it runs.
async fn unit_of(b: &Shared, name: &str) -> Result<Option<(String, u32)>, DockerError> {
    let st = call(b, Request::Status { name: name.into() }).await?;
    let u = &st["unit"];
    let running = u["active_state"].as_str() == Some("active");
    Ok(u["control_group"]
        .as_str()
        .filter(|c| running && !c.is_empty())
        .map(|c| (c.to_owned(), u["main_pid"].as_u64().unwrap_or(0) as u32)))
}

async fn take(b: &Shared, name: &str) -> Result<Value, DockerError> {
    let unit = unit_of(b, name).await?;
    Ok(
        tokio::task::spawn_blocking(move || sample(unit.as_ref().map(|(c, p)| (c.as_str(), *p))))
            .await
            .unwrap_or(Value::Null),
    )
}

/// `GET /containers/{id}/stats`.
pub async fn stats(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<StatsQuery>,
) -> Result<Response, DockerError> {
    let name = find(&b, &id).await?;
    let stream = flag(&q.stream, true);
    let one_shot = flag(&q.one_shot, false);
    if one_shot && stream {
        return Err(DockerError::BadRequest(
            "cannot have stream=true and one-shot=true".into(),
        ));
    }
    let first = take(&b, &name).await?;
    if !stream {
        let v = if one_shot {
            framed(&first, None, &name)
        } else {
            tokio::time::sleep(INTERVAL).await;
            framed(&take(&b, &name).await?, Some(&first), &name)
        };
        return Ok(axum::Json(v).into_response());
    }
    let (tx, out) = tokio::sync::mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let mut prev: Option<Value> = None;
        let mut cur = first;
        loop {
            let mut line =
                serde_json::to_vec(&framed(&cur, prev.as_ref(), &name)).unwrap_or_default();
            line.push(b'\n');
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
            tokio::time::sleep(INTERVAL).await;
            let Ok(next) = take(&b, &name).await else {
                return;
            };
            prev = Some(std::mem::replace(&mut cur, next));
        }
    });
    Ok(super::json_stream(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_parse() {
        let c = flat_keyed("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
        assert_eq!(c["usage_usec"], 1500);
        let io = io_stat("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(io.len(), 2);
        assert_eq!(io[0]["op"], "read");
        assert_eq!(io[1]["value"], 8192);
        assert_eq!(
            system_cpu_ns("cpu  10 0 5 85 0 0 0 0 0 0\ncpu0 1 2 3\n"),
            100 * 10_000_000
        );
        assert_eq!(system_cpu_ns(""), 0);
    }

    #[test]
    fn network_counters_without_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                 eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let n = net_dev(t);
        assert!(!n.contains_key("lo"));
        assert_eq!(n["eth0"]["rx_bytes"], 2000);
        assert_eq!(n["eth0"]["rx_dropped"], 2);
        assert_eq!(n["eth0"]["tx_packets"], 30);
        assert_eq!(n["eth0"]["tx_dropped"], 4);
    }

    #[test]
    fn samples_carry_the_previous_cpu_figures() {
        let a = json!({"read": "t1", "cpu_stats": {"cpu_usage": {"total_usage": 5}}});
        let b = json!({"read": "t2", "cpu_stats": {"cpu_usage": {"total_usage": 9}}});
        let f = framed(&b, Some(&a), "web");
        assert_eq!(f["precpu_stats"]["cpu_usage"]["total_usage"], 5);
        assert_eq!(f["cpu_stats"]["cpu_usage"]["total_usage"], 9);
        assert_eq!(f["preread"], "t1");
        assert_eq!(f["name"], "/web");
        let first = framed(&a, None, "web");
        assert_eq!(first["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert!(flag(&None, true));
        assert!(!flag(&Some("0".into()), true));
    }
}

//! `/_ping`, `/version` and `/info`: what the `docker` CLI asks before anything else, answered
//! with berth's versions and this host's facts. Runs in berthd.

use super::version::{API_VERSION, MIN_API_VERSION};
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// `HEAD`/`GET /_ping`: `OK`, with the version headers the middleware adds.
pub async fn ping() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "OK",
    )
}

/// This host's kernel release, architecture in Go's naming, CPUs and memory.
struct Host {
    kernel: String,
    arch: &'static str,
    ncpu: usize,
    mem_total: u64,
    hostname: String,
    os: String,
}

fn host() -> Host {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_total_bytes(&t))
        .unwrap_or(0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| pretty_name(&t))
        .unwrap_or_else(|| "Linux".into());
    Host {
        kernel: field(|u| u.release()),
        arch: go_arch(std::env::consts::ARCH),
        ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total,
        hostname: field(|u| u.nodename()),
        os,
    }
}

/// Rust's architecture names as Go (and so Docker) spells them.
fn go_arch(rust: &'static str) -> &'static str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn pretty_name(os_release: &str) -> Option<String> {
    let v = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(v.trim_matches('"').to_owned())
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    let h = host();
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": format!("berth {v}")},
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": h.arch,
                "KernelVersion": h.kernel,
            },
        }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": h.arch,
        "KernelVersion": h.kernel,
        "BuildTime": "",
    }))
}

/// `GET /info`: counts from berthd, facts from the host.
pub async fn info(State(b): State<Shared>) -> Result<Json<Value>, DockerError> {
    let ps = call(&b, Request::Ps).await?;
    let images = call(&b, Request::Images).await?;
    let ps: Vec<crate::reconcile::status::ContainerStatus> = serde_json::from_value(ps)
        .map_err(|e| DockerError::Internal(format!("container list: {e}")))?;
    let (mut running, mut stopped, total) = (0, 0, ps.len());
    for c in &ps {
        match super::containers::docker_state(&c.phase) {
            "running" => running += 1,
            "exited" | "dead" => stopped += 1,
            _ => {}
        }
    }
    let h = host();
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    Ok(Json(json!({
        "ID": "",
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": stopped,
        "Images": images.as_array().map_or(0, Vec::len),
        "Driver": "overlay",
        "DriverStatus": [],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Log": ["journald"]},
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "LoggingDriver": "journald",
        "CgroupDriver": "systemd",
        "CgroupVersion": cgroup_version,
        "KernelVersion": h.kernel,
        "OperatingSystem": h.os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": h.ncpu,
        "MemTotal": h.mem_total,
        "Name": h.hostname,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth-runtime": {"path": "berth-runtime"}},
        "DefaultRuntime": "berth-runtime",
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Labels": [],
        "Warnings": [],
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_parse() {
        assert_eq!(
            mem_total_bytes("MemTotal:        8000000 kB\nMemFree: 1 kB\n"),
            Some(8_192_000_000)
        );
        assert_eq!(mem_total_bytes("nothing"), None);
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
    }
}

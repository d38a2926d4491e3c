//! Translation of `linux.resources` into cgroup file writes (v1: per controller; v2: the unified
//! files) and into the effective device rules; pure functions, used by the runtime process
//! through [`super::Cgroup::apply`].

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// The effective device rules of `res` as (allow, "type major:minor access"), in order (later
/// ones win): "deny all", the spec's rules, then the default devices. The spec's device nodes
/// (`linux.devices`) add nothing: like runc, only `resources.devices` opens them. Shared by v1
/// (files) and v2 (an eBPF program).
pub fn device_rules(res: &LinuxResources) -> Vec<(bool, String)> {
    v1_writes(res)
        .into_iter()
        .filter(|(c, _, _)| *c == "devices")
        .map(|(_, file, rule)| (file == "devices.allow", rule))
        .collect()
}

fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let t = match d.typ() {
        Some(LinuxDeviceType::C) => "c",
        Some(LinuxDeviceType::B) => "b",
        _ => "a",
    };
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    format!(
        "{t} {}:{} {}",
        n(d.major()),
        n(d.minor()),
        d.access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm")
    )
}

/// Devices every container may use whatever its rules say, as runc 1.1 allows them (read from
/// its `devices.list`): creating any node, null, zero, full, random, urandom, tty, ptmx,
/// net/tun and the ptys.
const DEFAULT_ALLOWED: [&str; 11] = [
    "b *:* m",
    "c *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
    "c 136:* rwm",
];

/// The cgroup v1 file writes of `res`: (controller, file, value), in order.
pub fn v1_writes(res: &LinuxResources) -> Vec<(&'static str, String, String)> {
    let mut w: Vec<(&'static str, String, String)> = Vec::new();
    let mut put = |c: &'static str, f: &str, v: String| w.push((c, f.to_string(), v));
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            put("memory", "memory.limit_in_bytes", l.to_string());
        }
        if let Some(r) = m.reservation() {
            put("memory", "memory.soft_limit_in_bytes", r.to_string());
        }
        if let Some(s) = m.swap() {
            put("memory", "memory.memsw.limit_in_bytes", s.to_string());
        }
        if let Some(s) = m.swappiness() {
            put("memory", "memory.swappiness", s.to_string());
        }
        if m.disable_oom_killer() == Some(true) {
            put("memory", "memory.oom_control", "1".into());
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares() {
            put("cpu", "cpu.shares", s.to_string());
        }
        if let Some(p) = c.period() {
            put("cpu", "cpu.cfs_period_us", p.to_string());
        }
        if let Some(q) = c.quota() {
            put("cpu", "cpu.cfs_quota_us", q.to_string());
        }
        if let Some(p) = c.realtime_period() {
            put("cpu", "cpu.rt_period_us", p.to_string());
        }
        if let Some(r) = c.realtime_runtime() {
            put("cpu", "cpu.rt_runtime_us", r.to_string());
        }
        if let Some(s) = c.cpus() {
            put("cpuset", "cpuset.cpus", s.clone());
        }
        if let Some(s) = c.mems() {
            put("cpuset", "cpuset.mems", s.clone());
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        put(
            "pids",
            "pids.max",
            if l > 0 { l.to_string() } else { "max".into() },
        );
    }
    if let Some(b) = res.block_io() {
        if let Some(x) = b.weight() {
            put("blkio", "blkio.weight", x.to_string());
        }
        if let Some(x) = b.leaf_weight() {
            put("blkio", "blkio.leaf_weight", x.to_string());
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(x) = d.weight() {
                put(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {x}", d.major(), d.minor()),
                );
            }
        }
        for (list, file) in [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
            ),
        ] {
            for d in list.as_deref().unwrap_or_default() {
                put(
                    "blkio",
                    file,
                    format!("{}:{} {}", d.major(), d.minor(), d.rate()),
                );
            }
        }
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        put(
            "hugetlb",
            &format!("hugetlb.{}.limit_in_bytes", h.page_size()),
            h.limit().to_string(),
        );
    }
    if let Some(n) = res.network() {
        if let Some(id) = n.class_id() {
            put("net_cls", "net_cls.classid", id.to_string());
        }
        for p in n.priorities().as_deref().unwrap_or_default() {
            put(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            );
        }
    }
    // runc's model: nothing but what the rules allow, so a start from "deny all" whatever the
    // spec says; its default devices come last and win over the spec's denies.
    put("devices", "devices.deny", "a *:* rwm".into());
    for d in res.devices().as_deref().unwrap_or_default() {
        put(
            "devices",
            if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            },
            device_rule(d),
        );
    }
    for r in DEFAULT_ALLOWED {
        put("devices", "devices.allow", r.to_string());
    }
    w
}

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), as the kernel docs map it.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + (shares.saturating_sub(2) * 9999) / 262142
    }
}

/// blkio weight (10..1000) to v2 `io.weight` (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

/// The cgroup v2 file writes of `res`: (file, value), in order. Device rules are an eBPF
/// program on v2 ([`super::apply_device_program`]), not files.
pub fn v2_writes(res: &LinuxResources) -> Vec<(String, String)> {
    let mut w: Vec<(String, String)> = Vec::new();
    let mut put = |f: &str, v: String| w.push((f.to_string(), v));
    let max = |v: i64| {
        if v < 0 {
            "max".to_string()
        } else {
            v.to_string()
        }
    };
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            put("memory.max", max(l));
        }
        if let Some(r) = m.reservation() {
            put("memory.low", max(r));
        }
        if let Some(s) = m.swap() {
            // OCI's swap is memory+swap; v2 limits swap alone.
            let v = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            put("memory.swap.max", v);
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares()
            && s > 0
        {
            put("cpu.weight", shares_to_weight(s).to_string());
        }
        if c.quota().is_some() || c.period().is_some() {
            let period = c.period().unwrap_or(100_000);
            let quota = c
                .quota()
                .filter(|q| *q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            put("cpu.max", format!("{quota} {period}"));
        }
        if let Some(s) = c.cpus() {
            put("cpuset.cpus", s.clone());
        }
        if let Some(s) = c.mems() {
            put("cpuset.mems", s.clone());
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        put("pids.max", if l > 0 { l.to_string() } else { "max".into() });
    }
    if let Some(b) = res.block_io() {
        if let Some(x) = b.weight() {
            put("io.weight", format!("default {}", blkio_to_io_weight(x)));
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(x) = d.weight() {
                put(
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(x)),
                );
            }
        }
        for (list, key) in [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ] {
            for d in list.as_deref().unwrap_or_default() {
                put(
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                );
            }
        }
    }
    for h in res.hugepage_limits().as_deref().unwrap_or_default() {
        put(
            &format!("hugetlb.{}.max", h.page_size()),
            h.limit().to_string(),
        );
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort();
        for (k, v) in keys {
            put(k, v.clone());
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn v2_translation() {
        let r = res(
            r#"{"memory":{"limit":104857600,"swap":209715200,"reservation":-1},
            "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0"},
            "pids":{"limit":0},
            "blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]},
            "unified":{"memory.high":"90000000"}}"#,
        );
        let w = v2_writes(&r);
        let get = |f: &str| {
            w.iter()
                .filter(|(k, _)| k == f)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("memory.max"), ["104857600"]);
        assert_eq!(get("memory.swap.max"), ["104857600"]);
        assert_eq!(get("memory.low"), ["max"]);
        assert_eq!(get("cpu.weight"), ["39"]);
        assert_eq!(get("cpu.max"), ["50000 100000"]);
        assert_eq!(get("cpuset.cpus"), ["0"]);
        assert_eq!(get("pids.max"), ["max"]);
        assert_eq!(get("io.weight"), ["default 4950"]);
        assert_eq!(get("io.max"), ["8:0 rbps=1048576"]);
        assert_eq!(get("memory.high"), ["90000000"]);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn v1_translation_of_limits() {
        let r = res(r#"{"memory":{"limit":1000000},"pids":{"limit":42},"cpu":{"quota":-1}}"#);
        let w = v1_writes(&r);
        assert!(w.contains(&("memory", "memory.limit_in_bytes".into(), "1000000".into())));
        assert!(w.contains(&("pids", "pids.max".into(), "42".into())));
        assert!(w.contains(&("cpu", "cpu.cfs_quota_us".into(), "-1".into())));
    }

    fn rules(json: &str) -> Vec<String> {
        device_rules(&res(json))
            .into_iter()
            .map(|(allow, r)| format!("{} {r}", if allow { "allow" } else { "deny" }))
            .collect()
    }

    #[test]
    fn device_rules_start_from_deny_all_and_end_with_the_defaults() {
        let r = rules(
            r#"{"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":200,"access":"rw"},
            {"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]}"#,
        );
        assert_eq!(
            &r[..4],
            [
                "deny a *:* rwm",
                "deny a *:* rwm",
                "allow c 10:200 rw",
                "deny c 1:3 rwm"
            ]
        );
        // The defaults come after the spec's deny of /dev/null and so undo it, as in runc.
        assert_eq!(r[4..], DEFAULT_ALLOWED.map(|d| format!("allow {d}")));
        // No rules at all (or no `resources`): still nothing but the defaults.
        let none = rules("{}");
        assert_eq!(none[0], "deny a *:* rwm");
        assert_eq!(none.len(), 1 + DEFAULT_ALLOWED.len());
    }
}

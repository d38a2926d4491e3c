//! What containers leave on a test systemd's host, as one comparable value: their networks (veths,
//! netavark's rules, leases, namespaces, records, locks), their units, mounts and cgroups, and
//! berthd's state files. Crash tests take it before and after and compare. Runs in the test process.

use crate::agent::Agent;
use std::collections::BTreeMap;

/// Output of `argv` inside the test systemd's namespaces (empty when it fails).
fn inside(a: &Agent, argv: &[&str]) -> String {
    a.sd.exec_inside(argv)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Sorted entries of a directory inside (none when it is missing).
pub fn ls(a: &Agent, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = inside(a, &["sh", "-c", &format!("ls -A {dir} 2>/dev/null")])
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// What containers' networks leave on the host side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInventory {
    /// Interface names of veths and the bridge.
    pub links: Vec<String>,
    /// iptables-save lines that mention NETAVARK (counters dropped).
    pub rules: BTreeMap<String, usize>,
    /// `<network>/<address>` of every lease (and any draft beside them).
    pub leases: Vec<String>,
    pub netns: Vec<String>,
    pub records: Vec<String>,
    pub locks: Vec<String>,
}

pub fn network(a: &Agent) -> NetworkInventory {
    // Sorted: a restarted container's veth may take another's freed name.
    let mut links: Vec<String> = inside(a, &["ip", "-o", "link"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .filter(|n| n.starts_with("veth") || n.starts_with("berth0"))
        .collect();
    links.sort();
    let mut rules = BTreeMap::new();
    for l in inside(a, &["iptables-save"]).lines() {
        if l.contains("NETAVARK") {
            let l = l.split(" [").next().unwrap_or(l).to_owned();
            *rules.entry(l).or_default() += 1;
        }
    }
    let leases = inside(
        a,
        &[
            "sh",
            "-c",
            "cd /run/berth/network/leases 2>/dev/null && find . -type f | sort",
        ],
    )
    .lines()
    .map(|l| l.trim_start_matches("./").to_owned())
    .collect();
    NetworkInventory {
        links,
        rules,
        leases,
        netns: ls(a, "/run/berth/netns"),
        records: ls(a, "/run/berth/network/containers"),
        locks: ls(a, "/run/berth/network/locks"),
    }
}

/// Everything containers and berthd leave behind (berthd's state dir is `/srv/tb/state`, as
/// [`Agent`] runs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub network: NetworkInventory,
    /// `berth-*` units systemd has loaded, with their active state.
    pub units: Vec<String>,
    /// Mount points under /run/berth and the state dir.
    pub mounts: Vec<String>,
    /// cgroup directories of `berth-*` units (every hierarchy, leaves included).
    pub cgroups: Vec<String>,
    /// berthd's records and markers, bundles, the store's per-container dirs, unpacked layers,
    /// partial downloads, temp files at the store's root.
    pub state: BTreeMap<&'static str, Vec<String>>,
}

pub fn full(a: &Agent) -> Inventory {
    let units = inside(
        a,
        &[
            "systemctl",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "berth-*",
        ],
    )
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some(format!("{} {}", f.first()?, f.get(2)?))
    })
    .collect();
    let mut mounts: Vec<String> = inside(a, &["findmnt", "-rn", "-o", "TARGET"])
        .lines()
        .filter(|m| m.starts_with("/run/berth") || m.starts_with("/srv/tb/state"))
        .map(str::to_owned)
        .collect();
    mounts.sort();
    let mut cgroups: Vec<String> = inside(
        a,
        &[
            "sh",
            "-c",
            "find /sys/fs/cgroup -type d -path '*berth-*' 2>/dev/null",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    cgroups.sort();
    let state = [
        ("records", "/srv/tb/state/agent"),
        ("bundles", "/run/berth/containers"),
        ("rootfs", "/srv/tb/state/containers"),
        ("layers", "/srv/tb/state/layers"),
        ("ingest", "/srv/tb/state/ingest"),
        ("store", "/srv/tb/state"),
    ]
    .into_iter()
    .map(|(k, d)| (k, ls(a, d)))
    .collect();
    Inventory {
        network: network(a),
        units,
        mounts,
        cgroups,
        state,
    }
}

impl Inventory {
    /// The parts that differ from `other`, one line each (for a readable failure).
    pub fn diff(&self, other: &Inventory) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |what: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{what}:\n  now:    {a}\n  before: {b}"));
            }
        };
        let (n, o) = (&self.network, &other.network);
        cmp("links", format!("{:?}", n.links), format!("{:?}", o.links));
        cmp("rules", format!("{:?}", n.rules), format!("{:?}", o.rules));
        cmp(
            "leases",
            format!("{:?}", n.leases),
            format!("{:?}", o.leases),
        );
        cmp("netns", format!("{:?}", n.netns), format!("{:?}", o.netns));
        cmp(
            "net records",
            format!("{:?}", n.records),
            format!("{:?}", o.records),
        );
        cmp(
            "net locks",
            format!("{:?}", n.locks),
            format!("{:?}", o.locks),
        );
        cmp(
            "units",
            format!("{:?}", self.units),
            format!("{:?}", other.units),
        );
        cmp(
            "mounts",
            format!("{:?}", self.mounts),
            format!("{:?}", other.mounts),
        );
        cmp(
            "cgroups",
            format!("{:?}", self.cgroups),
            format!("{:?}", other.cgroups),
        );
        for (k, v) in &self.state {
            cmp(
                k,
                format!("{v:?}"),
                format!("{:?}", other.state.get(k).cloned().unwrap_or_default()),
            );
        }
        out
    }
}

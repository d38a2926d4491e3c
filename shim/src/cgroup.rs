//! The shim's side of `Delegate=yes`: splits the unit's cgroup into a `supervisor` leaf (the shim)
//! and a `container` leaf (the container, placed there by the runtime), in cgroup v2 and in every
//! v1 hierarchy systemd delegated to the unit; reads OOM kills; removes the leaves at the end.
//! Where the hierarchies are mounted is the runtime's reading of `/proc/self/mountinfo`
//! ([`Hierarchies`]), so the leaves are where the runtime then places the container, whatever
//! the mount namespace mounted where. Runs in berth-shim.

use std::fs;
use std::io;
use std::path::PathBuf;

use berth_runtime::cgroups::{self, Hierarchies};

pub const SUPERVISOR: &str = "supervisor";
pub const CONTAINER: &str = "container";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("finding the cgroup hierarchies: {0}")]
    Hierarchies(#[from] cgroups::CgroupError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The unit's own cgroup path when it is a service's: where systemd tracks the shim (v2 in
/// unified and hybrid mode, `name=systemd` in legacy mode).
pub fn unit_cgroup(h: &Hierarchies) -> Option<String> {
    [h.v2(), h.named("systemd")]
        .into_iter()
        .flatten()
        .filter_map(|h| h.own.as_deref())
        .map(|p| p.trim_end_matches('/'))
        .find(|p| p.ends_with(".service"))
        .map(str::to_owned)
}

/// The unit's directory in one hierarchy systemd delegated to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitDir {
    /// cgroup v2 (pure or the hybrid `unified` hierarchy).
    pub v2: bool,
    /// A v1 hierarchy with the memory controller.
    pub memory: bool,
    /// `<mount>/<unit>`.
    pub dir: PathBuf,
}

/// The unit's cgroup directories the shim manages, one per delegated hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaves {
    /// The unit's cgroup path (same in every delegated hierarchy), e.g. `/system.slice/berth-web.service`.
    pub unit: String,
    /// The unit's directory in each delegated hierarchy.
    pub dirs: Vec<UnitDir>,
    /// `<mount>/<unit>` in the v1 hierarchies systemd did not realise for the unit (hybrid mode:
    /// cpuacct, cpuset, blkio, freezer…): a runtime given the absolute container path creates
    /// it there too, and nobody else would remove it.
    pub others: Vec<PathBuf>,
}

impl Leaves {
    /// [`Leaves::plan`] over this process's hierarchies (the runtime's reading of
    /// `/proc/self/mountinfo` and `/proc/self/cgroup`, so both place the container alike).
    pub fn discover() -> Result<Option<Self>, CgroupError> {
        Ok(Self::plan(&Hierarchies::read()?))
    }

    /// The delegated hierarchies are those in which the shim sits in its unit's cgroup (in
    /// hybrid mode systemd realises only some v1 controllers for a unit). `None` when the shim
    /// does not run as a systemd service (run by hand): then it leaves cgroups alone.
    pub fn plan(h: &Hierarchies) -> Option<Self> {
        let unit = unit_cgroup(h)?;
        let mut leaves = Leaves {
            unit,
            ..Leaves::default()
        };
        for x in &h.list {
            let dir = x.dir(&leaves.unit);
            if x.own.as_deref().map(|p| p.trim_end_matches('/')) == Some(leaves.unit.as_str()) {
                leaves.dirs.push(UnitDir {
                    v2: x.v2,
                    memory: x.controllers.iter().any(|c| c == "memory"),
                    dir,
                });
            } else if !x.v2 {
                leaves.others.push(dir);
            }
        }
        Some(leaves)
    }

    /// Creates both leaves everywhere, moves the shim into `supervisor`, and on v2 enables the
    /// unit's controllers for the leaves (possible only once the unit's own cgroup is empty).
    pub fn setup(&self) -> Result<(), CgroupError> {
        let pid = std::process::id().to_string();
        for UnitDir { v2, dir: d, .. } in &self.dirs {
            for leaf in [SUPERVISOR, CONTAINER] {
                let p = d.join(leaf);
                match fs::create_dir(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => {
                        return Err(CgroupError::Io {
                            op: "mkdir",
                            path: p,
                            source,
                        });
                    }
                }
            }
            // v1: the shim (one thread) moves itself through `tasks`, which the kernel does
            // without its global fork lock and the RCU grace period that lock waits for (see
            // berth_runtime::cgroups::Join); v2 has only `cgroup.procs`.
            let (file, who) = if *v2 {
                ("cgroup.procs", pid.as_str())
            } else {
                ("tasks", "0")
            };
            let procs = d.join(SUPERVISOR).join(file);
            fs::write(&procs, who).map_err(|source| CgroupError::Io {
                op: "joining",
                path: procs.clone(),
                source,
            })?;
            if *v2 {
                let avail = fs::read_to_string(d.join("cgroup.controllers")).unwrap_or_default();
                for c in avail.split_whitespace() {
                    // Best effort: a controller systemd did not delegate stays off.
                    let _ = fs::write(d.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
        Ok(())
    }

    /// What the runtime gets as the container's cgroup path (relative to each hierarchy's root).
    pub fn container_path(&self) -> String {
        format!("{}/{CONTAINER}", self.unit)
    }

    /// The number of OOM kills so far in the container leaf (v2 `memory.events`, v1
    /// `memory.oom_control`), 0 when unknown.
    pub fn oom_kills(&self) -> u64 {
        for UnitDir { v2, memory, dir: d } in &self.dirs {
            let file = if *v2 {
                d.join(CONTAINER).join("memory.events")
            } else if *memory {
                d.join(CONTAINER).join("memory.oom_control")
            } else {
                continue;
            };
            if let Ok(t) = fs::read_to_string(&file)
                && let Some(n) = parse_oom_kill(&t)
            {
                return n;
            }
        }
        0
    }

    /// Moves the shim back to the unit's cgroup and removes the leaves (the runtime has removed
    /// the container's own cgroup already; what is left is removed here, best effort: systemd
    /// trims the delegated subtree too when the unit stops).
    pub fn cleanup(&self) {
        let pid = std::process::id().to_string();
        for UnitDir { dir: d, .. } in &self.dirs {
            let _ = fs::write(d.join("cgroup.procs"), &pid);
            for leaf in [CONTAINER, SUPERVISOR] {
                let _ = fs::remove_dir(d.join(leaf));
            }
        }
        for d in &self.others {
            let _ = fs::remove_dir(d.join(CONTAINER));
            let _ = fs::remove_dir(d);
        }
    }
}

pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hybrid host's hierarchies as this project's test machines mount them.
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A delegated unit's membership there: systemd realised no cpuacct or blkio cgroup for it.
    const HYBRID_UNIT: &str = "\
9:name=systemd:/system.slice/berth-web.service
8:pids:/system.slice/berth-web.service
7:blkio:/
4:memory:/system.slice/berth-web.service
2:cpuacct:/
1:cpu:/system.slice/berth-web.service
0::/system.slice/berth-web.service
";

    #[test]
    fn hybrid_unit_is_split_in_its_delegated_hierarchies_only() {
        let l = Leaves::plan(&Hierarchies::parse(HYBRID_MOUNTS, HYBRID_UNIT)).unwrap();
        assert_eq!(l.unit, "/system.slice/berth-web.service");
        assert_eq!(
            l.container_path(),
            "/system.slice/berth-web.service/container"
        );
        let at = |h: &str| PathBuf::from(format!("/sys/fs/cgroup/{h}{}", l.unit));
        let dirs: Vec<_> = l
            .dirs
            .iter()
            .map(|d| (d.v2, d.memory, d.dir.clone()))
            .collect();
        assert_eq!(
            dirs,
            [
                (false, false, at("cpu")),
                (false, true, at("memory")),
                (false, false, at("pids")),
                (false, false, at("systemd")),
                (true, false, at("unified")),
            ]
        );
        assert_eq!(l.others, [at("cpuacct"), at("blkio")]);
    }

    #[test]
    fn pure_v2_unit_is_one_directory() {
        let h = Hierarchies::parse(
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "0::/system.slice/berth-web.service\n",
        );
        let l = Leaves::plan(&h).unwrap();
        let unit_dir = UnitDir {
            v2: true,
            memory: false,
            dir: "/sys/fs/cgroup/system.slice/berth-web.service".into(),
        };
        assert_eq!(l.dirs, [unit_dir]);
        assert!(l.others.is_empty());
    }

    #[test]
    fn a_subtree_mounted_as_the_hierarchy_is_followed() {
        // systemd in a container that shares the host's cgroup namespace: its /sys/fs/cgroup is
        // the container's subtree, while /proc/self/cgroup shows host paths.
        let h = Hierarchies::parse(
            "50 40 0:26 /docker/ab12 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/docker/ab12/system.slice/berth-web.service\n",
        );
        let l = Leaves::plan(&h).unwrap();
        assert_eq!(
            l.dirs[0].dir,
            PathBuf::from("/sys/fs/cgroup/system.slice/berth-web.service")
        );
    }

    #[test]
    fn only_a_service_cgroup_is_split() {
        let by_hand =
            "9:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(
            Leaves::plan(&Hierarchies::parse(HYBRID_MOUNTS, by_hand)),
            None
        );
        // Legacy mode (no cgroup2): systemd tracks the unit in name=systemd.
        let legacy: String = HYBRID_MOUNTS
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        let own = "9:name=systemd:/system.slice/berth-web.service/\n4:memory:/system.slice/berth-web.service\n";
        let l = Leaves::plan(&Hierarchies::parse(&legacy, own)).unwrap();
        assert_eq!(l.unit, "/system.slice/berth-web.service");
        assert_eq!(l.dirs.len(), 2);
        assert!(l.dirs.iter().all(|d| !d.v2));
        // No cgroup file system at all: nothing to split.
        assert_eq!(Leaves::plan(&Hierarchies::parse("", HYBRID_UNIT)), None);
    }

    #[test]
    fn oom_counters() {
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n"),
            Some(4)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
    }
}

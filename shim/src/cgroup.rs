//! The shim's side of `Delegate=yes`: splits the unit's cgroup into a `supervisor` leaf (the shim)
//! and a `container` leaf (the container, placed there by the runtime), in cgroup v2 and in every
//! v1 hierarchy systemd delegated to the unit; reads OOM kills; removes the leaves at the end.
//! Runs in berth-shim.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const SUPERVISOR: &str = "supervisor";
pub const CONTAINER: &str = "container";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading /proc/self/cgroup: {0}")]
    Own(#[source] io::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Empty for cgroup v2; `cpu,cpuacct`, `memory`, `name=systemd` … for v1.
    pub controllers: String,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let controllers = it.next()?.to_owned();
            let path = it.next()?.to_owned();
            Some(Membership { controllers, path })
        })
        .collect()
}

/// The path of the unit's own cgroup: where systemd tracks it (v2 in unified and hybrid mode,
/// `name=systemd` in legacy mode), when it is a service's cgroup.
pub fn unit_cgroup(members: &[Membership]) -> Option<String> {
    let v2 = members.iter().find(|m| m.controllers.is_empty());
    let named = members.iter().find(|m| m.controllers == "name=systemd");
    let p = [v2, named]
        .into_iter()
        .flatten()
        .map(|m| m.path.trim_end_matches('/').to_owned())
        .find(|p| p.ends_with(".service"))?;
    Some(p)
}

/// Mount point candidates of a hierarchy below `base` (normally /sys/fs/cgroup).
fn mount_dirs(base: &Path, controllers: &str, unified: bool) -> Vec<PathBuf> {
    if controllers.is_empty() {
        return if unified {
            vec![base.to_path_buf()]
        } else {
            vec![base.join("unified")]
        };
    }
    let mut v = vec![base.join(controllers.trim_start_matches("name="))];
    v.extend(controllers.split(',').map(|c| base.join(c)));
    v
}

/// The unit's cgroup directories the shim manages, one per delegated hierarchy.
#[derive(Debug, Clone, Default)]
pub struct Leaves {
    /// The unit's cgroup path (same in every delegated hierarchy), e.g. `/system.slice/berth-web.service`.
    pub unit: String,
    /// `(controllers, <mount>/<unit>)` for each delegated hierarchy.
    pub dirs: Vec<(String, PathBuf)>,
    /// `<mount>/<unit>` in the v1 hierarchies systemd did not realise for the unit (hybrid mode:
    /// cpuacct, cpuset, blkio, freezer…): a runtime given the absolute container path creates
    /// it there too, and nobody else would remove it.
    pub others: Vec<PathBuf>,
}

impl Leaves {
    /// Finds the delegated hierarchies: those in which the shim sits in its unit's cgroup
    /// (in hybrid mode systemd realises only some v1 controllers for a unit). `None` when the shim
    /// does not run as a systemd service (run by hand): then it leaves cgroups alone.
    pub fn discover(base: &Path) -> Result<Option<Self>, CgroupError> {
        let text = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::Own)?;
        let members = parse_proc_cgroup(&text);
        let Some(unit) = unit_cgroup(&members) else {
            return Ok(None);
        };
        let unified = base.join("cgroup.controllers").exists();
        let mut dirs = Vec::new();
        let mut others = Vec::new();
        for m in &members {
            if m.path.trim_end_matches('/') != unit {
                if !m.controllers.is_empty()
                    && let Some(mp) = mount_dirs(base, &m.controllers, unified)
                        .into_iter()
                        .find(|d| d.is_dir())
                {
                    others.push(mp.join(unit.trim_start_matches('/')));
                }
                continue;
            }
            if let Some(d) = mount_dirs(base, &m.controllers, unified)
                .into_iter()
                .map(|mp| mp.join(unit.trim_start_matches('/')))
                .find(|d| d.is_dir())
                && !dirs.iter().any(|(_, x)| x == &d)
            {
                dirs.push((m.controllers.clone(), d));
            }
        }
        Ok(Some(Leaves { unit, dirs, others }))
    }

    /// Creates both leaves everywhere, moves the shim into `supervisor`, and on v2 enables the
    /// unit's controllers for the leaves (possible only once the unit's own cgroup is empty).
    pub fn setup(&self) -> Result<(), CgroupError> {
        let pid = std::process::id().to_string();
        for (controllers, d) in &self.dirs {
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
            let (file, who) = if controllers.is_empty() {
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
            if controllers.is_empty() {
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
        for (controllers, d) in &self.dirs {
            let file = if controllers.is_empty() {
                d.join(CONTAINER).join("memory.events")
            } else if controllers.split(',').any(|c| c == "memory") {
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
        for (_, d) in &self.dirs {
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

    const HYBRID: &str = "12:pids:/system.slice/berth-web.service
11:memory:/system.slice/berth-web.service
10:cpu:/system.slice/berth-web.service
9:cpuacct:/
8:blkio:/
1:name=systemd:/system.slice/berth-web.service
0::/system.slice/berth-web.service
";

    #[test]
    fn finds_unit_cgroup() {
        let m = parse_proc_cgroup(HYBRID);
        assert_eq!(m.len(), 7);
        assert_eq!(
            unit_cgroup(&m).as_deref(),
            Some("/system.slice/berth-web.service")
        );
        let by_hand = parse_proc_cgroup("0::/user.slice/session-1.scope\n");
        assert_eq!(unit_cgroup(&by_hand), None);
    }

    #[test]
    fn discovers_delegated_hierarchies_only() {
        let tmp = tempfile::tempdir().unwrap();
        let unit = "system.slice/berth-web.service";
        for h in ["pids", "memory", "cpu", "cpuacct", "systemd", "unified"] {
            std::fs::create_dir_all(tmp.path().join(h).join(unit)).unwrap();
        }
        let members = parse_proc_cgroup(HYBRID);
        let unit_path = unit_cgroup(&members).unwrap();
        let mut dirs = Vec::new();
        for m in &members {
            if m.path != unit_path {
                continue;
            }
            let d = mount_dirs(tmp.path(), &m.controllers, false)
                .into_iter()
                .map(|mp| mp.join(unit))
                .find(|d| d.is_dir());
            dirs.push(d.unwrap());
        }
        let names: Vec<_> = dirs
            .iter()
            .map(|d| {
                d.strip_prefix(tmp.path())
                    .unwrap()
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["pids", "memory", "cpu", "systemd", "unified"]);
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

//! Where a container's cgroup lives: the cgroup hierarchies mounted on this host (v1, hybrid or
//! pure v2, from `/proc/self/mountinfo`) and `cgroupsPath` resolved against each of them. Runs
//! in the runtime process; pure over given texts ([`Cgroup::resolve_with`]).

use std::path::{Path, PathBuf};

use super::{Cgroup, CgroupError, Dir, Result, io};

const V1_CONTROLLERS: [&str; 14] = [
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// A cgroup mount from mountinfo: (mount point, mount root, fstype, super options).
fn cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, String, String, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        if post[0] == "cgroup" || post[0] == "cgroup2" {
            out.push((
                PathBuf::from(unescape(pre[4])),
                unescape(pre[3]),
                post[0].to_string(),
                post[2].to_string(),
            ));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

impl Cgroup {
    /// Resolves `path` (absolute: from each hierarchy's root; relative: from this process's own
    /// cgroup) against the hierarchies mounted on this host. Creates nothing.
    pub fn resolve(path: &str) -> Result<Cgroup> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io(Path::new("/proc/self/mountinfo")))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(io(Path::new("/proc/self/cgroup")))?;
        Self::resolve_with(path, &mountinfo, &own)
    }

    /// [`Cgroup::resolve`] over given `/proc/self/mountinfo` and `/proc/self/cgroup` texts.
    pub fn resolve_with(path: &str, mountinfo: &str, own: &str) -> Result<Cgroup> {
        let mounts = cgroup_mounts(mountinfo);
        let unified_root = mounts
            .iter()
            .find(|m| m.2 == "cgroup2" && m.0 == Path::new("/sys/fs/cgroup"));
        let own_path = |key: &str| -> String {
            own.lines()
                .filter_map(|l| {
                    let mut p = l.splitn(3, ':');
                    let (_, k, v) = (p.next()?, p.next()?, p.next()?);
                    (k == key || k.split(',').any(|c| c == key)).then(|| v.to_string())
                })
                .next()
                .unwrap_or_else(|| "/".into())
        };
        let place = |mnt: &Path, mroot: &str, key: &str| -> PathBuf {
            let full = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("{}/{}", own_path(key).trim_end_matches('/'), path)
            };
            let rel = full
                .strip_prefix(mroot)
                .filter(|_| mroot != "/")
                .unwrap_or(&full);
            mnt.join(rel.trim_start_matches('/'))
        };
        if let Some((mnt, mroot, _, _)) = unified_root {
            return Ok(Cgroup {
                v2: true,
                dirs: vec![Dir {
                    name: String::new(),
                    controllers: vec![],
                    root: mnt.clone(),
                    path: place(mnt, mroot, ""),
                    created_from: None,
                }],
            });
        }
        let mut dirs = Vec::new();
        for (mnt, mroot, fstype, opts) in &mounts {
            let name = mnt
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if fstype == "cgroup2" {
                dirs.push(Dir {
                    name: "unified".into(),
                    controllers: vec![],
                    root: mnt.clone(),
                    path: place(mnt, mroot, ""),
                    created_from: None,
                });
                continue;
            }
            let controllers: Vec<String> = opts
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o))
                .map(str::to_string)
                .collect();
            let key = match (
                controllers.first(),
                opts.split(',').find(|o| o.starts_with("name=")),
            ) {
                (Some(c), _) => c.clone(),
                (None, Some(n)) => n.to_string(),
                (None, None) => continue,
            };
            if dirs.iter().any(|d: &Dir| d.root == *mnt) {
                continue;
            }
            dirs.push(Dir {
                name,
                controllers,
                root: mnt.clone(),
                path: place(mnt, mroot, &key),
                created_from: None,
            });
        }
        if dirs.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(Cgroup { v2: false, dirs })
    }
}

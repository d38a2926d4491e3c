//! The cgroup hierarchies the calling process sees: where each one is mounted and from which
//! cgroup (`/proc/self/mountinfo`), and where the process sits in it (`/proc/self/cgroup`). Read
//! once into [`Hierarchies`]; the parsing is pure and unit-tested over given texts. Used by the
//! runtime to place a container's cgroup ([`Hierarchies::cgroup`]) and by berth-shim to find the
//! cgroup systemd delegated to its unit, so both agree on the host's layout; runs in whichever of
//! the two processes calls it.

use std::path::{Path, PathBuf};

use super::{Cgroup, CgroupError, Dir};

/// The v1 controllers a mount's options may name (other options are mount flags).
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

/// Where pure cgroup v2 hosts mount their single hierarchy.
const UNIFIED_MOUNT: &str = "/sys/fs/cgroup";

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The directory name the runtime records for it: the mount point's last component
    /// (`memory`, `cpu,cpuacct`, `systemd`), `unified` for the v2 hierarchy of a hybrid host,
    /// empty on a pure v2 host.
    pub name: String,
    /// A cgroup2 hierarchy.
    pub v2: bool,
    /// The v1 controllers attached to it; empty for v2 and named hierarchies.
    pub controllers: Vec<String>,
    /// The name of a named v1 hierarchy (`systemd` for `name=systemd`).
    pub named: Option<String>,
    /// The mount point.
    pub mount: PathBuf,
    /// The cgroup mounted there (mountinfo's root field, relative to this process's cgroup
    /// namespace): `/` unless a subtree was mounted or bind-mounted.
    pub mount_root: String,
    /// This process's cgroup in the hierarchy, `None` when `/proc/self/cgroup` does not list it.
    pub own: Option<String>,
}

impl Hierarchy {
    /// The directory of cgroup `path`: absolute paths start at the hierarchy's root, relative ones
    /// at this process's own cgroup.
    pub fn dir(&self, path: &str) -> PathBuf {
        let full = if path.starts_with('/') {
            path.to_string()
        } else {
            let own = self.own.as_deref().unwrap_or("/");
            format!("{}/{}", own.trim_end_matches('/'), path)
        };
        let rel = match self.mount_root.as_str() {
            "/" => full.as_str(),
            root => full.strip_prefix(root).unwrap_or(&full),
        };
        self.mount.join(rel.trim_start_matches('/'))
    }

    /// Whether a `/proc/self/cgroup` controllers field (`""`, `memory`, `cpu,cpuacct`,
    /// `name=systemd`) designates this hierarchy.
    fn is(&self, field: &str) -> bool {
        if self.v2 {
            return field.is_empty();
        }
        match &self.named {
            Some(n) => field.strip_prefix("name=") == Some(n.as_str()),
            None => field
                .split(',')
                .any(|c| self.controllers.iter().any(|x| x == c)),
        }
    }
}

/// The cgroup hierarchies of this process's mount and cgroup namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hierarchies {
    /// Pure cgroup v2: the one cgroup2 hierarchy is all there is.
    pub unified: bool,
    /// Every mounted hierarchy once, in mount order.
    pub list: Vec<Hierarchy>,
}

impl Hierarchies {
    /// Reads this process's `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn read() -> Result<Self, CgroupError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| CgroupError::Io {
                path: PathBuf::from(p),
                source,
            })
        };
        Ok(Self::parse(
            &read("/proc/self/mountinfo")?,
            &read("/proc/self/cgroup")?,
        ))
    }

    /// The hierarchies in `mountinfo` (a `/proc/<pid>/mountinfo` text), with the process's place
    /// in each from `own` (a `/proc/<pid>/cgroup` text). A hierarchy mounted twice counts once,
    /// at its first mount; empty when no cgroup file system is mounted.
    pub fn parse(mountinfo: &str, own: &str) -> Self {
        let mut list: Vec<Hierarchy> = Vec::new();
        for (mount, mount_root, fstype, opts) in mountinfo.lines().filter_map(cgroup_mount) {
            let v2 = fstype == "cgroup2";
            let controllers: Vec<String> = if v2 {
                vec![]
            } else {
                opts.split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(str::to_string)
                    .collect()
            };
            let named = opts
                .split(',')
                .find_map(|o| o.strip_prefix("name="))
                .filter(|_| !v2 && controllers.is_empty())
                .map(str::to_string);
            if !v2 && controllers.is_empty() && named.is_none() {
                continue;
            }
            let same = |h: &Hierarchy| {
                h.mount == mount || (h.v2 == v2 && h.controllers == controllers && h.named == named)
            };
            if list.iter().any(same) {
                continue;
            }
            let name = mount
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            list.push(Hierarchy {
                name,
                v2,
                controllers,
                named,
                mount,
                mount_root,
                own: None,
            });
        }
        let v1 = list.iter().any(|h| !h.v2);
        let unified = list
            .iter()
            .any(|h| h.v2 && (h.mount == Path::new(UNIFIED_MOUNT) || !v1));
        if unified {
            // A pure v2 host may still show v1 mounts nobody uses (a leftover `name=` one).
            list.retain(|h| h.v2);
        }
        for h in &mut list {
            h.own = own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_id, field, path) = (f.next()?, f.next()?, f.next()?);
                h.is(field).then(|| path.to_string())
            });
            h.name = match (h.v2, unified) {
                (true, true) => String::new(),
                (true, false) => "unified".into(),
                _ => std::mem::take(&mut h.name),
            };
        }
        Hierarchies { unified, list }
    }

    /// The v2 hierarchy (pure v2, or the controller-less one of a hybrid host).
    pub fn v2(&self) -> Option<&Hierarchy> {
        self.list.iter().find(|h| h.v2)
    }

    /// The named v1 hierarchy `name` (`systemd`).
    pub fn named(&self, name: &str) -> Option<&Hierarchy> {
        self.list.iter().find(|h| h.named.as_deref() == Some(name))
    }

    /// Cgroup `path` (see [`Hierarchy::dir`]) in every hierarchy: what the runtime creates for a
    /// container. Creates nothing.
    pub fn cgroup(&self, path: &str) -> Result<Cgroup, CgroupError> {
        if self.list.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        let dirs = self
            .list
            .iter()
            .map(|h| Dir {
                name: h.name.clone(),
                controllers: h.controllers.clone(),
                root: h.mount.clone(),
                path: h.dir(path),
                created_from: None,
            })
            .collect();
        Ok(Cgroup {
            v2: self.unified,
            dirs,
        })
    }
}

/// A cgroup mount of one mountinfo line: (mount point, mount root, fstype, super options).
fn cgroup_mount(line: &str) -> Option<(PathBuf, String, &str, &str)> {
    let (pre, post) = line.split_once(" - ")?;
    let pre: Vec<&str> = pre.split(' ').collect();
    let mut post = post.split(' ');
    let (fstype, _source, opts) = (post.next()?, post.next()?, post.next()?);
    if pre.len() < 5 || !matches!(fstype, "cgroup" | "cgroup2") {
        return None;
    }
    Some((
        PathBuf::from(unescape(pre[4])),
        unescape(pre[3]),
        fstype,
        opts,
    ))
}

/// mountinfo's octal escapes (`\040` for a space, `\134` for a backslash …).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Cgroup {
    /// Resolves `path` (absolute: from each hierarchy's root; relative: from this process's own
    /// cgroup) against the hierarchies mounted on this host. Creates nothing.
    pub fn resolve(path: &str) -> Result<Cgroup, CgroupError> {
        Hierarchies::read()?.cgroup(path)
    }

    /// [`Cgroup::resolve`] over given `/proc/self/mountinfo` and `/proc/self/cgroup` texts.
    pub fn resolve_with(path: &str, mountinfo: &str, own: &str) -> Result<Cgroup, CgroupError> {
        Hierarchies::parse(mountinfo, own).cgroup(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hybrid host as this project's test machines have it (memory mounted a second time
    /// elsewhere, as a container runtime's bind mount would show).
    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/blkio rw,nosuid shared:14 - cgroup cgroup rw,blkio
90 88 0:30 /system.slice /srv/my\\040box/memory rw - cgroup cgroup rw,memory
";

    const OWN: &str = "\
5:blkio:/
4:memory:/system.slice/berth-web.service
3:cpu,cpuacct:/system.slice/berth-web.service
1:name=systemd:/system.slice/berth-web.service
0::/system.slice/berth-web.service
";

    #[test]
    fn hybrid_hierarchies_with_their_place_of_this_process() {
        let h = Hierarchies::parse(HYBRID, OWN);
        assert!(!h.unified);
        let names: Vec<_> = h.list.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["unified", "systemd", "cpu,cpuacct", "memory", "blkio"]
        );
        assert_eq!(h.list[2].controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            h.named("systemd").unwrap().controllers,
            Vec::<String>::new()
        );
        let own: Vec<_> = h.list.iter().map(|h| h.own.as_deref()).collect();
        let unit = Some("/system.slice/berth-web.service");
        assert_eq!(own, [unit, unit, unit, unit, Some("/")]);
        assert_eq!(h.v2().unwrap().mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            h.list[3].dir("ctr"),
            Path::new("/sys/fs/cgroup/memory/system.slice/berth-web.service/ctr")
        );
        assert_eq!(h.list[4].dir("ctr"), Path::new("/sys/fs/cgroup/blkio/ctr"));
    }

    #[test]
    fn pure_v2_is_one_hierarchy_wherever_it_is_mounted() {
        let own = "0::/system.slice/berth-web.service\n";
        let h = Hierarchies::parse(
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            own,
        );
        assert!(h.unified);
        assert_eq!(h.list.len(), 1);
        assert_eq!(h.list[0].name, "");
        assert_eq!(
            h.list[0].own.as_deref(),
            Some("/system.slice/berth-web.service")
        );
        // Only cgroup2, mounted elsewhere: still the whole of it, not a hybrid `unified` part.
        let h = Hierarchies::parse("40 25 0:26 / /run/cg rw - cgroup2 none rw\n", own);
        assert!(h.unified);
        assert_eq!(h.list[0].dir("/a"), Path::new("/run/cg/a"));
        assert_eq!(Hierarchies::parse("", own), Hierarchies::default());
    }

    #[test]
    fn a_subtree_mount_strips_its_root_and_names_are_unescaped() {
        let mi = "90 88 0:30 /system.slice /srv/my\\040box/memory rw - cgroup cgroup rw,memory\n";
        let h = Hierarchies::parse(mi, "4:memory:/system.slice/x.service\n");
        assert_eq!(h.list[0].mount, Path::new("/srv/my box/memory"));
        assert_eq!(
            h.list[0].dir("ctr"),
            Path::new("/srv/my box/memory/x.service/ctr")
        );
        assert_eq!(unescape("a\\134b\\011c\\0"), "a\\b\tc\\0");
    }

    #[test]
    fn a_container_cgroup_has_a_directory_in_every_hierarchy() {
        let cg = Hierarchies::parse(HYBRID, OWN).cgroup("/a/b").unwrap();
        assert!(!cg.v2);
        assert_eq!(cg.dirs.len(), 5);
        assert_eq!(cg.dirs[4].path, Path::new("/sys/fs/cgroup/blkio/a/b"));
        assert_eq!(cg.dirs[4].root, Path::new("/sys/fs/cgroup/blkio"));
        assert!(matches!(
            Hierarchies::default().cgroup("/a"),
            Err(CgroupError::NoHierarchy)
        ));
    }
}

//! The namespace plan of a container (computed in the runtime, carried out by the parent around
//! the clone and by the init right after it): which namespaces the clone creates, which are
//! joined by path and in which order. Pure, so the order is unit-tested.

use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// Errors of [`plan`].
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// The same namespace type is listed twice.
    #[error("malformed spec: duplicated {0} namespace")]
    Duplicate(&'static str),
    /// A sysctl the container's namespaces do not isolate (runc's messages).
    #[error("{0}")]
    Sysctl(String),
}

/// Refuses sysctls that would change the host's kernel, as runc does: IPC ones need an IPC
/// namespace, `net.*` a network namespace other than the caller's (`host_net`: the container
/// has none or joins the caller's), `kernel.domainname` a UTS namespace; `kernel.hostname`
/// is the `hostname` field's, and anything else is not namespaced at all.
pub fn check_sysctls<'a>(
    names: impl IntoIterator<Item = &'a String>,
    plan: &NsPlan,
    host_net: bool,
) -> Result<(), NsError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    for s in names {
        let refuse = |why: String| Err(NsError::Sysctl(why));
        if IPC.contains(&s.as_str()) || s.starts_with("fs.mqueue.") {
            if plan.has(CloneFlags::CLONE_NEWIPC) {
                continue;
            }
            return refuse(format!(
                "sysctl {s:?} is not allowed in the hosts ipc namespace"
            ));
        }
        if s.starts_with("net.") {
            if host_net {
                return refuse(format!(
                    "sysctl {s:?} not allowed in host network namespace"
                ));
            }
            continue;
        }
        if plan.has(CloneFlags::CLONE_NEWUTS) {
            match s.as_str() {
                "kernel.domainname" => continue,
                "kernel.hostname" => {
                    return refuse(format!(
                        "sysctl {s:?} is not allowed as it conflicts with the OCI \"hostname\" field"
                    ));
                }
                _ => {}
            }
        }
        return refuse(format!(
            "sysctl {s:?} is not in a separate kernel namespace"
        ));
    }
    Ok(())
}

/// How a container's namespaces come to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    /// Namespaces created by the clone itself (so that a new user namespace owns them and a new
    /// PID namespace has the init as PID 1).
    pub clone_flags: CloneFlags,
    /// Joined by the init right after the clone, in this order (never the user namespace).
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// The PID namespace to join: the parent enters it for its children around the clone.
    pub join_pid: Option<PathBuf>,
    /// The user namespace to join, after the others (which need the host's privileges).
    pub join_user: Option<PathBuf>,
    /// New namespaces the init unshares itself after joining `join_user` (so that the joined user
    /// namespace owns them).
    pub unshare_after_user: CloneFlags,
    /// A new cgroup namespace, unshared by the init once it sits in its cgroup (its root is the
    /// cgroup it is in at that moment).
    pub new_cgroup: bool,
    /// A new time namespace, unshared by the init, which sets its clock offsets before anything
    /// enters it; the init itself enters it with the exec of the user's program.
    pub new_time: bool,
}

/// `CLONE_NEWTIME` (Linux 5.6), which nix does not name.
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

impl Default for NsPlan {
    fn default() -> Self {
        NsPlan {
            clone_flags: CloneFlags::empty(),
            join: Vec::new(),
            join_pid: None,
            join_user: None,
            unshare_after_user: CloneFlags::empty(),
            new_cgroup: false,
            new_time: false,
        }
    }
}

impl NsPlan {
    /// Whether the container gets a namespace of this type of its own (new or joined).
    pub fn has(&self, ns: CloneFlags) -> bool {
        self.clone_flags.contains(ns)
            || self.unshare_after_user.contains(ns)
            || self.join.iter().any(|(t, _)| *t == ns)
            || (ns == CloneFlags::CLONE_NEWPID && self.join_pid.is_some())
            || (ns == CloneFlags::CLONE_NEWUSER && self.join_user.is_some())
            || (ns == CloneFlags::CLONE_NEWCGROUP && self.new_cgroup)
            || (ns == CLONE_NEWTIME && self.new_time)
    }

    /// Whether the container gets a network namespace of its own that nothing configured yet
    /// (created, not joined): its loopback is down until the init brings it up, as runc and
    /// crun do; a joined namespace is left as its owner set it.
    pub fn new_network(&self) -> bool {
        (self.clone_flags | self.unshare_after_user).contains(CloneFlags::CLONE_NEWNET)
    }

    /// Whether the clone creates a new user namespace (the parent must write the id maps).
    pub fn new_user(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }
}

/// The clone flag and name of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> Result<(CloneFlags, &'static str), NsError> {
    Ok(match t {
        LinuxNamespaceType::Pid => (CloneFlags::CLONE_NEWPID, "pid"),
        LinuxNamespaceType::Mount => (CloneFlags::CLONE_NEWNS, "mount"),
        LinuxNamespaceType::Uts => (CloneFlags::CLONE_NEWUTS, "uts"),
        LinuxNamespaceType::Ipc => (CloneFlags::CLONE_NEWIPC, "ipc"),
        LinuxNamespaceType::Network => (CloneFlags::CLONE_NEWNET, "network"),
        LinuxNamespaceType::User => (CloneFlags::CLONE_NEWUSER, "user"),
        LinuxNamespaceType::Cgroup => (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        LinuxNamespaceType::Time => (CLONE_NEWTIME, "time"),
    })
}

/// The `/proc/<pid>/ns/<name>` file name of a namespace flag.
pub fn proc_name(f: CloneFlags) -> &'static str {
    match f {
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNS => "mnt",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWNET => "net",
        CloneFlags::CLONE_NEWUSER => "user",
        CLONE_NEWTIME => "time",
        _ => "cgroup",
    }
}

/// Join order for namespaces entered by path: mount last, because entering it changes the root
/// and cwd the other joins do not care about.
const JOIN_ORDER: [CloneFlags; 6] = [
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWNET,
    CloneFlags::CLONE_NEWCGROUP,
    CLONE_NEWTIME,
    CloneFlags::CLONE_NEWNS,
];

/// Plans the namespaces of `linux.namespaces`.
pub fn plan(namespaces: &[LinuxNamespace]) -> Result<NsPlan, NsError> {
    let mut seen = CloneFlags::empty();
    let mut new = CloneFlags::empty();
    let mut p = NsPlan::default();
    let mut joins: Vec<(CloneFlags, PathBuf)> = Vec::new();
    for ns in namespaces {
        let (f, name) = flag(ns.typ())?;
        if seen.contains(f) {
            return Err(NsError::Duplicate(name));
        }
        seen |= f;
        match ns.path() {
            Some(path) if !path.as_os_str().is_empty() => match f {
                CloneFlags::CLONE_NEWPID => p.join_pid = Some(path.clone()),
                CloneFlags::CLONE_NEWUSER => p.join_user = Some(path.clone()),
                _ => joins.push((f, path.clone())),
            },
            _ => new |= f,
        }
    }
    for f in JOIN_ORDER {
        if let Some(j) = joins.iter().find(|(t, _)| *t == f) {
            p.join.push(j.clone());
        }
    }
    p.new_cgroup = new.contains(CloneFlags::CLONE_NEWCGROUP);
    new.remove(CloneFlags::CLONE_NEWCGROUP);
    // Not by the clone: a process cloned into a new time namespace is in it at once, and the
    // kernel accepts clock offsets only before any process entered.
    p.new_time = new.contains(CLONE_NEWTIME);
    new.remove(CLONE_NEWTIME);
    if p.join_user.is_some() {
        // Only the PID namespace must come from the clone (the init has to be its PID 1); the
        // rest is unshared after entering the user namespace so that it owns them.
        p.clone_flags = new & CloneFlags::CLONE_NEWPID;
        p.unshare_after_user = new - CloneFlags::CLONE_NEWPID;
    } else {
        p.clone_flags = new;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(t: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let b = LinuxNamespaceBuilder::default().typ(t);
        match path {
            Some(p) => b.path(p).build().unwrap(),
            None => b.build().unwrap(),
        }
    }

    #[test]
    fn new_namespaces_come_from_the_clone_except_cgroup() {
        use LinuxNamespaceType::*;
        let p = plan(&[
            ns(Pid, None),
            ns(Mount, None),
            ns(User, None),
            ns(Cgroup, None),
        ])
        .unwrap();
        assert_eq!(
            p.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUSER
        );
        assert!(p.new_cgroup && p.new_user() && p.join.is_empty());
        assert!(p.has(CloneFlags::CLONE_NEWCGROUP));
        assert!(!p.has(CloneFlags::CLONE_NEWNET));
    }

    #[test]
    fn joins_are_ordered_with_mount_last_and_user_apart() {
        use LinuxNamespaceType::*;
        let p = plan(&[
            ns(Mount, Some("/m")),
            ns(Network, Some("/n")),
            ns(Pid, Some("/p")),
            ns(User, Some("/u")),
            ns(Uts, None),
            ns(Ipc, Some("/i")),
        ])
        .unwrap();
        let order: Vec<_> = p.join.iter().map(|(_, p)| p.to_str().unwrap()).collect();
        assert_eq!(order, ["/i", "/n", "/m"]);
        assert_eq!(p.join_pid.as_deref(), Some("/p".as_ref()));
        assert_eq!(p.join_user.as_deref(), Some("/u".as_ref()));
        assert_eq!(p.clone_flags, CloneFlags::empty());
        assert_eq!(p.unshare_after_user, CloneFlags::CLONE_NEWUTS);
    }

    #[test]
    fn sysctls_only_in_the_namespaces_that_isolate_them() {
        use LinuxNamespaceType::*;
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = plan(&[ns(Ipc, None), ns(Uts, None), ns(Network, None)]).unwrap();
        let ok = names(&[
            "kernel.shmmax",
            "fs.mqueue.msg_max",
            "net.ipv4.ip_forward",
            "kernel.domainname",
        ]);
        assert!(check_sysctls(&ok, &all, false).is_ok());
        let none = plan(&[]).unwrap();
        for (s, host_net, want) in [
            (
                "kernel.shmmax",
                false,
                "not allowed in the hosts ipc namespace",
            ),
            (
                "net.ipv4.ip_forward",
                true,
                "not allowed in host network namespace",
            ),
            (
                "kernel.domainname",
                false,
                "not in a separate kernel namespace",
            ),
            ("vm.swappiness", false, "not in a separate kernel namespace"),
        ] {
            let e = check_sysctls(&names(&[s]), &none, host_net)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{s}: {e}");
        }
        let e = check_sysctls(&names(&["kernel.hostname"]), &all, false).unwrap_err();
        assert!(
            e.to_string()
                .contains("conflicts with the OCI \"hostname\" field")
        );
        assert!(check_sysctls(&names(&["vm.swappiness"]), &all, false).is_err());
    }

    #[test]
    fn only_a_created_network_namespace_gets_its_loopback_brought_up() {
        use LinuxNamespaceType::*;
        assert!(plan(&[ns(Network, None)]).unwrap().new_network());
        assert!(
            plan(&[ns(User, Some("/u")), ns(Network, None)])
                .unwrap()
                .new_network()
        );
        assert!(!plan(&[ns(Network, Some("/n"))]).unwrap().new_network());
        assert!(!plan(&[ns(Pid, None), ns(Uts, None)]).unwrap().new_network());
    }

    #[test]
    fn duplicates_are_refused() {
        use LinuxNamespaceType::*;
        assert!(matches!(
            plan(&[ns(Pid, None), ns(Pid, None)]),
            Err(NsError::Duplicate("pid"))
        ));
    }

    #[test]
    fn time_is_unshared_by_the_init_or_joined_before_mount() {
        use LinuxNamespaceType::*;
        let p = plan(&[ns(Pid, None), ns(Time, None)]).unwrap();
        assert!(p.new_time && p.has(CLONE_NEWTIME));
        assert_eq!(p.clone_flags, CloneFlags::CLONE_NEWPID);
        let p = plan(&[
            ns(Mount, Some("/proc/1/ns/mnt")),
            ns(Time, Some("/proc/1/ns/time")),
        ])
        .unwrap();
        assert!(!p.new_time && p.has(CLONE_NEWTIME));
        let order: Vec<_> = p.join.iter().map(|(f, _)| proc_name(*f)).collect();
        assert_eq!(order, ["time", "mnt"]);
    }
}

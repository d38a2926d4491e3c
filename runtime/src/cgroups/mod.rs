//! The container's cgroup, cgroup v1 (and hybrid) and v2 behind one type, used by the runtime
//! process (never by the container): resolve `cgroupsPath` against the host's hierarchies,
//! create the directories, translate `linux.resources` into file writes, let processes move
//! themselves in ([`Join`]), list, freeze and kill them, and remove the directories again.
//!
//! Own code rather than cgroups-rs: cgroups-rs 0.5 unconditionally pulls zbus (an async D-Bus
//! stack) into every user and moves processes through `cgroup.procs` (see [`Join`] for why the
//! runtime does not); the runtime's start-up time is its main figure and this module is file
//! writes. Where the directories are is `hierarchies`' job; the translation is pure (`resources`:
//! [`v1_writes`], [`v2_writes`]) and unit-tested, the rest against fake hierarchies in temporary
//! directories.

mod hierarchies;
mod resources;

pub use hierarchies::{Hierarchies, Hierarchy};
pub use resources::{blkio_to_io_weight, device_rules, shares_to_weight, v1_writes, v2_writes};

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

/// Errors of cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading or writing a cgroup file or directory failed.
    #[error("cgroup {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No cgroup hierarchy is mounted.
    #[error("no cgroup hierarchy found in /proc/self/mountinfo")]
    NoHierarchy,
    /// `unified` settings on a host whose controllers are v1 (runc's words).
    #[error("cannot use unified on cgroup v1")]
    UnifiedOnV1,
    /// A setting for a v1 controller that no hierarchy on this host has.
    #[error("cannot set {0} limit: no {0} cgroup hierarchy is mounted")]
    NoController(&'static str),
    /// An `exec --cgroup` sub-cgroup that is not a relative path below the container's cgroup,
    /// or names a controller no hierarchy has.
    #[error(
        "invalid sub-cgroup {0:?}: a path below the container's cgroup, optionally after CONTROLLER:"
    )]
    BadSubCgroup(String),
    /// The container's cgroup exists already and is frozen: a process joining it would stop.
    #[error("container's cgroup unexpectedly frozen: {}", path.display())]
    Frozen {
        /// The frozen directory.
        path: PathBuf,
    },
    /// Waiting for a state change timed out.
    #[error("cgroup {path}: timed out waiting for {what}")]
    Timeout {
        /// The cgroup.
        path: PathBuf,
        /// What was awaited.
        what: &'static str,
    },
}

type Result<T> = std::result::Result<T, CgroupError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One hierarchy's directory of the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dir {
    /// The hierarchy's directory name (`memory`, `cpu,cpuacct`, `systemd`, `unified`), empty on
    /// a pure v2 host.
    pub name: String,
    /// Controllers of this hierarchy (v1), empty for named and v2 hierarchies.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted.
    pub root: PathBuf,
    /// The container's directory.
    pub path: PathBuf,
    /// The top-most directory this runtime created (removed again on destroy).
    pub created_from: Option<PathBuf>,
}

/// Handles through which a freshly cloned, single-threaded child puts itself into a container's
/// cgroup, opened by the runtime before the clone ([`Cgroup::prepare_join`]).
///
/// Moving another process (a PID written to `cgroup.procs`) takes the write side of the kernel's
/// global fork lock, which waits out an RCU grace period: 5 to 30 ms on this project's test
/// machines, paid again by every container start that comes after a quiet moment. Two ways in
/// skip it: a child cloned straight into its v2 cgroup (`CLONE_INTO_CGROUP`, see
/// [`crate::sys::clone`]), and a thread moving itself alone through a v1 `tasks` file (recent
/// kernels skip the lock for that case: 0.03 ms against 7.6 ms for `cgroup.procs` on Linux 6.18
/// here; a kernel that takes the lock is only slower). A
/// child of the single-threaded runtime is one thread, so moving that thread moves the process.
/// The writes check the credentials the files were opened with, so they work from inside a new
/// user namespace too.
#[derive(Debug)]
pub struct Join {
    /// The v2 directory (pure v2 or the hybrid `unified` one), for `CLONE_INTO_CGROUP`.
    v2_dir: Option<OwnedFd>,
    /// Per hierarchy: the file the child writes "0" to, and whether it is the v2 one.
    files: Vec<(PathBuf, std::fs::File, bool)>,
}

impl Join {
    /// The v2 directory to clone the child into, if the container has one.
    pub fn clone_into(&self) -> Option<BorrowedFd<'_>> {
        self.v2_dir.as_ref().map(|d| d.as_fd())
    }

    /// In the child, first thing: moves the calling (only) thread into every hierarchy it is
    /// not in yet. `placed_v2` is what [`crate::sys::Forked::Child`] reported. Allocates
    /// nothing on success, so it is safe right after the clone.
    pub fn join_self(&self, placed_v2: bool) -> Result<()> {
        for (path, f, v2) in &self.files {
            if *v2 && placed_v2 {
                continue;
            }
            (&*f).write_all(b"0").map_err(io(path))?;
        }
        Ok(())
    }
}

/// A container's cgroup in every hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Cgroup {
    /// Pure cgroup v2 (unified) host.
    pub v2: bool,
    /// One directory per hierarchy.
    pub dirs: Vec<Dir>,
}

impl Cgroup {
    fn dir_with(&self, controller: &str) -> Option<&Dir> {
        if self.v2 {
            return self.dirs.first();
        }
        self.dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
    }

    /// Creates the directories (recording which ones, for [`Cgroup::destroy`]). On v1 a new
    /// cpuset cgroup gets its parent's cpus and mems, or nothing could join it.
    pub fn create(&mut self) -> Result<()> {
        for d in &mut self.dirs {
            let mut missing = Vec::new();
            let mut p = d.path.as_path();
            while !p.exists() && p != d.root {
                missing.push(p.to_path_buf());
                match p.parent() {
                    Some(parent) => p = parent,
                    None => break,
                }
            }
            for m in missing.iter().rev() {
                match std::fs::create_dir(m) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(CgroupError::Io {
                            path: m.clone(),
                            source: e,
                        });
                    }
                }
                if d.created_from.is_none() {
                    d.created_from = Some(m.clone());
                }
                if d.controllers.iter().any(|c| c == "cpuset") {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let mine = m.join(f);
                        if std::fs::read_to_string(&mine)
                            .map(|s| s.trim().is_empty())
                            .unwrap_or(false)
                            && let Some(parent) = m.parent()
                            && let Ok(v) = std::fs::read_to_string(parent.join(f))
                        {
                            write(&mine, v.trim())?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies `linux.resources`: the file writes (`write_resources`) and, on v2, the
    /// device program.
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        self.write_resources(res)?;
        if self.v2 {
            return apply_device_program(&self.dirs[0].path, res);
        }
        Ok(())
    }

    /// The file writes of `linux.resources` (v1: device rules included).
    fn write_resources(&self, res: &LinuxResources) -> Result<()> {
        if self.v2 {
            let d = &self.dirs[0];
            let writes = v2_writes(res);
            enable_controllers(d, &writes);
            for (file, value) in writes {
                write(&d.path.join(&file), &value)?;
            }
            return Ok(());
        }
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::UnifiedOnV1);
        }
        let writes = v1_writes(res);
        // All or nothing: a setting the host cannot apply fails before any write.
        if let Some((c, _, _)) = writes.iter().find(|w| self.dir_with(w.0).is_none()) {
            return Err(CgroupError::NoController(c));
        }
        for (controller, file, value) in writes {
            let d = self
                .dir_with(controller)
                .ok_or(CgroupError::NoController(controller))?;
            let mut path = d.path.join(&file);
            // memsw exists only with swap accounting; runc skips it likewise.
            if file == "memory.memsw.limit_in_bytes" && !path.exists() {
                continue;
            }
            // With the BFQ scheduler (and no CFQ) only the `blkio.bfq.*` weights exist.
            if let Some(bfq) = bfq_fallback(&file)
                && !path.exists()
            {
                path = d.path.join(bfq);
            }
            write(&path, &value)?;
        }
        Ok(())
    }

    /// Opens what a child about to be cloned needs to put itself into this cgroup: see
    /// [`Join`]. Runs in the runtime, before the clone, so that a missing or unwritable
    /// directory fails there with its path.
    pub fn prepare_join(&self) -> Result<Join> {
        let mut join = Join {
            v2_dir: None,
            files: Vec::new(),
        };
        for d in &self.dirs {
            let v2 = self.v2 || d.name == "unified";
            // v1: the thread-level `tasks` file; v2 has no such file for domain cgroups, and
            // its `cgroup.procs` is only the fallback for kernels without CLONE_INTO_CGROUP.
            let file = d.path.join(if v2 { "cgroup.procs" } else { "tasks" });
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .map_err(io(&file))?;
            if v2 {
                let dir = std::fs::File::open(&d.path).map_err(io(&d.path))?;
                join.v2_dir = Some(OwnedFd::from(dir));
            }
            join.files.push((file, f, v2));
        }
        Ok(join)
    }

    /// The PIDs in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        if self.dirs.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        // Every hierarchy and every sub-cgroup the container made itself: a process may sit in
        // a different place in each.
        let mut out = Vec::new();
        for d in &self.dirs {
            for dir in subtree(&d.path)? {
                let p = dir.join("cgroup.procs");
                match std::fs::read_to_string(&p) {
                    Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(CgroupError::Io { path: p, source: e }),
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Freezes (or thaws) every process, waiting until the kernel reports it done.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let (file, value, want) = if self.v2 {
            ("cgroup.freeze", if frozen { "1" } else { "0" }, frozen)
        } else {
            (
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
                frozen,
            )
        };
        let d = self.dir_with("freezer").ok_or(CgroupError::NoHierarchy)?;
        write(&d.path.join(file), value)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.frozen()? != want {
            if Instant::now() > deadline {
                return Err(CgroupError::Timeout {
                    path: d.path.clone(),
                    what: "the freezer",
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// The same cgroup with existing sub-cgroups instead of its directories: `(None, path)` for
    /// every hierarchy, `(Some(controller), path)` for the one with that controller (or that
    /// name: `systemd`, `unified`), which wins. The paths are relative and stay below.
    pub fn sub(&self, subs: &[(Option<String>, String)]) -> Result<Cgroup> {
        let mut out = self.clone();
        for (controller, path) in subs {
            let rel = Path::new(path.trim_start_matches('/'));
            if rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(CgroupError::BadSubCgroup(path.clone()));
            }
            if !self.v2
                && let Some(c) = controller
                && !self
                    .dirs
                    .iter()
                    .any(|d| d.name == *c || d.controllers.contains(c))
            {
                return Err(CgroupError::BadSubCgroup(format!("{c}:{path}")));
            }
        }
        for (d, base) in out.dirs.iter_mut().zip(&self.dirs) {
            let pick = subs
                .iter()
                .find(|(c, _)| {
                    c.as_ref()
                        .is_some_and(|c| d.name == *c || d.controllers.contains(c))
                })
                .or_else(|| subs.iter().find(|(c, _)| c.is_none() || self.v2));
            if let Some((_, path)) = pick {
                d.path = base.path.join(path.trim_start_matches('/'));
                if !d.path.is_dir() {
                    return Err(CgroupError::Io {
                        path: d.path.clone(),
                        source: std::io::Error::from(std::io::ErrorKind::NotFound),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Fails with [`CgroupError::Frozen`] when the cgroup is frozen (checked before a process
    /// joins it: it would stop on the spot).
    pub fn ensure_thawed(&self) -> Result<()> {
        match self.dir_with("freezer") {
            Some(d) if self.frozen()? => Err(CgroupError::Frozen {
                path: d.path.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the cgroup is frozen.
    pub fn frozen(&self) -> Result<bool> {
        let Some(d) = self.dir_with("freezer") else {
            return Ok(false);
        };
        if self.v2 {
            let p = d.path.join("cgroup.events");
            let s = match std::fs::read_to_string(&p) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(CgroupError::Io { path: p, source: e }),
            };
            return Ok(s.lines().any(|l| l == "frozen 1"));
        }
        let p = d.path.join("freezer.state");
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(s.trim() == "FROZEN"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CgroupError::Io { path: p, source: e }),
        }
    }

    /// Sends `sig` to every process in the cgroup (cgroup.kill where the kernel has it).
    pub fn kill_all(&self, sig: i32) -> Result<()> {
        if self.v2 && sig == libc::SIGKILL {
            let p = self.dirs[0].path.join("cgroup.kill");
            if p.exists() {
                return write(&p, "1");
            }
        }
        // A process forking while we walk the list could escape a plain loop: with SIGKILL,
        // freeze first (when there is a freezer), signal everyone, then thaw so they die.
        let freeze =
            sig == libc::SIGKILL && self.dir_with("freezer").is_some() && !self.frozen()?;
        if freeze {
            let _ = self.freeze(true);
        }
        for pid in self.pids()? {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::try_from(sig).ok(),
            );
        }
        if freeze {
            let _ = self.freeze(false);
        }
        Ok(())
    }

    /// Removes the container's directories and the parents this runtime created, waiting (up to
    /// a few seconds) for exiting processes to leave.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        for d in &self.dirs {
            // Sub-cgroups the container made first, deepest first: a cgroup with children is
            // busy.
            let removed =
                subtree(&d.path).and_then(|dirs| dirs.iter().try_for_each(|p| rmdir_retry(p)));
            if let Err(e) = removed {
                first_err.get_or_insert(e);
                continue;
            }
            // The parents this runtime created on the way (`system.slice` in a hierarchy systemd
            // does not populate, say) may hold other containers by now: remove them when empty,
            // without waiting, and leave them quietly when not.
            let stop = d.created_from.as_deref().unwrap_or(&d.path);
            let mut p = d.path.as_path();
            while p != stop {
                match p.parent() {
                    Some(parent) if parent.starts_with(stop) => p = parent,
                    _ => break,
                }
                if std::fs::remove_dir(p).is_err() {
                    break;
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// What the container's `cgroup` mount shows: its own directory per hierarchy.
    pub fn container_mounts(&self) -> Vec<crate::rootfs::CgroupMount> {
        self.dirs
            .iter()
            .map(|d| crate::rootfs::CgroupMount {
                name: d.name.clone(),
                host_dir: d.path.clone(),
            })
            .collect()
    }
}

/// `dir` and every cgroup below it, children before their parent (the order they can be
/// removed in); empty when `dir` does not exist.
fn subtree(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(CgroupError::Io {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    for e in rd {
        let e = e.map_err(io(dir))?;
        if e.file_type().map_err(io(dir))?.is_dir() {
            out.extend(subtree(&e.path())?);
        }
    }
    out.push(dir.to_path_buf());
    Ok(out)
}

/// The BFQ scheduler's name of a v1 blkio weight file.
fn bfq_fallback(file: &str) -> Option<&'static str> {
    match file {
        "blkio.weight" => Some("blkio.bfq.weight"),
        "blkio.weight_device" => Some("blkio.bfq.weight_device"),
        _ => None,
    }
}

fn rmdir_retry(p: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    // A cgroup stays busy for a moment after its last task was reaped (the kernel offlines it
    // asynchronously; v1 has no event for it). Poll finely: `run` and `delete` wait on this, and
    // a coarse backoff overshoots by milliseconds.
    let mut delay = Duration::from_micros(100);
    loop {
        match std::fs::remove_dir(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(1));
            }
            Err(e) => {
                return Err(CgroupError::Io {
                    path: p.to_path_buf(),
                    source: e,
                });
            }
        }
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(io(path))
}

/// Enables in every ancestor's `cgroup.subtree_control` the controllers the writes need (v2's
/// controllers must be enabled top-down). Failures are left for the resource writes to report.
fn enable_controllers(d: &Dir, writes: &[(String, String)]) {
    let mut needed: Vec<&str> = Vec::new();
    for (file, _) in writes {
        if let Some((c, _)) = file.split_once('.')
            && c != "cgroup"
            && !needed.contains(&c)
        {
            needed.push(c);
        }
    }
    if needed.is_empty() {
        return;
    }
    let Ok(rel) = d.path.strip_prefix(&d.root) else {
        return;
    };
    let mut cur = d.root.clone();
    for comp in rel.components() {
        let available = std::fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = needed
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !enable.is_empty() {
            let sc = cur.join("cgroup.subtree_control");
            if write(&sc, &enable.join(" ")).is_err() {
                for e in &enable {
                    let _ = write(&sc, e);
                }
            }
        }
        cur.push(comp);
    }
}

/// cgroup v2: compiles the device rules into an eBPF program and attaches it to `dir`.
pub fn apply_device_program(dir: &Path, res: &LinuxResources) -> Result<()> {
    let rules: Vec<crate::devices_bpf::Rule> = device_rules(res)
        .iter()
        .filter_map(|(allow, r)| crate::devices_bpf::parse_rule(*allow, r))
        .collect();
    if rules.is_empty() {
        return Ok(());
    }
    let insns: Vec<[u8; 8]> = crate::devices_bpf::compile(&rules)
        .iter()
        .map(|i| i.encode())
        .collect();
    crate::sys::attach_device_program(dir, &insns).map_err(|e| CgroupError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!("attaching the device eBPF program: {e}")),
    })
}

#[cfg(test)]
mod tests;

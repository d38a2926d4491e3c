//! Containers as persisted under the state directory (`<root>/<id>/state.json` and
//! `exec.fifo`), their status as derived from the kernel, and one module per verb. Runs in the
//! runtime process.

pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod start;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use oci_spec::runtime::{ContainerState, Spec, State};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::{Error, Result, Runtime};

/// How long the runtime waits for a container process it cloned to report during set-up, and
/// for a killed one to die: none of its waits on a container process is unbounded.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a process killed with SIGKILL gets to die before the runtime stops waiting.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits at most `timeout` for `pidfd`'s process to exit (a zombie counts); whether it did.
pub fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
}

/// Kills child `pid` of this process and reaps it, waiting at most [`KILL_TIMEOUT`]: a process
/// in a frozen cgroup v1 does not die of SIGKILL until it is thawed, and the runtime must not
/// hang on it. Whether it was reaped.
pub fn kill_and_reap(pid: Pid, pidfd: Option<&OwnedFd>) -> bool {
    let own;
    let fd = match pidfd {
        Some(fd) => Some(fd),
        None => {
            own = crate::sys::pidfd_open(pid.as_raw()).ok();
            own.as_ref()
        }
    };
    match fd {
        Some(fd) => {
            let _ = crate::sys::pidfd_send_signal(fd, libc::SIGKILL);
            wait_exit(fd, KILL_TIMEOUT);
        }
        None => {
            // Already reaped, or a kernel without pidfds: signal by PID, poll briefly.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    !matches!(
        waitpid(pid, Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    )
}

/// Status of a container, as `state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// Running the user's program.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// No process left.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `state` prints (runc's shape: the OCI state plus rootfs, created and owner).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerInfo {
    /// OCI version of the spec.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host PID of the init (0 once stopped).
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Owner (empty: root).
    pub owner: String,
    /// Annotations of the spec.
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

impl ContainerInfo {
    /// The OCI state.
    pub fn oci_state(&self) -> State {
        let status = match self.status {
            Status::Creating => ContainerState::Creating,
            Status::Created => ContainerState::Created,
            Status::Running | Status::Paused => ContainerState::Running,
            Status::Stopped => ContainerState::Stopped,
        };
        let mut s = State::default();
        s.set_version(self.oci_version.clone());
        s.set_id(self.id.clone());
        s.set_status(status);
        s.set_pid((self.pid > 0).then_some(self.pid));
        s.set_bundle(self.bundle.clone());
        s.set_annotations((!self.annotations.is_empty()).then(|| self.annotations.clone()));
        s
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root filesystem.
    pub rootfs: PathBuf,
    /// Host PID of the init.
    pub pid: i32,
    /// Start time of the init in clock ticks since boot (/proc/PID/stat field 22): tells the
    /// init from a later process that got the same PID.
    pub pid_start: u64,
    /// Creation time.
    pub created: String,
    /// The container's cgroup.
    pub cgroup: Cgroup,
    /// Whether the container has its own PID namespace (killing the init kills all then).
    pub own_pid_ns: bool,
    /// The spec it was created from (exec and hooks need it later).
    pub spec: Spec,
}

/// A container loaded from the state directory.
#[derive(Debug)]
pub struct Container {
    /// `<root>/<id>`.
    pub dir: PathBuf,
    /// Its persisted state.
    pub p: Persisted,
}

/// `(state char, start time)` of a process, from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some((f.first()?.chars().next()?, f.get(19)?.parse().ok()?))
}

/// Loads container `id`.
pub fn load(rt: &Runtime, id: &str) -> Result<Container> {
    if !crate::spec::valid_id(id) {
        return Err(Error::NotExist(id.into()));
    }
    let dir = rt.root().join(id);
    let path = dir.join("state.json");
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotExist(id.into()));
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let p: Persisted =
        serde_json::from_slice(&data).map_err(|source| Error::StateFile { path, source })?;
    Ok(Container { dir, p })
}

impl Container {
    /// Whether the init still runs (not a zombie, not a recycled PID).
    pub fn init_alive(&self) -> bool {
        matches!(proc_stat(self.p.pid), Some((st, start)) if start == self.p.pid_start && st != 'Z' && st != 'X')
    }

    /// The status, derived from the init, the exec fifo and the freezer.
    pub fn status(&self) -> Status {
        if !self.init_alive() {
            Status::Stopped
        } else if self.dir.join("exec.fifo").exists() {
            Status::Created
        } else if self.p.cgroup.frozen().unwrap_or(false) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// What `state` prints.
    pub fn info(&self) -> Result<ContainerInfo> {
        let status = self.status();
        Ok(ContainerInfo {
            oci_version: self.p.spec.version().clone(),
            id: self.p.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.p.pid
            },
            status,
            bundle: self.p.bundle.clone(),
            rootfs: self.p.rootfs.clone(),
            created: self.p.created.clone(),
            owner: String::new(),
            annotations: self.p.spec.annotations().clone().unwrap_or_default(),
        })
    }

    /// The OCI state JSON handed to hooks.
    pub fn state_json(&self, status: Status) -> String {
        let mut info = self.info().unwrap_or_else(|_| unreachable!());
        info.status = status;
        serde_json::to_string(&info.oci_state()).unwrap_or_default()
    }

    /// PIDs in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.p.cgroup.pids()?)
    }

    /// A pidfd on the init, checked against the recorded start time (None if it is gone).
    pub fn init_pidfd(&self) -> Option<std::os::fd::OwnedFd> {
        let fd = crate::sys::pidfd_open(self.p.pid).ok()?;
        // Checked after opening: a pidfd pins the process, so a match now cannot be a later
        // process that reused the PID.
        self.init_alive().then_some(fd)
    }
}

/// Every container under the state directory.
pub fn list(rt: &Runtime) -> Result<Vec<ContainerInfo>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(rt.root()) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("reading {}", rt.root().display()), e)),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(c) = load(rt, &name)
            && let Ok(i) = c.info()
        {
            out.push(i);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Writes `data` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Runs container `id`'s `kind` hooks from the runtime process, with a debug line (the hooks
/// the init runs itself are not logged: its stderr is the container's).
pub(crate) fn run_hooks(
    id: &str,
    kind: &'static str,
    hooks: &[oci_spec::runtime::Hook],
    state_json: &str,
) -> Result<(), crate::hooks::HookError> {
    crate::debug!("container {id}: running {} {kind} hook(s)", hooks.len());
    crate::hooks::run(kind, hooks, state_json)
}

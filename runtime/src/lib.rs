//! berth's OCI runtime library: creates, starts, inspects and deletes containers per the OCI runtime
//! spec (Linux). Synchronous; linked by `berth-shim` and by the runc-compatible `berth-runtime`
//! binary, and runs in the calling process (plus the container processes it clones).
//!
//! The entry point is [`Runtime`], one per state directory (runc's `--root`):
//!
//! ```no_run
//! use berth_runtime::{CreateOptions, Runtime};
//! let rt = Runtime::new("/run/berth/runtime");
//! // SAFETY: this program starts no threads.
//! let created =
//!     unsafe { rt.create("web", "/run/berth/web/bundle".as_ref(), &CreateOptions::default()) }?;
//! // `created.pid` is a direct child of this process: reap it / open a pidfd on it.
//! rt.start("web")?;
//! # Ok::<(), berth_runtime::Error>(())
//! ```
//!
//! Process model: [`Runtime::create`] clones the container's init straight from the caller (no
//! re-exec, no intermediate process), so the init is the caller's child and, with a new PID
//! namespace, PID 1 inside it. The init finishes the container set-up itself, reports over a typed
//! socketpair channel, then blocks on the `exec.fifo` in the state directory until
//! [`Runtime::start`] writes to it, and finally `execve`s the user's program. See
//! [`process`] for the roles and [`process::init`] for why the runtime binary can never be
//! re-opened from inside the container (CVE-2019-5736).

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod devices_bpf;
pub mod error;
pub mod features;
pub mod hooks;
pub mod log;
pub mod mount_options;
pub mod namespaces;
pub mod paths;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod sys;
pub mod syscall;
pub mod timefmt;

use std::os::fd::RawFd;
use std::path::PathBuf;

pub use container::{ContainerInfo, Status};
pub use error::Error;
pub use oci_spec::runtime::State;

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A runtime bound to one state directory (runc's `--root`); cheap to construct, holds no
/// resources. Every container lives in `<root>/<id>/` (`state.json`, `exec.fifo`).
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

/// Options of [`Runtime::create`] (and of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// A unix socket path: the container's pty master is sent there with `SCM_RIGHTS` (only when
    /// `process.terminal` is true, which then requires it).
    pub console_socket: Option<PathBuf>,
    /// Where to write the host PID of the container's init (atomically).
    pub pid_file: Option<PathBuf>,
    /// Standard input, output and error of the container process. The fds are borrowed: they
    /// are duplicated into the init, the caller still owns and closes them. `None` = the init
    /// inherits the caller's 0, 1, 2.
    pub stdio: Option<[RawFd; 3]>,
    /// Overrides `linux.cgroupsPath` (absolute paths are relative to each hierarchy's root,
    /// relative ones to the caller's own cgroup). The shim passes `<its unit cgroup>/container`.
    pub cgroup_path: Option<String>,
    /// Pass the caller's fds `3 .. 3+preserve_fds` on to the container process.
    pub preserve_fds: u32,
    /// Keep `NOTIFY_SOCKET` in the container's environment (default: removed, so the container
    /// cannot speak for the systemd unit).
    pub keep_notify_socket: bool,
}

/// What [`Runtime::create`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// Host PID of the container's init, a direct child of the caller.
    pub pid: i32,
}

/// Options of [`Runtime::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Standard input, output and error of the new process (borrowed, see
    /// [`CreateOptions::stdio`]); `None` = inherit the caller's.
    pub stdio: Option<[RawFd; 3]>,
    /// Receives the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// Where to write the host PID of the new process.
    pub pid_file: Option<PathBuf>,
    /// Pass the caller's fds `3 .. 3+preserve_fds` on.
    pub preserve_fds: u32,
    /// Informational for the library (the caller decides whether to wait); the binary's
    /// `exec --detach` returns right away instead of waiting for the process.
    pub detach: bool,
    /// Keep `NOTIFY_SOCKET` in the process's environment.
    pub keep_notify_socket: bool,
    /// Run the process in a paused container too (it starts once the container is resumed;
    /// the set-up wait still ends after its timeout).
    pub ignore_paused: bool,
    /// Existing sub-cgroups of the container's cgroup to put the process in (runc's
    /// `exec --cgroup [CONTROLLER:]PATH`): `(None, path)` for every hierarchy, `(Some(c), path)`
    /// for the one holding controller `c` (it wins over a `None` entry).
    pub sub_cgroups: Vec<(Option<String>, String)>,
}

impl Runtime {
    /// A runtime whose state directory is `root` (created on first use, mode 0700).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime { root: root.into() }
    }

    /// The state directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Creates container `id` from the bundle: namespaces, cgroup, root filesystem, hooks up to
    /// `createContainer`; the init then waits for [`Runtime::start`]. The init is cloned from the
    /// calling process (a direct child, PID 1 of a new PID namespace). Starts no threads and leaves
    /// the caller's cwd, mount namespace and signal mask intact. On error nothing is left behind.
    ///
    /// # Safety
    ///
    /// The calling process must be single-threaded: the init is a fork-like clone of the calling
    /// thread alone, which goes on running Rust code (allocating, among others) until it execs,
    /// so a lock another thread held at that moment would never be released in it. The shim and
    /// the `berth-runtime` binary start no threads.
    #[allow(unsafe_code)]
    pub unsafe fn create(
        &self,
        id: &str,
        bundle: &std::path::Path,
        opts: &CreateOptions,
    ) -> Result<Created> {
        container::create::create(self, id, bundle, opts)
    }

    /// Starts a created container: runs the user's program, then the `poststart` hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        container::start::start(self, id)
    }

    /// The OCI state of container `id`.
    pub fn state(&self, id: &str) -> Result<State> {
        Ok(self.info(id)?.oci_state())
    }

    /// The OCI state plus what runc's `state` prints (rootfs, creation time, owner).
    pub fn info(&self, id: &str) -> Result<ContainerInfo> {
        container::load(self, id)?.info()
    }

    /// Sends `signal` to the container's init, or with `all` to every process of its cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        container::kill::kill(self, id, signal, all)
    }

    /// Deletes a stopped (or, with `force`, any) container: kills what runs, runs `poststop`
    /// hooks, removes its cgroup and state. Afterwards no process, mount, cgroup or file remains.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        container::delete::delete(self, id, force)
    }

    /// Every container under the state directory.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        container::list(self)
    }

    /// Runs `process` inside running container `id`: it joins all the container's namespaces
    /// and its cgroup and gets the container's capabilities, seccomp filter and user unless
    /// `process` overrides them. Returns its host PID; it is a direct child of the caller.
    ///
    /// # Safety
    ///
    /// As for [`Runtime::create`]: the calling process must be single-threaded (the process is a
    /// fork-like clone of the calling thread).
    #[allow(unsafe_code)]
    pub unsafe fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        opts: &ExecOptions,
    ) -> Result<i32> {
        container::exec::exec(self, id, process, opts)
    }

    /// Host PIDs of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        container::load(self, id)?.pids()
    }

    /// Freezes every process of the container (`pause`).
    pub fn pause(&self, id: &str) -> Result<()> {
        container::pause::pause(self, id)
    }

    /// Thaws a paused container (`resume`).
    pub fn resume(&self, id: &str) -> Result<()> {
        container::pause::resume(self, id)
    }
}

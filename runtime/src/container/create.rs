//! `create`: runs in the caller (the runtime binary or the shim). Checks the bundle, creates
//! the state directory, cgroup and exec fifo, clones the init (a direct child of the caller, in
//! its new namespaces, which puts itself into the cgroup), writes the id maps, runs prestart and
//! createRuntime hooks when it asks, and persists the state once it reports ready. Any failure
//! undoes all of it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::SystemTime;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::{Container, KILL_TIMEOUT, Persisted, SETUP_TIMEOUT, Status, write_atomic};
use crate::cgroups::Cgroup;
use crate::namespaces::NsPlan;
use crate::process::channel::{self, Message};
use crate::process::init::{InitArgs, run as init_run};
use crate::sys::{Forked, clone};
use crate::{CreateOptions, Created, Error, Result, Runtime};

/// The file in the state directory where the init writes an error it hits after `start` let
/// it go (an exec or startContainer hook failure); `start` reads it.
pub(crate) const LATE_ERROR_FILE: &str = "init.err";

/// Undo list of a create in progress.
struct Undo {
    dir: Option<std::path::PathBuf>,
    cgroup: Option<Cgroup>,
    child: Option<(Pid, Option<OwnedFd>)>,
}

impl Undo {
    /// Kills and reaps the init, if there is one (waiting a bounded time).
    fn kill_child(&mut self) {
        if let Some((pid, pidfd)) = self.child.take() {
            super::kill_and_reap(pid, pidfd.as_ref());
        }
    }

    fn run(&mut self) -> Option<Error> {
        let mut err = None;
        self.kill_child();
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.destroy()
        {
            err = Some(e.into());
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            err.get_or_insert(Error::io(format!("removing {}", dir.display()), e));
        }
        err
    }
}

/// See [`Runtime::create`], whose contract (a single-threaded caller) this relies on: crate-only,
/// so that it is the one way in.
pub(crate) fn create(
    rt: &Runtime,
    id: &str,
    bundle: &Path,
    opts: &CreateOptions,
) -> Result<Created> {
    if !crate::spec::valid_id(id) {
        return Err(Error::InvalidId(id.into()));
    }
    // Check the bundle before touching anything: bad input leaves nothing behind.
    let b = crate::spec::load(bundle)?;
    crate::debug!(
        "bundle {} loaded (rootfs {})",
        b.dir.display(),
        b.rootfs.display()
    );
    let process = b.spec.process().as_ref().expect("checked at load");
    crate::capabilities::warn_unraisable(process.capabilities().as_ref());
    let linux = b.spec.linux().as_ref().expect("checked at load");
    let ns = crate::namespaces::plan(linux.namespaces().as_deref().unwrap_or_default())?;
    if let Some(sysctls) = linux.sysctl().as_ref().filter(|s| !s.is_empty()) {
        let host_net = host_network(&ns);
        crate::namespaces::check_sysctls(sysctls.keys(), &ns, host_net)?;
    }
    if process.terminal() == Some(true) && opts.console_socket.is_none() {
        return Err(Error::InvalidProcess(
            "cannot allocate tty if runc will detach without setting console socket",
        ));
    }

    std::fs::create_dir_all(rt.root()).map_err(|e| {
        Error::io(
            format!("creating state directory {}", rt.root().display()),
            e,
        )
    })?;
    let dir = rt.root().join(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(id.into()));
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let mut undo = Undo {
        dir: Some(dir.clone()),
        cgroup: None,
        child: None,
    };
    match create_inner(id, &b, &ns, opts, &dir, &mut undo) {
        Ok(c) => Ok(c),
        Err(e) => {
            crate::debug!("container {id}: create failed, undoing it");
            let cleanup = undo.run();
            Err(e.with_cleanup(cleanup))
        }
    }
}

/// Whether the container's network namespace is the caller's (none of its own, or the
/// caller's joined by path).
fn host_network(ns: &NsPlan) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((_, path)) = ns.join.iter().find(|(f, _)| *f == CloneFlags::CLONE_NEWNET) else {
        return !ns.has(CloneFlags::CLONE_NEWNET);
    };
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    id(path).is_some() && id(path) == id(Path::new("/proc/self/ns/net"))
}

fn open_ns(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("opening namespace {}", path.display()), e))
}

fn create_inner(
    id: &str,
    b: &crate::spec::Bundle,
    ns: &NsPlan,
    opts: &CreateOptions,
    dir: &Path,
    undo: &mut Undo,
) -> Result<Created> {
    let spec = &b.spec;
    let linux = spec.linux().as_ref().expect("checked at load");
    let hooks = spec.hooks().as_ref();

    let cg_path = opts
        .cgroup_path
        .clone()
        .or_else(|| {
            linux
                .cgroups_path()
                .as_ref()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| id.to_string());
    let mut cg = Cgroup::resolve(&cg_path)?;
    crate::debug!("cgroup {cg_path} resolved");
    let created = cg.create();
    undo.cgroup = Some(cg.clone());
    created?;
    undo.cgroup = Some(cg.clone());
    crate::debug!("cgroup {cg_path} created");
    // The init joins the cgroup itself: in a frozen one it would stop there for good.
    cg.ensure_thawed()?;
    // Applied without `resources` too: the device rules start from "deny all" regardless.
    cg.apply(&linux.resources().clone().unwrap_or_default())?;
    crate::debug!("cgroup {cg_path}: resources applied");

    let fifo_path = dir.join("exec.fifo");
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::sys(format!("creating {}", fifo_path.display()), e))?;
    // Read-write, so that opening never blocks and the init's read waits for `start`'s byte.
    let fifo = nix::fcntl::open(&fifo_path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("opening {}", fifo_path.display()), e))?;

    // Where the init leaves its error when it fails after `create` returned (between `start`
    // and the exec of the program): `start` reports it.
    let late_path = dir.join(LATE_ERROR_FILE);
    let late_error = nix::fcntl::open(
        &late_path,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| Error::sys(format!("creating {}", late_path.display()), e))?;

    let console = match (
        &opts.console_socket,
        spec.process().as_ref().and_then(|p| p.terminal()),
    ) {
        (Some(path), Some(true)) => Some(crate::console::connect(path)?),
        _ => None,
    };
    let join_fds = ns
        .join
        .iter()
        .map(|(f, p)| Ok((*f, open_ns(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let user_fd = ns.join_user.as_deref().map(open_ns).transpose()?;
    let bind_sources = if ns.has(CloneFlags::CLONE_NEWUSER) {
        crate::rootfs::open_bind_sources(spec, &b.dir)
    } else {
        Vec::new()
    };
    // Joining a PID namespace by path: enter it for our children only, around the clone.
    let pid_restore = match &ns.join_pid {
        Some(p) => {
            let own = open_ns(Path::new("/proc/self/ns/pid"))?;
            let target = open_ns(p)?;
            nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWPID)
                .map_err(|e| Error::sys(format!("joining pid namespace {}", p.display()), e))?;
            Some(own)
        }
        None => None,
    };

    let join = cg.prepare_join()?;
    let (parent_end, child_end) = channel::pair()?;
    #[allow(unsafe_code)]
    // SAFETY: the runtime is single-threaded, which `Runtime::create`'s callers guarantee.
    let forked = unsafe { clone(ns.clone_flags, join.clone_into()) };
    if let Some(own) = &pid_restore {
        // Restore before anything can fail, in the parent (the child ignores it: it is in the
        // target namespace already and this only affects its future children).
        let _ = nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWPID);
    }
    let (pid, pidfd) = match forked.map_err(|e| Error::sys("clone of the container init", e))? {
        Forked::Child { in_cgroup } => {
            // The runtime's end must not stay open here: the init has to see EOF when the
            // runtime is gone, and the runtime when the init is.
            drop(parent_end);
            init_run(InitArgs {
                join: &join,
                in_cgroup,
                spec,
                bundle: &b.dir,
                rootfs: &b.rootfs,
                ns,
                join_fds,
                user_fd,
                chan: &child_end,
                fifo: &fifo,
                late_error: &late_error,
                console: console.as_ref(),
                stdio: opts.stdio,
                preserve_fds: opts.preserve_fds,
                cgroups: cg.container_mounts(),
                keep_notify_socket: opts.keep_notify_socket,
                bind_sources,
            })
        }
        Forked::Parent { pid, pidfd } => (pid, pidfd),
    };
    // Ours are copies the init now holds; closing them makes the init's exit visible as EOF.
    drop(child_end);
    drop(fifo);
    drop(late_error);
    drop(bind_sources);
    drop(console);
    undo.child = Some((pid, pidfd));
    crate::debug!("container {id}: init cloned, pid {pid}");

    if ns.new_user() {
        if let Err(e) = write_id_maps(pid, linux) {
            return Err(init_failure(undo, &parent_end, e));
        }
        send(&parent_end, &Message::Mapped)?;
        crate::debug!("container {id}: user namespace id maps written");
    }
    drop(join);

    let pid_start = super::proc_stat(pid.as_raw()).map(|s| s.1).unwrap_or(0);
    let container = Container {
        dir: dir.to_path_buf(),
        p: Persisted {
            id: id.to_string(),
            bundle: b.dir.clone(),
            rootfs: b.rootfs.clone(),
            pid: pid.as_raw(),
            pid_start,
            created: crate::timefmt::rfc3339(SystemTime::now(), true),
            cgroup: cg,
            own_pid_ns: ns.has(CloneFlags::CLONE_NEWPID),
            spec: spec.clone(),
        },
    };
    let state_json = container.state_json(Status::Creating);
    send(&parent_end, &Message::Go(state_json.clone()))?;
    loop {
        match parent_end.recv_within(SETUP_TIMEOUT)? {
            Message::RunHooks => {
                if let Some(h) = hooks {
                    for (kind, list) in [
                        ("prestart", h.prestart()),
                        ("createRuntime", h.create_runtime()),
                    ] {
                        if let Some(list) = list {
                            super::run_hooks(id, kind, list, &state_json)?;
                        }
                    }
                }
                send(&parent_end, &Message::HooksDone)?;
            }
            Message::Ready => {
                crate::debug!("container {id}: init ready, waiting for start");
                break;
            }
            Message::Error(e) => return Err(Error::Init(e)),
            got => {
                return Err(channel::ChannelError::Unexpected {
                    expected: "RunHooks, Ready or an error",
                    got,
                }
                .into());
            }
        }
    }
    let state_path = dir.join("state.json");
    let data = serde_json::to_vec(&container.p).map_err(|source| Error::StateFile {
        path: state_path.clone(),
        source,
    })?;
    write_atomic(&state_path, &data)?;
    crate::debug!("container {id}: state written to {}", state_path.display());
    if let Some(pf) = &opts.pid_file {
        write_atomic(pf, pid.to_string().as_bytes())?;
        crate::debug!("container {id}: pid file {} written", pf.display());
    }
    // Success: nothing to undo; the pidfd is not needed any more.
    undo.child = None;
    undo.cgroup = None;
    undo.dir = None;
    Ok(Created { pid: pid.as_raw() })
}

/// Sends to the init; if it is gone, its last words (an error it sent before exiting) are the
/// better message.
pub(crate) fn send(chan: &channel::Channel, m: &Message) -> Result<()> {
    match chan.send(m) {
        Ok(()) => Ok(()),
        Err(e) => match chan.recv_within(KILL_TIMEOUT) {
            Ok(Message::Error(msg)) => Err(Error::Init(msg)),
            _ => Err(Error::from(e)),
        },
    }
}

/// A step on the init failed (`e`): the init may have failed and exited meanwhile, and then
/// its own message says more. Kills and reaps it first, so the read cannot block.
fn init_failure(undo: &mut Undo, chan: &channel::Channel, e: Error) -> Error {
    undo.kill_child();
    match chan.recv_within(KILL_TIMEOUT) {
        Ok(Message::Error(msg)) => Error::Init(msg),
        _ => e,
    }
}

fn write_id_maps(pid: Pid, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.as_deref()
            .unwrap_or_default()
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, data) in [
        ("uid_map", fmt(linux.uid_mappings())),
        ("gid_map", fmt(linux.gid_mappings())),
    ] {
        if data.is_empty() {
            continue;
        }
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &data).map_err(|e| Error::io(format!("writing {path}"), e))?;
    }
    Ok(())
}

//! The container's init: runs in the process `create` clones from the caller, from the clone
//! until it execs the user's program. Sets up namespaces, root filesystem, console, user,
//! capabilities and seccomp; asks the runtime to run its hooks; reports `Ready`; blocks on the
//! exec fifo until `start`; execs.
//!
//! # CVE-2019-5736 (the runtime binary must not be re-openable from the container)
//!
//! The attack: a process in the container opens `/proc/<runtime pid>/exe` while a runtime
//! process is inside the container's namespaces, and writes to the runtime binary once it can.
//! berth closes it in three ways, none of which costs a copy of the binary:
//! 1. No runtime binary is ever exec'd inside the container: init and exec'd processes are
//!    fork-like clones of the caller that only ever exec the user's program. After that exec,
//!    `/proc/<pid>/exe` is the user's program.
//! 2. Before it enters any namespace, the clone makes itself non-dumpable
//!    (`PR_SET_DUMPABLE 0`). The kernel then refuses `/proc/<pid>/exe`, `/proc/<pid>/mem`,
//!    `/proc/<pid>/fd/*` and ptrace to anyone without CAP_SYS_PTRACE in the *host* user
//!    namespace (the clone's memory belongs to it), i.e. to every container process short of a
//!    fully privileged one. The exec resets dumpability for the user's program.
//! 3. Every fd the runtime holds is close-on-exec, and everything above the preserved fds is
//!    marked so right before exec, so no handle on a host file (state dir, binary, sockets)
//!    crosses into the program.
//!
//! The integration test `runtime_cve_2019_5736_runtime_exe_not_openable` checks 2 from a
//! startContainer hook: it runs inside the container with the container's user and
//! capabilities while the init (still the runtime's image) waits for it, and finds the init's
//! `/proc/1/exe` refused while a dumpable process of its own with the same capabilities is
//! reachable (without `PR_SET_DUMPABLE 0` the init's is reachable too: checked when writing it).

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;

use super::channel::{Channel, Message};
use super::{ProcessError, sys};
use crate::namespaces::NsPlan;
use crate::rootfs::{CgroupMount, RootfsContext};
use crate::syscall::{LinuxSyscall, Syscall};

/// Everything the init needs, prepared by the runtime before the clone (the clone inherits it).
pub struct InitArgs<'a> {
    /// The container's spec.
    pub spec: &'a Spec,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// The rootfs, absolute.
    pub rootfs: &'a Path,
    /// The namespace plan.
    pub ns: &'a NsPlan,
    /// Open namespace files to join, in order (from `ns.join`).
    pub join_fds: Vec<(CloneFlags, OwnedFd)>,
    /// The user namespace to join, if any.
    pub user_fd: Option<OwnedFd>,
    /// The child end of the channel.
    pub chan: &'a Channel,
    /// The exec fifo, open read-write.
    pub fifo: &'a OwnedFd,
    /// Where an error after `Ready` goes (the runtime is gone by then; `start` reads it).
    pub late_error: &'a OwnedFd,
    /// The console socket, when the process has a terminal.
    pub console: Option<&'a OwnedFd>,
    /// Caller-lent stdio.
    pub stdio: Option<[RawFd; 3]>,
    /// How many fds above stdio pass to the program.
    pub preserve_fds: u32,
    /// How the init puts itself into the container's cgroup.
    pub join: &'a crate::cgroups::Join,
    /// The clone already placed it in the v2 cgroup.
    pub in_cgroup: bool,
    /// The container's cgroup directories, for `cgroup` mounts.
    pub cgroups: Vec<CgroupMount>,
    /// Keep NOTIFY_SOCKET.
    pub keep_notify_socket: bool,
    /// Bind mount sources opened before the clone (with a user namespace), by mount index.
    pub bind_sources: Vec<Option<OwnedFd>>,
}

/// Runs the init; never returns. A set-up failure goes back over the channel and the process
/// exits 1; a failure after `Ready` (the runtime is gone) goes to the late-error file, where
/// `start` finds it, or, should that fail, to the container's stderr.
pub fn run(args: InitArgs<'_>) -> ! {
    let chan = args.chan;
    match setup(&args) {
        Ok(()) => unreachable!("setup returns only on error"),
        Err((ready, e)) => {
            if ready {
                let msg = e.to_string();
                if nix::unistd::write(args.late_error, msg.as_bytes()).is_err() {
                    eprintln!("berth-runtime: container init: {msg}");
                }
                crate::sys::exit_now(127);
            }
            let _ = chan.send(&Message::Error(e.to_string()));
            crate::sys::exit_now(1);
        }
    }
}

type Step<T> = Result<T, (bool, ProcessError)>;

fn early<T, E: Into<ProcessError>>(r: Result<T, E>) -> Step<T> {
    r.map_err(|e| (false, e.into()))
}

fn setup(a: &InitArgs<'_>) -> Step<()> {
    let sysc = LinuxSyscall;
    // First of all, before entering anything: see the CVE-2019-5736 notes above.
    early(nix::sys::prctl::set_dumpable(false).map_err(sys("PR_SET_DUMPABLE")))?;
    // Into the cgroup before anything is charged or forked (see `Join` on why the init moves
    // itself rather than being moved by the runtime).
    early(
        a.join
            .join_self(a.in_cgroup)
            .map_err(|e| ProcessError::Other(format!("joining the container's cgroup: {e}"))),
    )?;
    // Device nodes and mount points get exactly the modes the spec says.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    early(super::dup_stdio(a.stdio))?;
    if a.ns.new_user() {
        early(a.chan.wait_for_mapped())?;
    }

    for (flag, fd) in &a.join_fds {
        early(sysc.setns(fd.as_fd(), *flag).map_err(sys(format!(
            "joining {} namespace",
            crate::namespaces::proc_name(*flag)
        ))))?;
    }
    if let Some(fd) = &a.user_fd {
        early(
            sysc.setns(fd.as_fd(), CloneFlags::CLONE_NEWUSER)
                .map_err(sys("joining user namespace")),
        )?;
        if !a.ns.unshare_after_user.is_empty() {
            early(
                sysc.unshare(a.ns.unshare_after_user)
                    .map_err(sys("unshare")),
            )?;
        }
    }
    let in_user_ns = a.ns.has(CloneFlags::CLONE_NEWUSER);
    if in_user_ns {
        // Become the namespace's root (the id maps are written by now).
        let root_g = nix::unistd::Gid::from_raw(0);
        let root_u = nix::unistd::Uid::from_raw(0);
        early(
            nix::unistd::setresgid(root_g, root_g, root_g)
                .map_err(sys("setresgid 0 in user namespace")),
        )?;
        early(
            nix::unistd::setresuid(root_u, root_u, root_u)
                .map_err(sys("setresuid 0 in user namespace")),
        )?;
    }
    if a.ns.new_network() {
        // Owned by the container's user namespace by now, when it has one.
        early(crate::sys::loopback_up().map_err(sys("bringing up the loopback interface lo")))?;
    }
    if a.ns.new_cgroup {
        // The init sits in its cgroup already, so that cgroup becomes the namespace's root.
        early(
            sysc.unshare(CloneFlags::CLONE_NEWCGROUP)
                .map_err(sys("unshare cgroup namespace")),
        )?;
    }
    let spec = a.spec;
    early(enter_time_namespace(&sysc, a.ns, spec))?;
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !a.ns.has(CloneFlags::CLONE_NEWUTS) {
            return early(Err(ProcessError::Other(
                "unable to set hostname without a private UTS namespace".into(),
            )));
        }
        early(sysc.sethostname(h).map_err(sys(format!("sethostname {h}"))))?;
    }
    // Without a UTS namespace of its own the domain name would be the host's: runc 1.1 leaves
    // it alone then, and so does berth.
    if let Some(d) = spec
        .domainname()
        .as_deref()
        .filter(|d| !d.is_empty() && a.ns.has(CloneFlags::CLONE_NEWUTS))
    {
        early(
            sysc.setdomainname(d)
                .map_err(sys(format!("setdomainname {d}"))),
        )?;
    }
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        let persona = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
        };
        early(crate::sys::set_personality(persona).map_err(sys("personality")))?;
    }
    let process = spec.process().as_ref().expect("checked at load");
    early(super::apply_rlimits(process))?;
    early(super::apply_oom_score_adj(process))?;
    early(super::apply_scheduling(process))?;

    // Without a mount namespace of its own the container shares the caller's (see
    // `RootfsContext::check_shared`): no mount at all, chroot instead of pivot_root.
    let own_mounts = a.ns.has(CloneFlags::CLONE_NEWNS);
    if !own_mounts {
        early(RootfsContext::check_shared(spec))?;
    }
    let rootfs = RootfsContext {
        sys: &sysc,
        bundle: a.bundle,
        rootfs: a.rootfs,
        spec,
        in_user_ns,
        cgroups: &a.cgroups,
        bind_sources: &a.bind_sources,
    };
    early(if own_mounts {
        rootfs.prepare()
    } else {
        rootfs.prepare_shared()
    })?;
    // The runtime has recorded the container; hooks get its state from here on.
    let state_json = early(a.chan.wait_for_go())?;
    early(a.chan.request_hooks())?;
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_deref())
    {
        early(crate::hooks::run("createContainer", h, &state_json))?;
    }
    early(if own_mounts {
        rootfs.pivot()
    } else {
        rootfs.chroot()
    })?;
    // Like runc's init, the container's first process leads its own session and process
    // group (console set-up below does it for a terminal).
    if process.terminal() != Some(true) {
        early(nix::unistd::setsid().map(drop).map_err(sys("setsid")))?;
    }
    if process.terminal() == Some(true) {
        let sock = a.console.ok_or_else(|| {
            (
                false,
                ProcessError::Other("terminal requested without a console socket".into()),
            )
        })?;
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        // /dev/console is a bind mount: only in a mount namespace of the container's own.
        early(crate::console::setup(sock, size, own_mounts))?;
    }
    for (k, v) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        let path = Path::new("/proc/sys").join(k.replace('.', "/"));
        early(
            sysc.write_file(&path, v)
                .map_err(|e| ProcessError::Other(format!("sysctl {k}={v}: {e}"))),
        )?;
    }
    if own_mounts {
        early(rootfs.finish())?;
    }
    early(
        nix::unistd::chdir(process.cwd()).map_err(sys(format!("chdir to cwd {:?}", process.cwd()))),
    )?;

    let env = super::environment(process, a.keep_notify_socket);
    let args = process.args().clone().unwrap_or_default();
    let nnp = process.no_new_privileges() == Some(true);
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(early(crate::seccomp::build(s))?),
        None => None,
    };
    // Before any filter is loaded: it may deny close_range, fcntl or rt_sigaction.
    early(super::prepare_exec(a.preserve_fds))?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the user
    // switch drops capabilities. With it, after the switch: see below.
    if !nnp && let Some(f) = &filter {
        early(crate::seccomp::load(f))?;
    }
    let setgroups_denied = in_user_ns
        && std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    early(super::switch_user(process, setgroups_denied))?;
    if nnp {
        early(nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS")))?;
    }
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    let path = early(super::find_executable(&args[0], &env))?;
    let image = early(super::exec_image(&path, &args, &env))?;
    // As in runc 1.1, the filter is in force before the runtime hears `Ready`, and so for the
    // wait on the fifo and the startContainer hooks: from here on the init only reads the fifo,
    // runs those hooks and execs (no close_range, fcntl or signal calls a profile may deny).
    if nnp && let Some(f) = &filter {
        early(crate::seccomp::load(f))?;
    }

    early(a.chan.send(&Message::Ready))?;
    // From here on the runtime may be gone: errors go to the late-error file for `start`.
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(a.fifo, &mut b) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                return Err((
                    true,
                    ProcessError::Sys {
                        what: "reading exec fifo".into(),
                        source: e,
                    },
                ));
            }
            Ok(_) => break,
        }
    }
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_deref())
    {
        crate::hooks::run("startContainer", h, &state_json).map_err(|e| (true, e.into()))?;
    }
    Err((true, super::exec(&image, &path)))
}

/// A new time namespace: unshared here (after the user namespace, which then owns it), its clock
/// offsets written while nothing is in it yet; the exec of the user's program enters it.
fn enter_time_namespace(
    sysc: &LinuxSyscall,
    ns: &crate::namespaces::NsPlan,
    spec: &oci_spec::runtime::Spec,
) -> Result<(), ProcessError> {
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    if !ns.new_time {
        if offsets.is_some_and(|o| !o.is_empty()) {
            return Err(ProcessError::Other(
                "linux.timeOffsets set, but no new time namespace in linux.namespaces".into(),
            ));
        }
        return Ok(());
    }
    sysc.unshare(crate::namespaces::CLONE_NEWTIME)
        .map_err(sys("unshare time namespace"))?;
    let Some(offsets) = offsets else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, o) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(ProcessError::Other(format!(
                "linux.timeOffsets: unknown clock {clock:?} (monotonic or boottime)"
            )));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text)
        .map_err(|e| ProcessError::Other(format!("writing /proc/self/timens_offsets: {e}")))
}

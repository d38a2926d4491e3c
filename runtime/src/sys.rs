//! The runtime's thin wrappers over system calls that nix does not cover safely: clone3 (with a
//! pidfd), pidfds, close_range, setdomainname, signal disposition reset, the tty ioctls, an
//! allocation-free execve, seccomp(2), mount_setattr(2), open_tree(2), move_mount(2) and the loopback's interface flags. Runs
//! in every process role. This is one of the few modules allowed `unsafe`; each block says why
//! it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// The outcome of [`clone`], seen from each side.
pub enum Forked {
    /// In the new process. `in_cgroup` says whether the kernel already placed it in the cgroup
    /// directory passed to [`clone`] (false when no directory was passed or the kernel predates
    /// `CLONE_INTO_CGROUP`).
    Child {
        /// Placed into the cgroup v2 directory by the clone itself.
        in_cgroup: bool,
    },
    /// In the caller: the child's PID (in the caller's PID namespace) and a pidfd on it.
    Parent {
        /// The child's host PID.
        pid: Pid,
        /// A pidfd referring to the child (None on kernels without clone3).
        pidfd: Option<OwnedFd>,
    },
}

/// `struct clone_args` of clone3(2), laid out as the kernel's uapi header declares it.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), which the libc crate does not export for every target.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks the calling process like fork(2), but with namespace `flags` applied to the child at
/// once (so with `CLONE_NEWPID` the child is PID 1 of the new namespace while staying the
/// caller's direct child) and a pidfd returned to the parent. With `cgroup`, a cgroup v2
/// directory, the child starts life in that cgroup (`CLONE_INTO_CGROUP`): the kernel does that
/// under the read side of its fork lock, where moving a process afterwards takes the write side
/// and waits out an RCU grace period (measured 5 to 30 ms here).
///
/// # Safety
///
/// The calling process must be single-threaded (the runtime never starts threads): the child is
/// a copy of the calling thread only and glibc's fork handlers do not run, so a lock another
/// thread held at the clone (the allocator's, stdio's) stays locked forever in the child, which
/// goes on running Rust code that takes them.
pub unsafe fn clone(flags: CloneFlags, cgroup: Option<BorrowedFd<'_>>) -> nix::Result<Forked> {
    if let Some(dir) = cgroup {
        match clone3(flags.bits() as u64 | CLONE_INTO_CGROUP, dir.as_raw_fd()) {
            // Before 5.7 the flag is unknown (EINVAL) or the larger clone_args is (E2BIG): the
            // caller then moves the child in itself.
            Err(Errno::EINVAL | Errno::E2BIG) => {}
            Ok(Forked::Child { .. }) => return Ok(Forked::Child { in_cgroup: true }),
            other => return other,
        }
    }
    match clone3(flags.bits() as u64, -1) {
        Err(Errno::ENOSYS) => clone_legacy(flags),
        other => other,
    }
}

fn clone3(flags: u64, cgroup: RawFd) -> nix::Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: if cgroup >= 0 { cgroup as u64 } else { 0 },
        ..Default::default()
    };
    // SAFETY: clone3 with no CLONE_VM and no stack behaves like fork(2): the child gets a
    // copy-on-write copy of the address space and resumes here with a return value of 0. `args`
    // is a valid clone_args of the size passed; `pidfd` outlives the call; `cgroup`, when used,
    // is an fd the caller keeps open across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if ret == 0 {
        return Ok(Forked::Child { in_cgroup: false });
    }
    // SAFETY: the kernel stored a fresh pidfd that nothing else owns.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    Ok(Forked::Parent {
        pid: Pid::from_raw(ret as i32),
        pidfd,
    })
}

/// Kernels before 5.3: the classic clone(2) with a NULL stack, again fork-like.
fn clone_legacy(flags: CloneFlags) -> nix::Result<Forked> {
    // SAFETY: as in clone3 above; the SIGCHLD exit signal lives in the low byte of the flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match ret {
        r if r < 0 => Err(Errno::last()),
        0 => Ok(Forked::Child { in_cgroup: false }),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as i32),
            pidfd: None,
        }),
    }
}

/// pidfd_open(2): a pidfd on `pid`, so later signals cannot hit a recycled PID.
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> nix::Result<()> {
    // SAFETY: plain syscall; a NULL siginfo means "as kill(2) would".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Marks every fd from `first` up close-on-exec (close_range with CLOSE_RANGE_CLOEXEC), so only
/// stdio and the preserved fds reach the container's program. Where close_range is missing
/// (before Linux 5.11) or refused, walks /proc/self/fd instead.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    // SAFETY: plain syscall with integer arguments; it does not close anything Rust owns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret >= 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first as RawFd)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only touch fd flags; the directory's own fd, closed by now,
        // yields EBADF, ignored.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            if fl >= 0 {
                libc::fcntl(fd, libc::F_SETFD, fl | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// A program ready to execve: path, arguments and environment as C strings with their pointer
/// arrays built up front, so that [`ExecImage::exec`] allocates nothing and makes no system
/// call but execve (it runs under the container's seccomp filter).
pub struct ExecImage {
    _strings: Vec<CString>,
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ExecImage {
    /// Builds the image; strings with an interior NUL are refused (EINVAL).
    pub fn new(path: &std::path::Path, args: &[String], env: &[String]) -> nix::Result<Self> {
        let c = |s: &[u8]| CString::new(s).map_err(|_| Errno::EINVAL);
        let path = c(path.as_os_str().as_encoded_bytes())?;
        let args: Vec<CString> = args
            .iter()
            .map(|a| c(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = env
            .iter()
            .map(|e| c(e.as_bytes()))
            .collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let argv = ptrs(&args);
        let envp = ptrs(&env);
        let mut strings = args;
        strings.extend(env);
        Ok(ExecImage {
            _strings: strings,
            path,
            argv,
            envp,
        })
    }

    /// execve(2); returns only on failure.
    pub fn exec(&self) -> Errno {
        // SAFETY: `path` is a C string; `argv` and `envp` are NULL-terminated arrays of pointers
        // into C strings this struct owns (a CString's buffer does not move with the struct),
        // all alive for the call.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Errno::last()
    }
}

/// setdomainname(2).
pub fn setdomainname(name: &str) -> nix::Result<()> {
    let c = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `c` is a valid buffer of the given length for the duration of the call.
    let ret = unsafe { libc::setdomainname(c.as_ptr(), name.len()) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Brings the loopback interface of the caller's network namespace up (SIOCGIFFLAGS, then
/// SIOCSIFFLAGS with IFF_UP), as runc and crun do for a namespace they create.
pub fn loopback_up() -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq that outlives the call; the kernel fills `ifru_flags`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(Errno::last());
    }
    // SAFETY: SIOCGIFFLAGS set the flags member of the union, which is what is read here.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; the kernel only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Resets every signal's disposition to the default and unblocks all signals: the program a
/// container runs must not inherit the runtime's (or the shim's) ignored or blocked signals.
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; failures (invalid numbers) are
        // harmless and ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// Makes `fd` (a tty) the controlling terminal of the calling session leader.
pub fn set_controlling_tty(fd: RawFd) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument; fd validity is checked by the kernel.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Sets the window size of tty `fd`.
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` from the pointer, which is valid for the call.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Gives the pages glibc's allocator holds free back to the kernel: a long-lived caller (the
/// shim, after creating a container) would otherwise keep its start-up peak resident.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks glibc's own allocator state; no pointers are passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Exits the calling process at once, without running Rust or libc exit handlers (what a
/// forked child that failed before exec must do: the parent's buffers are not its to flush).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// dup2(2) of raw fds: makes `target` (0, 1 or 2 here) a copy of `fd`. Used for the stdio the
/// caller lends as raw fds and for which no `OwnedFd` exists in this process.
///
/// # Safety
///
/// No live Rust object may own `target` (an `OwnedFd`, a `File`): it would go on using, and
/// finally close, the file this call puts there. Stdio in a freshly cloned child qualifies.
pub unsafe fn dup_onto(fd: RawFd, target: RawFd) -> nix::Result<()> {
    // SAFETY: dup2 only manipulates the fd table; an invalid `fd` yields EBADF. Replacing
    // `target` is the point, and the caller guarantees nothing owns it.
    let ret = unsafe { libc::dup2(fd, target) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Clears close-on-exec on the preserved fds `3 .. 3+n` (the caller lent them to the container).
///
/// # Safety
///
/// Every fd in `3 .. 3+n` must be one the caller lent for the container: the next exec hands
/// them to the container's program, and a runtime fd among them (a state directory, the host's
/// root) would give the container a way out. Call it right before exec, after everything of
/// the runtime's own is close-on-exec.
pub unsafe fn keep_fds(n: u32) {
    for fd in 3..3 + n as RawFd {
        // SAFETY: F_GETFD/F_SETFD only touch fd flags; an invalid fd yields EBADF, ignored.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            if fl >= 0 {
                libc::fcntl(fd, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            }
        }
    }
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program and attaches it to the cgroup (v2) directory
/// `cgroup` with BPF_F_ALLOW_MULTI (so it adds to, never replaces, what a parent such as
/// systemd attached). The cgroup keeps the program alive; our fds are closed on return. With
/// `BERTH_BPF_LOG` set in the environment a refused program prints the verifier log on stderr.
pub fn attach_device_program(cgroup: &std::path::Path, insns: &[[u8; 8]]) -> nix::Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let license = c"Apache-2.0";
    let code: Vec<u8> = insns.iter().flatten().copied().collect();
    // union bpf_attr, BPF_PROG_LOAD part: prog_type, insn_cnt, insns, license, then zeros.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: `attr` is a zero-filled bpf_attr of the size passed; the pointers in it (`code`,
    // `license`) stay valid for the call.
    let prog = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    if prog < 0 {
        let err = Errno::last();
        if std::env::var_os("BERTH_BPF_LOG").is_some() {
            let mut log = vec![0u8; 65536];
            attr[24..28].copy_from_slice(&1u32.to_ne_bytes());
            attr[28..32].copy_from_slice(&(log.len() as u32).to_ne_bytes());
            attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_ne_bytes());
            // SAFETY: as above, plus a log buffer of the size given, valid for the call.
            unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
            eprintln!(
                "bpf verifier: {}",
                String::from_utf8_lossy(&log).trim_end_matches('\0')
            );
        }
        return Err(err);
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(prog as RawFd) };
    let dir = nix::fcntl::open(
        cgroup,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // BPF_PROG_ATTACH part: target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    // SAFETY: as above, a zero-filled bpf_attr with valid fds.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, attr.as_ptr(), attr.len()) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Receives one fd sent with SCM_RIGHTS on the unix socket `sock` (a console socket's pty
/// master).
pub fn recv_fd(sock: RawFd) -> nix::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(fd) = fds.first()
        {
            // SAFETY: SCM_RIGHTS installed this fd in our table just now; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
        }
    }
    Err(Errno::EBADMSG)
}

/// The window size (rows, cols) of tty `fd`, if it is one.
pub fn get_winsize(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `winsize` to the pointer, which is valid for the call.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
    (ret == 0).then_some((ws.ws_row, ws.ws_col))
}

/// personality(2): the execution domain (`PER_LINUX` 0, `PER_LINUX32` 8).
pub fn set_personality(persona: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: personality only changes this process's execution domain flags.
    let ret = unsafe { libc::personality(persona) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// ioprio_set(2) for the calling process: `class` (1 realtime, 2 best-effort, 3 idle) and
/// `level` (0..7).
pub fn set_io_priority(class: u32, level: u32) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let value = (class << 13) | (level & 0x1fff);
    // SAFETY: plain syscall with integer arguments (who = this process).
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// `struct sched_attr` of sched_setattr(2) (size 56, the SCHED_ATTR_SIZE_VER1 layout).
#[repr(C)]
#[derive(Default)]
pub struct SchedAttr {
    /// Size of this struct.
    pub size: u32,
    /// SCHED_OTHER 0, FIFO 1, RR 2, BATCH 3, ISO 4, IDLE 5, DEADLINE 6.
    pub policy: u32,
    /// SCHED_FLAG_* bits.
    pub flags: u64,
    /// Nice value (OTHER, BATCH).
    pub nice: i32,
    /// Static priority (FIFO, RR).
    pub priority: u32,
    /// DEADLINE runtime, ns.
    pub runtime: u64,
    /// DEADLINE deadline, ns.
    pub deadline: u64,
    /// DEADLINE period, ns.
    pub period: u64,
    /// Utilization clamp minimum.
    pub util_min: u32,
    /// Utilization clamp maximum.
    pub util_max: u32,
}

/// sched_setattr(2) for the calling thread.
pub fn sched_setattr(attr: &mut SchedAttr) -> nix::Result<()> {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a valid sched_attr of the size it declares, alive for the call.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *mut SchedAttr, 0) };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// seccomp(SECCOMP_SET_MODE_FILTER) with `prog`: no_new_privs must be set or the caller hold
/// CAP_SYS_ADMIN (the kernel checks).
pub fn seccomp_set_filter(flags: u32, prog: &[libc::sock_filter]) -> nix::Result<()> {
    let len = u16::try_from(prog.len()).map_err(|_| Errno::E2BIG)?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points to `len` valid instructions that outlive the call; the kernel
    // copies the program and does not write through the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// mount_setattr(2) with AT_RECURSIVE on `path` (Linux 5.12): sets `set` and clears `clr`
/// (`MOUNT_ATTR_*` bits) on the mount and every mount below it.
pub fn mount_setattr_recursive(path: &std::path::Path, set: u64, clr: u64) -> nix::Result<()> {
    /// `struct mount_attr` (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `c` is a C string and `attr` a mount_attr of the size passed, both alive for the
    // call; the kernel only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// open_tree(2) with OPEN_TREE_CLONE (Linux 5.2): a detached copy of the mount at `path` (with
/// the mounts below it when `recursive`), which a process in another mount namespace can
/// attach with [`move_mount_to`] without reaching `path` itself.
pub fn open_tree_clone(path: &std::path::Path, recursive: bool) -> nix::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `c` is a C string alive for the call; the kernel returns a new fd or an error.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// move_mount(2) of the detached tree `tree` (from [`open_tree_clone`]) onto `target`.
pub fn move_mount_to(tree: BorrowedFd<'_>, target: &std::path::Path) -> nix::Result<()> {
    let c = CString::new(target.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the paths are C strings alive for the call; `tree` is an open fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

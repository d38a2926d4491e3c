//! The shim's few raw system calls that neither nix nor the runtime's `sys` wraps (pidfds, the
//! window size and the heap trim are the runtime's): the signalfd, the start-up memory release
//! and the new mount API (fsopen/fsconfig/fsmount/move_mount).
//! Runs in berth-shim. Every unsafe block of the shim lives here.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Blocks every signal that can be blocked (real-time ones included: a unit's `KillSignal=` may
/// be one) and returns a non-blocking signalfd that receives them. Synchronous fault signals stay
/// unblocked so a bug still crashes the shim visibly.
pub fn block_signals_to_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data; an all-zero value is a valid (to be filled) set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t for each call below.
    unsafe {
        libc::sigfillset(&mut set);
        for s in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut set, s);
        }
    }
    // SAFETY: `set` is initialised; a NULL old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: -1 asks for a new signalfd; `set` is initialised and only read.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a signalfd: `Some((signo, sender pid))`, `None` when none is pending.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<Option<(i32, i32)>> {
    // SAFETY: signalfd_siginfo is plain data; all-zero is valid.
    let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: we read at most `size` bytes into `si`, which is exactly that large and ours.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut si as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    if n as usize != size {
        return Ok(None);
    }
    Ok(Some((si.ssi_signo as i32, si.ssi_pid as i32)))
}

/// A close-on-exec duplicate of `fd`, owned by the caller. Safe on any number: a closed one
/// gives EBADF, and nothing is borrowed past the call.
pub fn dup_cloexec(fd: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer argument and touches no memory of ours.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a new fd the kernel just made for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Makes `cmd`'s child start with no blocked signals (the shim blocks them all for its
/// signalfd, and a blocked mask survives execve: a runtime binary would never see its SIGCHLD).
pub fn unblock_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls sigemptyset and
    // pthread_sigmask, both async-signal-safe, on a local set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Gives back the memory only start-up needed, once the container runs: the stack below the
/// current frame (creating a container goes deep; the loop does not) and the page-table entries
/// of read-only file mappings without private pages (code and constants of the runtime library:
/// the pages stay in the page cache, shared, and fault back in when an exec needs them).
/// Writable mappings and relocated ones (with anonymous pages) are never touched.
pub fn release_startup_memory() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let page = 4096usize;
    let marker = 0u8;
    let sp = std::hint::black_box(&marker) as *const u8 as usize;
    let mut regions: Vec<(usize, usize)> = Vec::new();
    // (start, end, read-only file mapping?, is the stack)
    let mut cur: Option<(usize, usize, bool, bool)> = None;
    let mut anon = 0u64;
    let flush =
        |cur: Option<(usize, usize, bool, bool)>, anon: u64, out: &mut Vec<(usize, usize)>| {
            let Some((start, end, ro_file, stack)) = cur else {
                return;
            };
            if stack && (start..end).contains(&sp) {
                // Keep a margin below the current frame for the calls still to come.
                let to = sp.saturating_sub(64 * 1024) & !(page - 1);
                if to > start {
                    out.push((start, to));
                }
            } else if ro_file && anon == 0 {
                out.push((start, end));
            }
        };
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            flush(cur.take(), anon, &mut regions);
            anon = 0;
            let mut f = line.split_whitespace();
            let perms = f.nth(1).unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let ro_file = perms.starts_with('r')
                && perms.as_bytes().get(1) == Some(&b'-')
                && path.starts_with('/');
            cur = Some((start, end, ro_file, path == "[stack]"));
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            anon = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(1);
        }
    }
    flush(cur.take(), anon, &mut regions);
    for (from, to) in regions {
        // SAFETY: [from, to) lies inside one mapping of this process: either stack pages below
        // the live frames (unused; no signal handler runs on this stack) or read-only file pages
        // without private copies, which MADV_DONTNEED drops and the kernel refills from the file
        // on the next access. No memory whose contents matter is discarded.
        unsafe {
            libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
        }
    }
}

/// `fsopen(fs_type, FSOPEN_CLOEXEC)`: a filesystem context to configure.
pub fn fsopen(fs_type: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: fs_type is a valid NUL-terminated string for the call; on success the kernel
    // returns a new fd that we own.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, fs_type.as_ptr(), libc::FSOPEN_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a freshly opened file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// `fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0)`.
pub fn fsconfig_set_string(fd: BorrowedFd<'_>, key: &CStr, value: &CStr) -> io::Result<()> {
    // SAFETY: fd is a valid fs context for the call; key and value are NUL-terminated strings
    // the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            libc::FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`: creates the superblock.
pub fn fsconfig_create(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fd is a valid fs context for the call; NULL key and value are what the command
    // expects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fsmount(fd, FSMOUNT_CLOEXEC, attrs)`: a detached mount of the created superblock.
pub fn fsmount(fd: BorrowedFd<'_>, attrs: u64) -> io::Result<OwnedFd> {
    // SAFETY: fd is a valid fs context with a created superblock; integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a freshly opened mount fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

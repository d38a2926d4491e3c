//! Locks around container networks. [`NetworkLock`] says a container's network is in someone's
//! hands: berth-shim holds it from before it takes an address lease until its teardown is done,
//! berthd's sweep takes it before it removes what a dead shim left; the kernel drops it when its
//! holder dies, so a lock that can be taken means no live shim of that container.
//! [`NetavarkLock`] makes netavark runs one at a time (netavark 1.4 does not lock itself: two
//! setups at once fail on the firewall chains they both create). Runs in berth-shim and berthd.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `<state>/locks/<name>`.
pub fn lock_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("locks").join(name)
}

/// A held lock; released when dropped (or when its process dies).
#[derive(Debug)]
pub struct NetworkLock {
    lock: Flock<File>,
    path: PathBuf,
}

impl NetworkLock {
    /// Waits for the lock.
    pub fn acquire(state_dir: &Path, name: &str) -> io::Result<NetworkLock> {
        Self::take(state_dir, name, FlockArg::LockExclusive)
            .map(|l| l.expect("a blocking lock is taken"))
    }

    /// The lock, or `None` when another process holds it.
    pub fn try_acquire(state_dir: &Path, name: &str) -> io::Result<Option<NetworkLock>> {
        Self::take(state_dir, name, FlockArg::LockExclusiveNonblock)
    }

    fn take(state_dir: &Path, name: &str, arg: FlockArg) -> io::Result<Option<NetworkLock>> {
        let path = lock_path(state_dir, name);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        loop {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            let lock = match Flock::lock(f, arg) {
                Ok(l) => l,
                Err((_, nix::Error::EWOULDBLOCK)) => return Ok(None),
                Err((_, e)) => return Err(io::Error::from(e)),
            };
            // The holder before us may have removed the file on release: a lock on that inode
            // would not exclude whoever opens the path next.
            let ours = lock.metadata()?.ino();
            match std::fs::metadata(&path) {
                Ok(m) if m.ino() == ours => return Ok(Some(NetworkLock { lock, path })),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the lock file, then releases the lock (nothing of the container is left).
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock);
    }
}

/// podman's lock around netavark (containers/common's, a POSIX record lock on this file):
/// taking the same one keeps berth's and podman's netavark runs from overlapping too.
pub const NETAVARK_LOCK: &str = "/run/lock/netavark.lock";

/// Held for the length of one netavark run. A POSIX record lock, as podman's: it belongs to the
/// process, so one process must take it once at a time (the shim is single-threaded; berthd's
/// sweep runs netavark from one task).
#[derive(Debug)]
pub struct NetavarkLock {
    _file: File,
}

impl NetavarkLock {
    /// Waits for the lock on `path`.
    pub fn acquire(path: &Path) -> io::Result<NetavarkLock> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let whole = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        loop {
            match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETLKW(&whole)) {
                Ok(_) => return Ok(NetavarkLock { _file: file }),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_until_dropped_and_survives_removal() {
        let d = tempfile::tempdir().unwrap();
        let a = NetworkLock::acquire(d.path(), "web").unwrap();
        assert!(NetworkLock::try_acquire(d.path(), "web").unwrap().is_none());
        assert!(NetworkLock::try_acquire(d.path(), "db").unwrap().is_some());
        a.remove();
        assert!(!lock_path(d.path(), "web").exists());
        let b = NetworkLock::try_acquire(d.path(), "web").unwrap().unwrap();
        assert!(NetworkLock::try_acquire(d.path(), "web").unwrap().is_none());
        drop(b);
        assert!(NetworkLock::try_acquire(d.path(), "web").unwrap().is_some());
    }

    #[test]
    fn netavark_lock_excludes_another_process() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("lock/netavark.lock");
        let held = NetavarkLock::acquire(&path).unwrap();
        // flock(1) uses flock(2), which does not see POSIX locks: ask with a POSIX test from a
        // child process instead (the lock is per process).
        let probe = |expect_held: bool| {
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import fcntl,sys; f=open(sys.argv[1],'w')\n\
                     try:\n fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB); print('free')\n\
                     except OSError: print('held')",
                ])
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                if expect_held { "held" } else { "free" },
                "{out:?}"
            );
        };
        probe(true);
        drop(held);
        probe(false);
    }
}

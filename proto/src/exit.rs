//! How a container's end becomes the shim's exit status (what systemd records as the unit's
//! `ExecMainStatus`), and the record of it, `exit.json`, that the shim leaves in the bundle and
//! berthd reads for `berth status` and `berth inspect`. Runs in berth-shim and berthd.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Exit status of the shim when the container could not be created or started (as `docker run`).
pub const EXIT_SHIM_FAILED: i32 = 125;

/// How the container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerExit {
    Exited(i32),
    Signaled(i32),
}

impl ContainerExit {
    /// The shell convention: an exit code as is, a signal as 128+n.
    pub fn status(self) -> i32 {
        match self {
            ContainerExit::Exited(c) => c & 0xff,
            ContainerExit::Signaled(s) => 128 + s,
        }
    }

    pub fn from_wait(st: nix::sys::wait::WaitStatus) -> Option<Self> {
        use nix::sys::wait::WaitStatus;
        match st {
            WaitStatus::Exited(_, c) => Some(ContainerExit::Exited(c)),
            WaitStatus::Signaled(_, s, _) => Some(ContainerExit::Signaled(s as i32)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRecord {
    pub exit: ContainerExit,
    /// The status the shim exits with.
    pub status: i32,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// The container was killed because its health check failed `retries` times in a row.
    pub unhealthy: bool,
    /// Unix time in milliseconds.
    pub finished_at_ms: u64,
}

impl ExitRecord {
    /// Reads `<bundle>/exit.json`: `None` when the container has not ended since its bundle was
    /// written (or the record cannot be read: it is informational).
    pub fn load(bundle: &Path) -> Option<Self> {
        let text = std::fs::read(bundle.join(crate::EXIT_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// One line for people: `exited 3`, `killed by signal 9 (OOM-killed)`.
    pub fn describe(&self) -> String {
        let mut s = match self.exit {
            ContainerExit::Exited(c) => format!("exited {c}"),
            ContainerExit::Signaled(n) => format!("killed by signal {n}"),
        };
        if self.oom_killed {
            s.push_str(" (OOM-killed)");
        }
        if self.unhealthy {
            s.push_str(" (unhealthy)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ContainerExit::Exited(0).status(), 0);
        assert_eq!(ContainerExit::Exited(3).status(), 3);
        assert_eq!(ContainerExit::Exited(256 + 4).status(), 4);
        assert_eq!(ContainerExit::Signaled(9).status(), 137);
        assert_eq!(ContainerExit::Signaled(15).status(), 143);
    }

    #[test]
    fn record_round_trip_and_description() {
        let d = tempfile::tempdir().unwrap();
        assert!(ExitRecord::load(d.path()).is_none());
        let r = ExitRecord {
            exit: ContainerExit::Signaled(9),
            status: 137,
            oom_killed: true,
            unhealthy: false,
            finished_at_ms: 1,
        };
        crate::fsutil::write_atomic(
            &d.path().join(crate::EXIT_FILE),
            &serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
        let back = ExitRecord::load(d.path()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.describe(), "killed by signal 9 (OOM-killed)");
        let e = ExitRecord {
            exit: ContainerExit::Exited(3),
            status: 3,
            oom_killed: false,
            unhealthy: false,
            finished_at_ms: 1,
        };
        assert_eq!(e.describe(), "exited 3");
    }
}

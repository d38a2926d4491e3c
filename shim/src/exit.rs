//! How a container's end becomes the shim's exit status (what systemd records as the unit's
//! `ExecMainStatus`), and the record of it left for berthd. Runs in berth-shim.

use serde::{Deserialize, Serialize};

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

/// `exit.json` in the bundle directory, written when the container ended (berthd reads it, then
/// removes the bundle).
pub const EXIT_FILE: &str = "exit.json";

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
}

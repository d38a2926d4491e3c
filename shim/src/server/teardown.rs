//! The shim's end, after the container's init exited: drain the terminal into the journal, fail
//! waiting execs, record `exit.json`, delete the container, unmount, remove sockets and cgroup
//! leaves, and pick the shim's exit status. Runs in berth-shim.

use super::*;
use berth_proto::{EXIT_FILE, ExitRecord, NOTIFY_SOCKET_FILE};
use std::io::Write;

/// Terminal output as the journal should get it: a terminal ends lines with CR LF; journald
/// keeps the CR (and then shows the line as binary), so it is dropped.
pub(super) fn journal_text(buf: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(buf.len());
    for (i, &b) in buf.iter().enumerate() {
        if !(b == b'\r' && buf.get(i + 1) == Some(&b'\n')) {
            v.push(b);
        }
    }
    v
}

/// Writes terminal output to the shim's stdout (the unit's journal stream).
pub(super) fn to_journal(buf: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(&journal_text(buf));
    let _ = out.flush();
}

/// The shim's exit status (the unit's `ExecMainStatus`): the container's (128+n for a signal),
/// except that a container killed for being unhealthy never looks successful.
pub(super) fn shim_status(exit: ContainerExit, unhealthy: bool) -> i32 {
    match exit.status() {
        0 if unhealthy => 1,
        s => s,
    }
}

impl Shim {
    /// After the init exited: delete the container, unmount, remove sockets and leaves, record
    /// the exit; returns the shim's exit status.
    pub(super) fn finish(mut self) -> i32 {
        let exit = self.exit.unwrap_or(ContainerExit::Exited(255));
        let oom_killed = self
            .undo
            .leaves
            .as_ref()
            .is_some_and(|l| l.oom_kills() > self.oom_base);
        if let Some(m) = self.pty.take() {
            let mut b = [0u8; IO_BUF];
            while let Ok(n) = nix::unistd::read(&m, &mut b) {
                if n == 0 {
                    break;
                }
                to_journal(&b[..n]);
                self.send_attached(&b[..n], nix::sys::socket::MsgFlags::empty());
            }
        }
        let waiting: Vec<(i32, u64)> = self.execs.drain().collect();
        for (_, cid) in waiting {
            self.reply_to(
                cid,
                &Response::Error {
                    message: "the container exited".into(),
                },
            );
        }
        let status = shim_status(exit, self.unhealthy);
        let rec = ExitRecord {
            exit,
            status,
            oom_killed,
            unhealthy: self.unhealthy,
            finished_at_ms: now_ms(),
        };
        if let Ok(j) = serde_json::to_vec(&rec)
            && let Err(e) = berth_proto::fsutil::write_atomic(&self.bundle.join(EXIT_FILE), &j)
        {
            eprintln!("berth-shim: writing {EXIT_FILE} of {}: {e}", self.cfg.name);
        }
        eprintln!(
            "berth-shim: container {} exited: {exit:?}, status {status}{}{}",
            self.cfg.name,
            if oom_killed { ", OOM-killed" } else { "" },
            if self.unhealthy { ", unhealthy" } else { "" },
        );
        let _ = self.notifier.notify(&format!(
            "STATUS=exited with status {status}{}",
            if oom_killed { " (OOM-killed)" } else { "" }
        ));
        let _ = std::fs::remove_file(self.bundle.join(NOTIFY_SOCKET_FILE));
        std::mem::take(&mut self.undo).run();
        // Processes the runtime's delete killed may still be ours to reap (execs, probes).
        let _ = waitpid(None, Some(WaitPidFlag::WNOHANG));
        let _ = self.stdin_w.take();
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        assert_eq!(shim_status(ContainerExit::Exited(0), false), 0);
        assert_eq!(shim_status(ContainerExit::Exited(3), false), 3);
        assert_eq!(
            shim_status(ContainerExit::Signaled(libc::SIGKILL), false),
            137
        );
        assert_eq!(
            shim_status(ContainerExit::Signaled(libc::SIGTERM), false),
            143
        );
        // Unhealthy: killed (137), or an exit 0 that raced the kill, is a failure.
        assert_eq!(
            shim_status(ContainerExit::Signaled(libc::SIGKILL), true),
            137
        );
        assert_eq!(shim_status(ContainerExit::Exited(0), true), 1);
        assert_eq!(shim_status(ContainerExit::Exited(2), true), 2);
    }

    #[test]
    fn terminal_lines_lose_their_cr() {
        assert_eq!(journal_text(b"a\r\nb\r\n"), b"a\nb\n");
        assert_eq!(journal_text(b"progress\r50%\r\n"), b"progress\r50%\n");
        assert_eq!(journal_text(b"end\r"), b"end\r");
    }
}

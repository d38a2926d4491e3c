//! The notify proxy for `readiness: notify`: the container's sd_notify datagrams arrive on
//! `<bundle>/notify.sock`; only READY=1 and STATUS= pass on to systemd (the container must not
//! set MAINPID, WATCHDOG and the like for the unit). Runs in berth-shim.

use super::*;

/// What one line of the container's sd_notify message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotifyLine<'a> {
    /// READY=1: the unit becomes active.
    Ready,
    /// STATUS=…, passed on as is.
    Status(&'a str),
    /// Anything else (MAINPID=, WATCHDOG=, FDSTORE=…): dropped.
    Dropped,
}

/// Only readiness and status pass: the container must not speak for the unit otherwise.
pub(super) fn classify(line: &str) -> NotifyLine<'_> {
    if line == "READY=1" {
        NotifyLine::Ready
    } else if line.starts_with("STATUS=") {
        NotifyLine::Status(line)
    } else {
        NotifyLine::Dropped
    }
}

impl Shim {
    pub(super) fn on_notify(&mut self, buf: &mut [u8]) {
        let mut msgs = Vec::new();
        if let Some(s) = &self.notify_proxy {
            let _ = s.set_nonblocking(true);
            while let Ok(n) = s.recv(buf) {
                msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        for line in msgs.iter().flat_map(|m| m.lines()) {
            match classify(line) {
                NotifyLine::Ready => self.send_ready(),
                NotifyLine::Status(s) => {
                    let _ = self.notifier.notify(s);
                }
                NotifyLine::Dropped => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_and_status_pass() {
        assert_eq!(classify("READY=1"), NotifyLine::Ready);
        assert_eq!(
            classify("STATUS=serving"),
            NotifyLine::Status("STATUS=serving")
        );
        for l in [
            "MAINPID=1",
            "WATCHDOG=1",
            "READY=0",
            "FDSTORE=1",
            "STOPPING=1",
            "",
        ] {
            assert_eq!(classify(l), NotifyLine::Dropped, "{l}");
        }
    }
}

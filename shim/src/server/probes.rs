//! Health probes: runs the check command in the container as a direct child of the shim (stdout
//! and stderr into a pipe), kills it at the timeout, records its result in the [`Health`] state
//! machine and acts on the transitions (READY=1 for `readiness: healthy`, SIGKILL when
//! unhealthy). When a probe is due is decided by [`probe_step`]. Runs in berth-shim.

use super::*;
use crate::health::{MAX_OUTPUT, Transition};
use berth_proto::Readiness;
use berth_proto::protocol::{ExecRequest, HealthResult};
use berth_runtime::ExecOptions;
use std::fs::File;
use std::os::fd::AsRawFd;

/// A probe running in the container.
pub(super) struct Probe {
    pub(super) pid: i32,
    pidfd: OwnedFd,
    pub(super) out: Option<OwnedFd>,
    buf: Vec<u8>,
    pub(super) started: Instant,
    started_ms: u64,
    timed_out: bool,
    pub(super) status: Option<i32>,
}

/// What the probe timer does at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeStep {
    Wait,
    /// A probe is due.
    Start,
    /// The running probe outlived the timeout: SIGKILL it (it counts as failed, exit -1).
    Kill,
    /// The probe ended (reaped): record its result.
    Collect,
}

/// A running probe as [`probe_step`] sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    pub started: Instant,
    pub ended: bool,
    pub timed_out: bool,
}

/// Decides the probe timer's step: one probe at a time, the next one `interval` after the last
/// ended (the [`Health`] schedule), none once the container exited.
pub(super) fn probe_step(
    now: Instant,
    running: Option<Running>,
    timeout: Duration,
    next_run: Instant,
    container_exited: bool,
) -> ProbeStep {
    match running {
        Some(r) if r.ended => ProbeStep::Collect,
        Some(r) if !r.timed_out && now >= r.started + timeout => ProbeStep::Kill,
        Some(_) => ProbeStep::Wait,
        None if !container_exited && now >= next_run => ProbeStep::Start,
        None => ProbeStep::Wait,
    }
}

/// A probe's recorded exit code: its status, or -1 when it was killed at the timeout (Docker's
/// convention for a timed-out check) or its status is unknown.
pub(super) fn probe_exit_code(timed_out: bool, status: Option<i32>) -> i32 {
    match (timed_out, status) {
        (false, Some(s)) => s,
        _ => -1,
    }
}

/// When the probe timer next needs the loop: the running probe's timeout, else the next run.
pub(super) fn probe_wakeup(
    running: Option<Instant>,
    timeout: Duration,
    next_run: Instant,
) -> Instant {
    match running {
        Some(started) => started + timeout,
        None => next_run,
    }
}

impl Shim {
    pub(super) fn on_probe_timer(&mut self, now: Instant) {
        let Some(h) = &self.health else { return };
        let running = self.probe.as_ref().map(|p| Running {
            started: p.started,
            ended: p.status.is_some(),
            timed_out: p.timed_out,
        });
        match probe_step(now, running, h.timeout(), h.next_run(), self.exit.is_some()) {
            ProbeStep::Wait => {}
            ProbeStep::Start => self.start_probe(),
            ProbeStep::Kill => {
                if let Some(p) = self.probe.as_mut() {
                    p.timed_out = true;
                    let _ = berth_runtime::sys::pidfd_send_signal(&p.pidfd, libc::SIGKILL);
                }
            }
            ProbeStep::Collect => {
                let Some(mut p) = self.probe.take() else {
                    return;
                };
                if let Some(out) = &p.out {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = nix::unistd::read(out, &mut b) {
                        if n == 0 {
                            break;
                        }
                        let room = MAX_OUTPUT.saturating_sub(p.buf.len());
                        p.buf.extend_from_slice(&b[..n.min(room)]);
                    }
                }
                let res = HealthResult {
                    started_at_ms: p.started_ms,
                    ended_at_ms: now_ms(),
                    exit_code: probe_exit_code(p.timed_out, p.status),
                    output: String::from_utf8_lossy(&p.buf).into_owned(),
                };
                self.record_probe(res);
            }
        }
    }

    /// When the probe timer next needs the loop, if there is a health check.
    pub(super) fn probe_wakeup(&self) -> Option<Instant> {
        let h = self.health.as_ref()?;
        Some(probe_wakeup(
            self.probe.as_ref().map(|p| p.started),
            h.timeout(),
            h.next_run(),
        ))
    }

    fn start_probe(&mut self) {
        let Some(h) = &self.health else { return };
        let req = ExecRequest {
            args: h.check.command.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let r = (|| -> Result<Probe, ShimError> {
            let p = self.exec_process(&req)?;
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ShimError::Io {
                what: "health check pipe".into(),
                source: e.into(),
            })?;
            let devnull = File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
            let opts = ExecOptions {
                stdio: Some([devnull.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()]),
                ..Default::default()
            };
            let pid = self
                .rt
                .exec(&self.id, &p, &opts, &self.bundle)
                .map_err(|source| ShimError::Runtime {
                    op: "health check in",
                    id: self.id.clone(),
                    source,
                })?;
            drop(w);
            set_nonblocking(r.as_fd());
            let pidfd = berth_runtime::sys::pidfd_open(pid).map_err(|e| ShimError::Io {
                what: "pidfd of the health check".into(),
                source: e.into(),
            })?;
            Ok(Probe {
                pid,
                pidfd,
                out: Some(r),
                buf: Vec::new(),
                started,
                started_ms: now_ms(),
                timed_out: false,
                status: None,
            })
        })();
        match r {
            Ok(p) => self.probe = Some(p),
            Err(e) => {
                // A probe that cannot even start is a failed probe.
                let res = HealthResult {
                    started_at_ms: now_ms(),
                    ended_at_ms: now_ms(),
                    exit_code: -1,
                    output: e.to_string(),
                };
                self.record_probe(res);
            }
        }
    }

    pub(super) fn on_probe_output(&mut self, buf: &mut [u8]) {
        let Some(p) = self.probe.as_mut() else { return };
        let Some(out) = &p.out else { return };
        match nix::unistd::read(out, buf) {
            Ok(0) => p.out = None,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(p.buf.len());
                p.buf.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(nix::Error::EAGAIN) => {}
            Err(_) => p.out = None,
        }
    }

    fn record_probe(&mut self, res: HealthResult) {
        let Some(h) = self.health.as_mut() else {
            return;
        };
        let code = res.exit_code;
        match h.record(res, Instant::now()) {
            Transition::BecameHealthy => {
                let _ = self.notifier.notify("STATUS=healthy");
                if self.cfg.readiness == Readiness::Healthy {
                    self.send_ready();
                }
            }
            Transition::BecameUnhealthy => {
                eprintln!(
                    "berth-shim: container {} is unhealthy (last check status {code}); killing it",
                    self.cfg.name
                );
                self.unhealthy = true;
                let _ = self.notifier.notify("STATUS=unhealthy");
                let _ = berth_runtime::sys::pidfd_send_signal(&self.init_pidfd, libc::SIGKILL);
            }
            Transition::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_at_a_time_on_schedule() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let timeout = s(1);
        let next = t0 + s(10);
        assert_eq!(probe_step(t0, None, timeout, next, false), ProbeStep::Wait);
        assert_eq!(
            probe_step(next, None, timeout, next, false),
            ProbeStep::Start
        );
        // Not once the container has exited.
        assert_eq!(probe_step(next, None, timeout, next, true), ProbeStep::Wait);
        let run = |ended, timed_out| {
            Some(Running {
                started: next,
                ended,
                timed_out,
            })
        };
        // A running probe is never started twice, even when the next run is due.
        let later = next + s(30);
        assert_eq!(
            probe_step(next, run(false, false), timeout, next, false),
            ProbeStep::Wait
        );
        assert_eq!(
            probe_step(next + s(1), run(false, false), timeout, later, false),
            ProbeStep::Kill
        );
        // Killed once; then it waits to be reaped.
        assert_eq!(
            probe_step(next + s(2), run(false, true), timeout, later, false),
            ProbeStep::Wait
        );
        assert_eq!(
            probe_step(next + s(2), run(true, true), timeout, later, false),
            ProbeStep::Collect
        );
        assert_eq!(
            probe_step(next, run(true, false), timeout, next, true),
            ProbeStep::Collect
        );
    }

    #[test]
    fn exit_codes_and_wakeups() {
        assert_eq!(probe_exit_code(false, Some(0)), 0);
        assert_eq!(probe_exit_code(false, Some(3)), 3);
        assert_eq!(probe_exit_code(true, Some(137)), -1);
        assert_eq!(probe_exit_code(false, None), -1);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(probe_wakeup(None, s(1), t0 + s(5)), t0 + s(5));
        assert_eq!(probe_wakeup(Some(t0), s(1), t0 + s(5)), t0 + s(1));
    }
}

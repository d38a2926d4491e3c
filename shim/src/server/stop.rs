//! Signals the shim receives and the stop of the container: what is forwarded to the init (and
//! as what), which signals start the stop grace period, and the SIGKILL when it runs out. The
//! decisions are [`route_signal`] and [`stop_timer`]; the methods carry them out. Runs in
//! berth-shim.

use super::*;
use crate::sys;

/// What the shim does with a signal it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SignalAction {
    /// SIGCHLD: reap the children that ended.
    Reap,
    /// The shim's own plumbing (SIGPIPE, SIGWINCH, SIGURG): not the container's business.
    Ignore,
    /// Send `signal` to the container's init; `stop` when it asks the container to stop (the
    /// grace period starts).
    Forward { signal: i32, stop: bool },
}

/// Everything but the shim's plumbing is meant for the container: systemd's KillSignal (stop),
/// `systemctl kill --kill-whom=main`, reload signals. A stop signal the shim could not survive
/// itself (SIGKILL, SIGSTOP) reaches it as SIGTERM (berthd sets the unit's KillSignal so) and
/// goes on as what the container asked for. The container's stop signal, SIGTERM and SIGINT
/// start the stop.
pub(super) fn route_signal(sig: i32, stop_signal: Option<i32>) -> SignalAction {
    match sig {
        libc::SIGCHLD => SignalAction::Reap,
        libc::SIGPIPE | libc::SIGWINCH | libc::SIGURG => SignalAction::Ignore,
        s => {
            let signal = match stop_signal {
                Some(stop @ (libc::SIGKILL | libc::SIGSTOP)) if s == libc::SIGTERM => stop,
                _ => s,
            };
            let stop = s == stop_signal.unwrap_or(libc::SIGTERM)
                || s == libc::SIGTERM
                || s == libc::SIGINT;
            SignalAction::Forward { signal, stop }
        }
    }
}

/// The stop timer at `now`: `Some(next deadline)` when the grace period ran out and the
/// container is to be killed now. The next deadline is far away: one SIGKILL is enough, and the
/// loop must not spin on a passed deadline while the kernel tears the container down.
pub(super) fn stop_timer(deadline: Option<Instant>, now: Instant) -> Option<Instant> {
    match deadline {
        Some(d) if now >= d => Some(now + Duration::from_secs(3600)),
        _ => None,
    }
}

/// When the grace period of a stop requested at `now` ends (unset: systemd's own
/// `TimeoutStopSec=` is the only limit).
pub(super) fn stop_deadline(now: Instant, stop_timeout_ms: Option<u64>) -> Option<Instant> {
    stop_timeout_ms.map(|ms| now + Duration::from_millis(ms))
}

impl Shim {
    pub(super) fn on_signals(&mut self) {
        while let Ok(Some((sig, _from))) = sys::read_signal(self.sigfd.as_fd()) {
            match route_signal(sig, self.cfg.stop_signal) {
                SignalAction::Reap => self.reap(),
                SignalAction::Ignore => {}
                SignalAction::Forward { signal, stop } => {
                    if let Err(e) = berth_runtime::sys::pidfd_send_signal(&self.init_pidfd, signal)
                        && e != nix::Error::ESRCH
                    {
                        eprintln!("berth-shim: forwarding signal {signal}: {e}");
                    }
                    if stop && !self.stopping {
                        self.stopping = true;
                        self.stop_deadline =
                            stop_deadline(Instant::now(), self.cfg.stop_timeout_ms);
                        let _ = self.notifier.notify("STOPPING=1");
                    }
                }
            }
        }
    }

    /// The container ignored its stop signal for the stop timeout: kill it ourselves so the shim
    /// can still clean up before systemd's own SIGKILL for the whole unit.
    pub(super) fn on_stop_timer(&mut self, now: Instant) {
        if let Some(next) = stop_timer(self.stop_deadline, now) {
            let _ = self.rt.kill(&self.id, libc::SIGKILL, true);
            let _ = berth_runtime::sys::pidfd_send_signal(&self.init_pidfd, libc::SIGKILL);
            self.stop_deadline = Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_forwarded_and_stops_recognised() {
        use SignalAction::*;
        assert_eq!(route_signal(libc::SIGCHLD, None), Reap);
        for s in [libc::SIGPIPE, libc::SIGWINCH, libc::SIGURG] {
            assert_eq!(route_signal(s, None), Ignore);
        }
        let fwd = |signal, stop| Forward { signal, stop };
        assert_eq!(route_signal(libc::SIGTERM, None), fwd(libc::SIGTERM, true));
        assert_eq!(route_signal(libc::SIGINT, None), fwd(libc::SIGINT, true));
        assert_eq!(route_signal(libc::SIGHUP, None), fwd(libc::SIGHUP, false));
        // A custom stop signal stops; SIGTERM still does (systemd's default KillSignal).
        let quit = Some(libc::SIGQUIT);
        assert_eq!(route_signal(libc::SIGQUIT, quit), fwd(libc::SIGQUIT, true));
        assert_eq!(route_signal(libc::SIGTERM, quit), fwd(libc::SIGTERM, true));
        assert_eq!(route_signal(libc::SIGUSR1, quit), fwd(libc::SIGUSR1, false));
        // SIGKILL as stop signal arrives as SIGTERM and leaves as SIGKILL.
        let kill = Some(libc::SIGKILL);
        assert_eq!(route_signal(libc::SIGTERM, kill), fwd(libc::SIGKILL, true));
        assert_eq!(route_signal(libc::SIGHUP, kill), fwd(libc::SIGHUP, false));
        let rt = libc::SIGRTMIN() + 3;
        assert_eq!(route_signal(rt, Some(rt)), fwd(rt, true));
    }

    #[test]
    fn grace_period_then_one_kill() {
        let t0 = Instant::now();
        assert_eq!(stop_deadline(t0, None), None);
        let d = stop_deadline(t0, Some(2000));
        assert_eq!(d, Some(t0 + Duration::from_secs(2)));
        assert_eq!(stop_timer(None, t0 + Duration::from_secs(99)), None);
        assert_eq!(stop_timer(d, t0 + Duration::from_millis(1999)), None);
        let next = stop_timer(d, t0 + Duration::from_secs(2)).expect("kill at the deadline");
        assert!(next >= t0 + Duration::from_secs(3600));
        assert_eq!(stop_timer(Some(next), t0 + Duration::from_secs(3)), None);
    }
}

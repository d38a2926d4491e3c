//! Health check bookkeeping with Docker's semantics: runs every `interval`, a run longer than
//! `timeout` fails, `retries` consecutive failures make the container unhealthy, failures during
//! `start_period` do not count. Pure state machine (the shim's loop runs the probes); runs in
//! berth-shim.

use berth_proto::HealthCheck;
use berth_proto::protocol::{HealthReport, HealthResult};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Results kept for `berth inspect` (Docker keeps 5).
pub const LOG_LEN: usize = 5;
/// Output kept per result.
pub const MAX_OUTPUT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// What a finished probe changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    BecameHealthy,
    BecameUnhealthy,
}

#[derive(Debug)]
pub struct Health {
    pub check: HealthCheck,
    pub status: Status,
    pub streak: u32,
    pub log: VecDeque<HealthResult>,
    started: Instant,
    next: Instant,
}

impl Health {
    /// The first probe runs one interval after the container started (as Docker does).
    pub fn new(check: HealthCheck, now: Instant) -> Self {
        let next = now + Duration::from_millis(check.interval_ms.max(1));
        Health {
            check,
            status: Status::Starting,
            streak: 0,
            log: VecDeque::new(),
            started: now,
            next,
        }
    }

    pub fn next_run(&self) -> Instant {
        self.next
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.check.timeout_ms.max(1))
    }

    /// Records a finished probe (`exit_code` -1 = timed out) and schedules the next one.
    pub fn record(&mut self, result: HealthResult, ended: Instant) -> Transition {
        let ok = result.exit_code == 0;
        self.log.push_back(result);
        while self.log.len() > LOG_LEN {
            self.log.pop_front();
        }
        self.next = ended + Duration::from_millis(self.check.interval_ms.max(1));
        if ok {
            self.streak = 0;
            if self.status != Status::Healthy {
                self.status = Status::Healthy;
                return Transition::BecameHealthy;
            }
            return Transition::None;
        }
        let in_start_period = self.status == Status::Starting
            && ended.duration_since(self.started)
                < Duration::from_millis(self.check.start_period_ms);
        if in_start_period {
            return Transition::None;
        }
        self.streak += 1;
        if self.streak >= self.check.retries.max(1) && self.status != Status::Unhealthy {
            self.status = Status::Unhealthy;
            return Transition::BecameUnhealthy;
        }
        Transition::None
    }

    pub fn report(&self) -> HealthReport {
        HealthReport {
            status: self.status.as_str().to_owned(),
            failing_streak: self.streak,
            log: self.log.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            command: vec!["true".into()],
            interval_ms: 1000,
            timeout_ms: 500,
            retries,
            start_period_ms,
        }
    }

    fn res(code: i32) -> HealthResult {
        HealthResult {
            started_at_ms: 0,
            ended_at_ms: 0,
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn retries_then_unhealthy_and_recovery() {
        let t0 = Instant::now();
        let mut h = Health::new(check(3, 0), t0);
        assert_eq!(h.next_run(), t0 + Duration::from_secs(1));
        assert_eq!(h.record(res(0), t0), Transition::BecameHealthy);
        assert_eq!(h.record(res(1), t0), Transition::None);
        assert_eq!(h.record(res(-1), t0), Transition::None);
        assert_eq!(h.streak, 2);
        assert_eq!(h.record(res(1), t0), Transition::BecameUnhealthy);
        assert_eq!(h.record(res(1), t0), Transition::None);
        assert_eq!(h.record(res(0), t0), Transition::BecameHealthy);
        assert_eq!(h.streak, 0);
        assert_eq!(h.log.len(), LOG_LEN);
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let t0 = Instant::now();
        let mut h = Health::new(check(1, 10_000), t0);
        assert_eq!(
            h.record(res(1), t0 + Duration::from_secs(2)),
            Transition::None
        );
        assert_eq!(h.status, Status::Starting);
        assert_eq!(
            h.record(res(1), t0 + Duration::from_secs(11)),
            Transition::BecameUnhealthy
        );
        assert_eq!(h.report().status, "unhealthy");
    }
}

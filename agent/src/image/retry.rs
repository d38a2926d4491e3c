//! Registry transfer faults: the timeouts that detect a stalled or trickling transfer, and the
//! decision whether a failed request is tried again, after how long, or given up (capped
//! exponential backoff with jitter, a registry's `Retry-After` honoured). The decisions are pure;
//! the pull performs them. Runs in berthd and the CLI.

use super::Error;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// How a pull copes with a registry that fails (berthd.yaml `registries.retry`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Tries after the first one failed, per request (0: fail at the first error).
    pub attempts: u32,
    /// The first wait; each further one doubles, up to `max_backoff`.
    #[serde(deserialize_with = "duration")]
    pub backoff: Duration,
    #[serde(deserialize_with = "duration")]
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for within a pull; a registry asking for more fails the
    /// pull (berthd's reconcile loop comes back later).
    #[serde(deserialize_with = "duration")]
    pub max_retry_after: Duration,
    /// Connecting to the registry.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// No byte for this long (waiting for an answer, or within a body) is a stalled transfer.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A body arriving slower than this many bytes per second over `rate_window` is a stalled
    /// transfer too (bytes trickled to keep `idle_timeout` from firing); 0: no minimum.
    pub min_rate: u64,
    #[serde(deserialize_with = "duration")]
    pub rate_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            min_rate: 1024,
            rate_window: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries: each failure is reported at once (as before retries existed).
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 0,
            ..Default::default()
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::spec::Duration::parse(&s)
        .map(|d| d.0)
        .map_err(serde::de::Error::custom)
}

/// What kind of failure a request ended with, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The registry answered with an error status that may go away (5xx, 429, 408).
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// The network: refused, cut, stalled, trickling.
    Network,
    /// Bytes that do not match the descriptor's digest or size.
    Corrupt,
    /// Retrying unchanged cannot help (404, 401, a bad manifest, the disk).
    Fatal,
}

/// Classifies a pull error.
pub fn fault(e: &Error) -> Fault {
    match e {
        Error::Server {
            code, retry_after, ..
        } if *code >= 500 || *code == 408 => Fault::Status {
            code: *code,
            retry_after: *retry_after,
        },
        Error::TooManyRequests { retry_after, .. } => Fault::Status {
            code: 429,
            retry_after: *retry_after,
        },
        Error::Transport { .. } | Error::Interrupted { .. } => Fault::Network,
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => Fault::Corrupt,
        _ => Fault::Fatal,
    }
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Retry { after: Duration },
    GiveUp,
}

/// The decision after the `retries_done`+1-th failure of a request. `jitter` (0..1) spreads the
/// waits of many pulls over the second half of each backoff step, so that they do not hit a
/// recovering registry all at once.
pub fn decide(policy: &RetryPolicy, fault: Fault, retries_done: u32, jitter: f64) -> Verdict {
    if fault == Fault::Fatal || retries_done >= policy.attempts {
        return Verdict::GiveUp;
    }
    if let Fault::Status {
        retry_after: Some(ra),
        ..
    } = fault
    {
        return if ra <= policy.max_retry_after {
            Verdict::Retry { after: ra }
        } else {
            Verdict::GiveUp
        };
    }
    let step = policy
        .backoff
        .saturating_mul(1u32 << retries_done.min(20))
        .min(policy.max_backoff);
    let jitter = jitter.clamp(0.0, 1.0);
    Verdict::Retry {
        after: step / 2 + step.mul_f64(jitter / 2.0),
    }
}

/// A `Retry-After` header: delay seconds, or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let at = std::time::SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether a transfer is stalled: `idle` since its last byte, `window_bytes` received in the
/// last `window` (when a full window has passed).
pub fn stalled(
    policy: &RetryPolicy,
    idle: Duration,
    window: Duration,
    window_bytes: u64,
) -> Option<String> {
    if idle >= policy.idle_timeout {
        return Some(format!(
            "stalled: no data for {}s",
            policy.idle_timeout.as_secs_f64()
        ));
    }
    if policy.min_rate > 0 && window >= policy.rate_window {
        let rate = window_bytes as f64 / window.as_secs_f64();
        if rate < policy.min_rate as f64 {
            return Some(format!(
                "stalled: {rate:.0} B/s over {}s, below the minimum of {} B/s",
                window.as_secs_f64(),
                policy.min_rate
            ));
        }
    }
    None
}

/// The status line while a pull waits to try again: "registry 127.0.0.1:5000 answered 503, retry
/// 3 of 5 in 4s".
pub fn waiting_message(e: &Error, retry: u32, policy: &RetryPolicy, after: Duration) -> String {
    let cause = match e {
        Error::Server { registry, code, .. } => format!("registry {registry} answered {code}"),
        Error::TooManyRequests { registry, .. } => {
            format!("registry {registry} answered 429 (too many requests)")
        }
        Error::Interrupted {
            digest,
            done,
            size,
            detail,
        } => format!("blob {digest} interrupted at {done} of {size} bytes ({detail})"),
        Error::Transport {
            registry, detail, ..
        } => format!("registry {registry}: {detail}"),
        e => e.to_string(),
    };
    let secs = after.as_secs_f64();
    let secs = if secs >= 10.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs:.1}s")
    };
    format!("{cause}, retry {retry} of {} in {secs}", policy.attempts)
}

/// A number in 0..1 that differs between calls (for jitter; not for anything secret).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let h = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            ..Default::default()
        }
    }

    fn status(code: u16, ra: Option<u64>) -> Fault {
        Fault::Status {
            code,
            retry_after: ra.map(Duration::from_secs),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_after_the_attempts() {
        let p = policy();
        let at = |n, j| decide(&p, Fault::Network, n, j);
        let secs = |s: f64| Verdict::Retry {
            after: Duration::from_secs_f64(s),
        };
        assert_eq!(at(0, 1.0), secs(1.0));
        assert_eq!(at(0, 0.0), secs(0.5));
        assert_eq!(at(1, 1.0), secs(2.0));
        assert_eq!(at(2, 1.0), secs(4.0));
        assert_eq!(at(3, 1.0), secs(5.0), "capped");
        assert_eq!(at(3, 0.0), secs(2.5));
        assert_eq!(at(4, 1.0), Verdict::GiveUp);
        // a huge retry count neither overflows nor exceeds the cap
        let p = RetryPolicy {
            attempts: u32::MAX,
            ..policy()
        };
        assert_eq!(decide(&p, Fault::Network, 1000, 1.0), secs(5.0));
    }

    #[test]
    fn jitter_stays_in_the_second_half_of_the_step() {
        let p = policy();
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
            let Verdict::Retry { after } = decide(&p, status(503, None), 1, j) else {
                panic!("503 is retried");
            };
            assert!(after >= Duration::from_secs(1) && after <= Duration::from_secs(2));
        }
        assert_eq!(
            decide(&p, Fault::Corrupt, 0, 2.0),
            Verdict::Retry {
                after: Duration::from_secs(1)
            },
            "jitter out of range is clamped"
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let p = policy();
        assert_eq!(
            decide(&p, status(429, Some(7)), 0, 0.5),
            Verdict::Retry {
                after: Duration::from_secs(7)
            }
        );
        assert_eq!(
            decide(&p, status(503, Some(0)), 2, 0.5),
            Verdict::Retry {
                after: Duration::ZERO
            }
        );
        assert_eq!(decide(&p, status(429, Some(61)), 0, 0.5), Verdict::GiveUp);
        assert_eq!(decide(&p, status(429, Some(1)), 4, 0.5), Verdict::GiveUp);
    }

    #[test]
    fn fatal_failures_and_no_attempts_give_up_at_once() {
        assert_eq!(decide(&policy(), Fault::Fatal, 0, 0.5), Verdict::GiveUp);
        assert_eq!(
            decide(&RetryPolicy::none(), Fault::Network, 0, 0.5),
            Verdict::GiveUp
        );
    }

    #[test]
    fn errors_are_classified() {
        let (image, registry) = ("i".to_string(), "r:5000".to_string());
        let server = |code| Error::Server {
            image: image.clone(),
            registry: registry.clone(),
            code,
            message: String::new(),
            retry_after: None,
        };
        assert_eq!(fault(&server(500)), status(500, None));
        assert_eq!(fault(&server(502)), status(502, None));
        assert_eq!(fault(&server(408)), status(408, None));
        assert_eq!(fault(&server(418)), Fault::Fatal);
        assert_eq!(
            fault(&Error::TooManyRequests {
                image: image.clone(),
                registry: registry.clone(),
                retry_after: Some(Duration::from_secs(3)),
            }),
            status(429, Some(3))
        );
        assert_eq!(
            fault(&Error::DigestMismatch {
                digest: "sha256:a".into(),
                actual: "sha256:b".into()
            }),
            Fault::Corrupt
        );
        assert_eq!(
            fault(&Error::Transport {
                image: image.clone(),
                registry: registry.clone(),
                detail: "connection refused".into()
            }),
            Fault::Network
        );
        for e in [
            Error::NotFound {
                image: image.clone(),
                registry: registry.clone(),
                what: "manifest".into(),
            },
            Error::Unauthorized {
                image: image.clone(),
                registry: registry.clone(),
                detail: String::new(),
            },
            Error::NoSpace {
                store: "/s".into(),
                free: 1,
                needed: 2,
                detail: "x".into(),
            },
        ] {
            assert_eq!(fault(&e), Fault::Fatal, "{e}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a past date: at once"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn a_stall_and_a_trickle_are_detected() {
        let p = RetryPolicy {
            idle_timeout: Duration::from_secs(10),
            min_rate: 1000,
            rate_window: Duration::from_secs(5),
            ..Default::default()
        };
        let s = Duration::from_secs;
        assert!(
            stalled(&p, s(10), s(1), 0)
                .unwrap()
                .contains("no data for 10s")
        );
        assert_eq!(stalled(&p, s(9), s(4), 0), None, "window not yet full");
        assert!(
            stalled(&p, s(0), s(5), 4999)
                .unwrap()
                .contains("below the minimum of 1000 B/s")
        );
        assert_eq!(stalled(&p, s(0), s(5), 5000), None);
        let off = RetryPolicy { min_rate: 0, ..p };
        assert_eq!(stalled(&off, s(0), s(50), 0), None);
    }

    #[test]
    fn the_waiting_message_names_registry_status_and_retry() {
        let p = policy();
        let e = Error::Server {
            image: "127.0.0.1:5000/x:y".into(),
            registry: "127.0.0.1:5000".into(),
            code: 503,
            message: "busy".into(),
            retry_after: None,
        };
        assert_eq!(
            waiting_message(&e, 3, &p, Duration::from_secs(4)),
            "registry 127.0.0.1:5000 answered 503, retry 3 of 4 in 4.0s"
        );
        let e = Error::Interrupted {
            digest: "sha256:ab".into(),
            done: 10,
            size: 20,
            detail: "stalled: no data for 2s".into(),
        };
        assert_eq!(
            waiting_message(&e, 1, &p, Duration::from_secs(12)),
            "blob sha256:ab interrupted at 10 of 20 bytes (stalled: no data for 2s), retry 1 of 4 in 12s"
        );
    }

    #[test]
    fn settings_parse_from_yaml() {
        let p: RetryPolicy = serde_norway::from_str(
            "attempts: 2\nbackoff: 250ms\nmax_backoff: 10s\nidle_timeout: 30s\nmin_rate: 0\n",
        )
        .unwrap();
        assert_eq!(p.attempts, 2);
        assert_eq!(p.backoff, Duration::from_millis(250));
        assert_eq!(p.max_backoff, Duration::from_secs(10));
        assert_eq!(p.idle_timeout, Duration::from_secs(30));
        assert_eq!(p.min_rate, 0);
        assert_eq!(p.connect_timeout, RetryPolicy::default().connect_timeout);
        assert!(serde_norway::from_str::<RetryPolicy>("tries: 2\n").is_err());
    }
}

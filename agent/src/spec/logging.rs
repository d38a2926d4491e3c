//! `logging:` of a container spec (Compose's key): the journald driver and its rate limit, which
//! becomes the unit's `LogRateLimitIntervalSec=`/`LogRateLimitBurst=`. Parsed in berthd and `berth`.

use super::Duration;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// journald's own default (`RateLimitBurst=10000` per 30 s, scaled by free disk space) drops all
/// but ~35,000 lines of a 100,000-line burst. berth's default keeps such a burst whole while still
/// bounding a runaway writer, which would otherwise rotate every other unit's logs away.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    interval: std::time::Duration::from_secs(30),
    burst: 100_000,
};

/// The option names `logging.options` accepts.
const OPTIONS: &[&str] = &["rate-limit-interval", "rate-limit-burst"];

/// `logging:` as written: `driver` (only `journald`) and `options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default)]
    pub driver: LogDriver,
    #[serde(default)]
    pub options: LogOptions,
}

/// Where a container's output goes. journald is the one place: `berth logs`, `journalctl -u` and
/// `systemctl status` all read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogDriver {
    #[default]
    Journald,
}

impl<'de> Deserialize<'de> for LogDriver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::types::parse_scalar(d, |s| match s.as_str() {
            "journald" => Ok(LogDriver::Journald),
            other => Err(format!(
                "unsupported logging driver `{other}`: berth sends container output to journald \
                 (read it with `berth logs` or `journalctl -u berth-NAME`)"
            )),
        })
    }
}

/// `logging.options`, Docker's `--log-opt` spelling; each value is checked at its own position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogOptions {
    #[serde(
        rename = "rate-limit-interval",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit_interval: Option<Duration>,
    #[serde(rename = "rate-limit-burst", skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
}

impl<'de> Deserialize<'de> for LogOptions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LogOptions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of logging options")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<LogOptions, A::Error> {
                let mut o = LogOptions::default();
                while let Some(key) = m.next_key::<String>()? {
                    match key.as_str() {
                        "rate-limit-interval" => {
                            let v: Scalar<Duration> = m.next_value()?;
                            o.rate_limit_interval = Some(v.0);
                        }
                        "rate-limit-burst" => {
                            let v: Scalar<u32> = m.next_value()?;
                            o.rate_limit_burst = Some(v.0);
                        }
                        other => {
                            let hint = super::closest(other, OPTIONS.iter().copied())
                                .map(|c| format!(" (did you mean `{c}`?)"))
                                .unwrap_or_default();
                            return Err(de::Error::custom(format!(
                                "unknown logging option `{other}`{hint}: berth knows {}",
                                OPTIONS.join(", ")
                            )));
                        }
                    }
                }
                Ok(o)
            }
        }
        d.deserialize_map(V)
    }
}

/// A scalar option value (YAML may give `1000` or `"1000"`), parsed where it stands.
struct Scalar<T>(T);

impl<'de> Deserialize<'de> for Scalar<Duration> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::types::parse_scalar(d, |s| Duration::parse(&s).map(Scalar))
    }
}

impl<'de> Deserialize<'de> for Scalar<u32> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::types::parse_scalar(d, |s| {
            s.trim().parse().map(Scalar).map_err(|_| {
                format!(
                    "invalid rate-limit-burst `{s}`: expected a count of lines (0 to 4294967295)"
                )
            })
        })
    }
}

/// journald's per-unit rate limit: at most `burst` lines per `interval` (journald scales the burst
/// up with free disk space); an `interval` or `burst` of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub interval: std::time::Duration,
    pub burst: u32,
}

impl RateLimit {
    /// The limit a spec asks for: its options over berth's default, one by one.
    pub fn of(logging: Option<&Logging>) -> RateLimit {
        let o = logging.map(|l| &l.options);
        RateLimit {
            interval: o
                .and_then(|o| o.rate_limit_interval)
                .map_or(DEFAULT_RATE_LIMIT.interval, |d| d.0),
            burst: o
                .and_then(|o| o.rate_limit_burst)
                .unwrap_or(DEFAULT_RATE_LIMIT.burst),
        }
    }

    pub fn is_off(&self) -> bool {
        self.interval.is_zero() || self.burst == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `logging:` inside a whole spec, so errors carry the spec's file:line:column.
    fn parse(yaml: &str) -> Result<Logging, String> {
        let text = format!(
            "image: busybox\nlogging:\n  {}\n",
            yaml.replace('\n', "\n  ")
        );
        crate::spec::parse(std::path::Path::new("web.yaml"), &text)
            .map(|s| s.logging.unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(RateLimit::of(None), DEFAULT_RATE_LIMIT);
        let l = parse("options: {rate-limit-burst: \"5000\"}").unwrap();
        assert_eq!(
            RateLimit::of(Some(&l)),
            RateLimit {
                interval: DEFAULT_RATE_LIMIT.interval,
                burst: 5000
            }
        );
        let l = parse("driver: journald\noptions: {rate-limit-interval: 0}").unwrap();
        assert!(RateLimit::of(Some(&l)).is_off());
        let l = parse("options: {rate-limit-interval: 1m, rate-limit-burst: 10}").unwrap();
        assert_eq!(
            RateLimit::of(Some(&l)).interval,
            std::time::Duration::from_secs(60)
        );
    }

    #[test]
    fn bad_values_are_refused_with_what_to_write() {
        let e = parse("driver: json-file").unwrap_err();
        assert!(e.contains("unsupported logging driver `json-file`"), "{e}");
        assert!(e.starts_with("web.yaml:3:"), "{e}");
        let e = parse("options: {rate-limit-brust: 10}").unwrap_err();
        assert!(e.contains("did you mean `rate-limit-burst`"), "{e}");
        let e = parse("options: {max-size: 10m}").unwrap_err();
        assert!(e.contains("unknown logging option `max-size`"), "{e}");
        let e = parse("options: {rate-limit-burst: -1}").unwrap_err();
        assert!(e.contains("invalid rate-limit-burst `-1`"), "{e}");
        let e = parse("options: {rate-limit-interval: soon}").unwrap_err();
        assert!(e.contains("duration"), "{e}");
    }
}

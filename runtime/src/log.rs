//! The runtime's own log lines: a debug line per step it performs and its warnings, in the
//! runtime process only (never in a container process, whose stderr is the container's). Quiet
//! and free by default: debug lines cost one relaxed atomic load until [`init`] turns them on;
//! warnings go to stderr until a caller installs its sink (the `berth-runtime` binary writes
//! runc's log lines, [`line`], to `--log` or stderr).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// A line's level, named as runc (logrus) names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A failed command (written by the binary, last).
    Error,
    /// Something the runtime did differently from what was asked, and went on.
    Warning,
    /// A step the runtime performed (only with `--debug`).
    Debug,
}

impl Level {
    /// The level's name in a log line.
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Debug => "debug",
        }
    }
}

/// The format of a log line (runc's `--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// logrus's text: `time="…" level=debug msg="…"`.
    Text,
    /// One JSON object per line: `{"level":"…","msg":"…","time":"…"}`.
    Json,
}

/// Where a line goes: the binary's writer, or stderr while none is installed.
pub type Sink = fn(Level, &str);

static DEBUG: AtomicBool = AtomicBool::new(false);
static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends this process's lines to `sink` (the first call wins) and turns debug lines on or off.
pub fn init(debug: bool, sink: Sink) {
    let _ = SINK.set(sink);
    DEBUG.store(debug, Ordering::Relaxed);
}

/// Whether debug lines are wanted (checked before anything is formatted).
#[inline]
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one line at `level` (see [`debug!`](crate::debug) and [`warn!`](crate::warn)).
#[doc(hidden)]
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let msg = args.to_string();
    match SINK.get() {
        Some(sink) => sink(level, &msg),
        None => eprintln!("berth-runtime: {}: {msg}", level.name()),
    }
}

/// A debug line (a step the runtime performed), formatted only when debug lines are on.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*));
        }
    };
}

/// A warning line.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Warning, format_args!($($arg)*))
    };
}

/// One log line as runc writes it (without the newline); `time` is RFC 3339.
pub fn line(format: Format, level: Level, msg: &str, time: &str) -> String {
    match format {
        Format::Json => {
            serde_json::json!({"level": level.name(), "msg": msg, "time": time}).to_string()
        }
        Format::Text => format!(
            "time={} level={} msg={}",
            text_value(time),
            level.name(),
            text_value(msg)
        ),
    }
}

/// A value of logrus's text format: bare when it is made of `[A-Za-z0-9-._/@^+]` only, quoted
/// (Go's `%q`) otherwise.
fn text_value(v: &str) -> String {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if bare {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-11-29T17:59:26Z";

    #[test]
    fn text_lines_quote_as_logrus() {
        assert_eq!(
            line(Format::Text, Level::Debug, "init cloned", T),
            r#"time="2026-11-29T17:59:26Z" level=debug msg="init cloned""#
        );
        assert_eq!(
            line(Format::Text, Level::Warning, "ok", T),
            r#"time="2026-11-29T17:59:26Z" level=warning msg=ok"#
        );
        assert_eq!(
            line(Format::Text, Level::Error, "exec: \"/x\": no\n", T),
            r#"time="2026-11-29T17:59:26Z" level=error msg="exec: \"/x\": no\n""#
        );
        assert_eq!(text_value(""), r#""""#);
    }

    #[test]
    fn json_lines_have_level_msg_time() {
        let l = line(Format::Json, Level::Debug, "a <\"b\">", T);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "debug");
        assert_eq!(v["msg"], "a <\"b\">");
        assert_eq!(v["time"], T);
        assert!(!l.contains('\n'));
    }
}

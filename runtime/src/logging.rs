//! `berth-runtime`'s log destination (runs in the runtime process): the library's lines
//! ([`berth_runtime::log`]) and the binary's error go, as runc writes them, to the `--log` file
//! (opened once, appended to) or else stderr, in the `--log-format`; debug lines only with
//! `--debug`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use berth_runtime::log::{Format, Level};

struct Dest {
    file: Option<File>,
    format: Format,
}

static DEST: OnceLock<Dest> = OnceLock::new();

/// Opens the log file (created 0644 if missing, as runc does) and installs the sink. A file
/// that cannot be opened is an error, reported before anything is done.
pub(crate) fn init(file: Option<&Path>, format: Format, debug: bool) -> std::io::Result<()> {
    let file = match file {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("open {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let _ = DEST.set(Dest { file, format });
    berth_runtime::log::init(debug, write_line);
    Ok(())
}

/// Whether lines go to a file (then stderr gets the bare error message as well).
pub(crate) fn to_file() -> bool {
    DEST.get().is_some_and(|d| d.file.is_some())
}

/// Writes one line (one write(2), so concurrent writers to an O_APPEND file do not interleave).
pub(crate) fn write_line(level: Level, msg: &str) {
    let (file, format) = match DEST.get() {
        Some(d) => (d.file.as_ref(), d.format),
        None => (None, Format::Text),
    };
    let time = berth_runtime::timefmt::rfc3339(std::time::SystemTime::now(), false);
    let mut line = berth_runtime::log::line(format, level, msg, &time);
    line.push('\n');
    let _ = match file {
        Some(mut f) => f.write_all(line.as_bytes()),
        None => std::io::stderr().lock().write_all(line.as_bytes()),
    };
}

//! OCI hooks (prestart, createRuntime, createContainer, startContainer, poststart, poststop):
//! each runs as a child of the process at that lifecycle step (the runtime, or the container's
//! init for createContainer/startContainer) with the container's state JSON on stdin (a memfd,
//! so that any size is fine), its output captured for the error message, and its timeout
//! enforced. No threads: output goes to memfds, read after the hook exits.

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// A failed hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook could not be started.
    #[error("error running {kind} hook #{index} {path:?}: {source}")]
    Spawn {
        /// Which lifecycle step.
        kind: &'static str,
        /// Its index in the list.
        index: usize,
        /// Its path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The hook failed or timed out.
    #[error(
        "error running {kind} hook #{index} {path:?}: {status}, stdout: {stdout}, stderr: {stderr}"
    )]
    Failed {
        /// Which lifecycle step.
        kind: &'static str,
        /// Its index in the list.
        index: usize,
        /// Its path.
        path: std::path::PathBuf,
        /// Exit status or "timed out".
        status: String,
        /// What it wrote to stdout.
        stdout: String,
        /// What it wrote to stderr.
        stderr: String,
    },
}

fn capture(name: &str) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

fn read_back(mut f: std::fs::File) -> String {
    let mut s = String::new();
    let _ = f.rewind();
    let _ = f.take(64 * 1024).read_to_string(&mut s);
    s.trim_end().to_string()
}

/// Runs `hooks` in order with `state` (the OCI state JSON) on stdin; stops at the first failure.
pub fn run(kind: &'static str, hooks: &[Hook], state: &str) -> Result<(), HookError> {
    for (index, h) in hooks.iter().enumerate() {
        run_one(kind, index, h, state)?;
    }
    Ok(())
}

fn run_one(kind: &'static str, index: usize, h: &Hook, state: &str) -> Result<(), HookError> {
    let spawn_err = |source| HookError::Spawn {
        kind,
        index,
        path: h.path().clone(),
        source,
    };
    let mut cmd = Command::new(h.path());
    let args = h.args().as_deref().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // The state goes in a memfd rather than a pipe: a pipe holds 64 KiB, and a hook that never
    // reads its stdin would block the runtime on a larger state (big annotations) for good.
    let mut input = capture("hook-stdin").map_err(spawn_err)?;
    input
        .write_all(state.as_bytes())
        .and_then(|()| input.rewind())
        .map_err(spawn_err)?;
    let out = capture("hook-stdout").map_err(spawn_err)?;
    let err = capture("hook-stderr").map_err(spawn_err)?;
    cmd.stdin(input)
        .stdout(out.try_clone().map_err(spawn_err)?)
        .stderr(err.try_clone().map_err(spawn_err)?);
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut delay = Duration::from_micros(50);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(e) => return Err(spawn_err(e)),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    };
    match status {
        Some(st) if st.success() => Ok(()),
        st => Err(HookError::Failed {
            kind,
            index,
            path: h.path().clone(),
            status: st.map_or_else(|| "timed out".to_string(), |s| s.to_string()),
            stdout: read_back(out),
            stderr: read_back(err),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_on_stdin_and_failures_reported() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        let ok = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {} && echo $X"],"env":["X=1"]}}"#,
            out.display()
        ));
        run("prestart", &[ok], r#"{"id":"c1"}"#).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), r#"{"id":"c1"}"#);
        let bad = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo oops >&2; exit 3"]}"#);
        let e = run("createRuntime", &[bad], "{}").unwrap_err().to_string();
        assert!(
            e.contains("createRuntime hook #0")
                && e.contains("exit status: 3")
                && e.contains("oops"),
            "{e}"
        );
        // A state bigger than a pipe holds: one hook ignores it, the next reads all of it.
        let big = format!(
            r#"{{"id":"c1","annotations":{{"a":"{}"}}}}"#,
            "x".repeat(1 << 20)
        );
        let deaf = hook(r#"{"path":"/bin/sh","args":["sh","-c","exit 0"]}"#);
        let reader = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","wc -c > {}"]}}"#,
            out.display()
        ));
        run("prestart", &[deaf, reader], &big).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            big.len().to_string()
        );
        // The timeout holds even when the hook never reads that state.
        let slow = hook(r#"{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}"#);
        let e = run("poststart", &[slow], &big).unwrap_err().to_string();
        assert!(e.contains("timed out"), "{e}");
    }
}

//! Which OCI runtime the shim drives: berth's runtime library, linked in (the normal case: the
//! container's init is cloned straight from the shim), or a runc-compatible binary (`runc`,
//! `crun`, `berth-runtime`) for comparison and fallback, whose init the shim inherits as child
//! subreaper once the binary exits. Runs in berth-shim.

use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Lib(#[from] berth_runtime::Error),
    #[error("{binary} {verb}: {message}")]
    Binary {
        binary: String,
        verb: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub enum Backend {
    Lib(Runtime),
    Binary { path: PathBuf, root: PathBuf },
}

/// A duplicate of the caller's fd (which stays the caller's) as a child's stdio.
fn stdio_of(fd: RawFd) -> Result<Stdio, std::io::Error> {
    Ok(Stdio::from(crate::sys::dup_cloexec(fd)?))
}

impl Backend {
    pub fn new(root: &Path, binary: Option<PathBuf>) -> Self {
        match binary {
            None => Backend::Lib(Runtime::new(root)),
            Some(path) => Backend::Binary {
                path,
                root: root.to_path_buf(),
            },
        }
    }

    fn cmd(&self, verb: &'static str) -> (Command, String) {
        let Backend::Binary { path, root } = self else {
            unreachable!("only for binaries")
        };
        let mut c = Command::new(path);
        crate::sys::unblock_signals_in_child(&mut c);
        // runc and crun proxy NOTIFY_SOCKET into the container and then make `start` wait for
        // the container's own READY=1: readiness is the shim's business.
        c.env_remove("NOTIFY_SOCKET");
        c.arg("--root").arg(root).arg(verb);
        (c, path.display().to_string())
    }

    fn run(&self, verb: &'static str, mut c: Command, bin: String) -> Result<(), BackendError> {
        let out = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| BackendError::Binary {
                binary: bin.clone(),
                verb,
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(BackendError::Binary {
                binary: bin,
                verb,
                message: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    fn read_pid(pid_file: &Path, bin: &str, verb: &'static str) -> Result<i32, BackendError> {
        let s = std::fs::read_to_string(pid_file).unwrap_or_default();
        let _ = std::fs::remove_file(pid_file);
        s.trim().parse().map_err(|_| BackendError::Binary {
            binary: bin.to_owned(),
            verb,
            message: format!("no pid in {}", pid_file.display()),
        })
    }

    /// Whether the state directory has an entry for `id` (runc and berth-runtime keep one
    /// directory per container under the root).
    pub fn state_exists(&self, id: &str) -> bool {
        let root = match self {
            Backend::Lib(rt) => rt.root(),
            Backend::Binary { root, .. } => root.as_path(),
        };
        root.join(id).exists()
    }

    /// Creates the container; returns its init's host PID, a child of the shim.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        opts: &CreateOptions,
    ) -> Result<i32, BackendError> {
        match self {
            Backend::Lib(rt) => {
                #[allow(unsafe_code)]
                // SAFETY: the shim is single-threaded (a poll loop, no threads: see main.rs).
                let created = unsafe { rt.create(id, bundle, opts) }?;
                Ok(created.pid)
            }
            Backend::Binary { .. } => {
                let (mut c, bin) = self.cmd("create");
                let pid_file = bundle.join(".init.pid");
                c.arg("--bundle")
                    .arg(bundle)
                    .arg("--pid-file")
                    .arg(&pid_file);
                if let Some(s) = &opts.console_socket {
                    c.arg("--console-socket").arg(s);
                }
                c.arg(id);
                let err = |e: std::io::Error| BackendError::Binary {
                    binary: bin.clone(),
                    verb: "create",
                    message: e.to_string(),
                };
                if let Some([i, o, e]) = opts.stdio {
                    c.stdin(stdio_of(i).map_err(err)?);
                    // The init keeps these; the binary's own errors share the stream.
                    c.stdout(stdio_of(o).map_err(err)?);
                    c.stderr(stdio_of(e).map_err(err)?);
                }
                let st = c.status().map_err(err)?;
                if !st.success() {
                    return Err(BackendError::Binary {
                        binary: bin,
                        verb: "create",
                        message: st.to_string(),
                    });
                }
                Self::read_pid(&pid_file, &bin, "create")
            }
        }
    }

    pub fn start(&self, id: &str) -> Result<(), BackendError> {
        match self {
            Backend::Lib(rt) => Ok(rt.start(id)?),
            Backend::Binary { .. } => {
                let (mut c, bin) = self.cmd("start");
                c.arg(id);
                self.run("start", c, bin)
            }
        }
    }

    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<(), BackendError> {
        match self {
            Backend::Lib(rt) => Ok(rt.kill(id, sig, all)?),
            Backend::Binary { .. } => {
                let (mut c, bin) = self.cmd("kill");
                if all {
                    c.arg("--all");
                }
                c.arg(id).arg(sig.to_string());
                self.run("kill", c, bin)
            }
        }
    }

    /// Freezes (`pause`) or thaws (`resume`) the container's processes.
    pub fn pause(&self, id: &str, paused: bool) -> Result<(), BackendError> {
        match self {
            Backend::Lib(rt) if paused => Ok(rt.pause(id)?),
            Backend::Lib(rt) => Ok(rt.resume(id)?),
            Backend::Binary { .. } => {
                let verb = if paused { "pause" } else { "resume" };
                let (mut c, bin) = self.cmd(verb);
                c.arg(id);
                self.run(verb, c, bin)
            }
        }
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<(), BackendError> {
        match self {
            Backend::Lib(rt) => Ok(rt.delete(id, force)?),
            Backend::Binary { .. } => {
                let (mut c, bin) = self.cmd("delete");
                if force {
                    c.arg("--force");
                }
                c.arg(id);
                self.run("delete", c, bin)
            }
        }
    }

    /// Runs `process` in the container; returns its host PID, a child of the shim.
    pub fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        opts: &ExecOptions,
        scratch: &Path,
    ) -> Result<i32, BackendError> {
        match self {
            Backend::Lib(rt) => {
                #[allow(unsafe_code)]
                // SAFETY: the shim is single-threaded (a poll loop, no threads: see main.rs).
                let pid = unsafe { rt.exec(id, process, opts) }?;
                Ok(pid)
            }
            Backend::Binary { .. } => {
                let (mut c, bin) = self.cmd("exec");
                let err = |e: String| BackendError::Binary {
                    binary: bin.clone(),
                    verb: "exec",
                    message: e,
                };
                let n = std::process::id();
                let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let pfile = scratch.join(format!(".exec-{n}-{seq}.json"));
                let pid_file = scratch.join(format!(".exec-{n}-{seq}.pid"));
                let json = serde_json::to_vec(process).map_err(|e| err(e.to_string()))?;
                std::fs::write(&pfile, json).map_err(|e| err(e.to_string()))?;
                c.arg("--detach")
                    .arg("--process")
                    .arg(&pfile)
                    .arg("--pid-file")
                    .arg(&pid_file);
                if let Some(s) = &opts.console_socket {
                    c.arg("--console-socket").arg(s);
                }
                c.arg(id);
                if let Some([i, o, e]) = opts.stdio {
                    c.stdin(stdio_of(i).map_err(|e| err(e.to_string()))?);
                    c.stdout(stdio_of(o).map_err(|e| err(e.to_string()))?);
                    c.stderr(stdio_of(e).map_err(|e| err(e.to_string()))?);
                } else {
                    c.stdin(Stdio::null()).stdout(Stdio::null());
                }
                let st = c.status();
                let _ = std::fs::remove_file(&pfile);
                let st = st.map_err(|e| err(e.to_string()))?;
                if !st.success() {
                    let _ = std::fs::remove_file(&pid_file);
                    return Err(err(st.to_string()));
                }
                Self::read_pid(&pid_file, &bin, "exec")
            }
        }
    }
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

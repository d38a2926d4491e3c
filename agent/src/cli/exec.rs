//! `berth exec [-i] [-t] NAME CMD…`: a process in a running container, started by its shim over
//! the control socket (berth-proto's client). With `-t` the shim hands back the pty master and
//! this process copies bytes both ways, passing its terminal's size at start and on SIGWINCH.
//! Runs in the `berth` process.

use super::containers::{EXIT_FAIL, EXIT_NOT_FOUND, Global, call, load_config};
use crate::api::Request;
use std::path::PathBuf;
use std::process::ExitCode;

/// The container's bundle directory (where its shim's control socket is).
pub(super) async fn bundle_dir(g: &Global, name: &str) -> PathBuf {
    let base = match call(g, Request::Info).await {
        Ok(v) => v["bundle_dir"].as_str().map(PathBuf::from),
        Err(_) => None,
    };
    base.unwrap_or_else(|| load_config(g).bundle_dir())
        .join(name)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn exec(
    g: &Global,
    name: &str,
    command: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    tty: bool,
    interactive: bool,
) -> ExitCode {
    use berth_proto::protocol::{ExecRequest, ShimClient};
    use std::os::fd::AsRawFd;
    if g.json && tty {
        eprintln!("berth: exec --json captures the command's output: it cannot have a terminal");
        return ExitCode::from(2);
    }
    let dir = bundle_dir(g, name).await;
    let mut c = match ShimClient::for_bundle(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {name} is not running ({e})");
            return ExitCode::from(EXIT_NOT_FOUND);
        }
    };
    let req = ExecRequest {
        args: command,
        env: exec_env(env, tty, std::env::var("TERM").ok()),
        cwd: workdir,
        user,
        tty,
        console_size: tty.then(client_console_size).flatten(),
    };
    let status = if tty {
        tokio::task::block_in_place(|| exec_tty(&mut c, &req))
    } else {
        let null = std::fs::File::open("/dev/null");
        let stdin = match (&null, interactive) {
            (_, true) => 0,
            (Ok(f), false) => f.as_raw_fd(),
            (Err(_), false) => 0,
        };
        if g.json {
            exec_captured(&mut c, &req, stdin)
        } else {
            c.exec(&req, [stdin, 1, 2]).and_then(|_| c.wait_exit())
        }
    };
    match status {
        Ok(s) => ExitCode::from(u8::try_from(s).unwrap_or(EXIT_FAIL)),
        Err(e) => {
            eprintln!("berth: exec in {name}: {e}");
            ExitCode::from(126)
        }
    }
}

/// The environment an exec asks for: with a terminal, `TERM` as Docker sets it (the client's
/// own, else `xterm`) unless the user gave one.
pub(crate) fn exec_env(
    mut env: Vec<String>,
    tty: bool,
    client_term: Option<String>,
) -> Vec<String> {
    if tty && !env.iter().any(|e| e.split('=').next() == Some("TERM")) {
        let term = client_term
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "xterm".into());
        env.push(format!("TERM={term}"));
    }
    env
}

/// The size of the client's terminal (stdin's, else stdout's).
fn client_console_size() -> Option<berth_proto::protocol::ConsoleSize> {
    use std::os::fd::AsFd;
    berth_proto::protocol::ConsoleSize::of_terminal(std::io::stdin().as_fd())
        .or_else(|| berth_proto::protocol::ConsoleSize::of_terminal(std::io::stdout().as_fd()))
}

/// Runs an exec with its output captured and prints `{"exit_code", "stdout", "stderr"}`.
fn exec_captured(
    c: &mut berth_proto::protocol::ShimClient,
    req: &berth_proto::protocol::ExecRequest,
    stdin: std::os::fd::RawFd,
) -> Result<i32, berth_proto::protocol::ClientError> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let pipe = || nix::unistd::pipe().map_err(std::io::Error::from);
    let ((out_r, out_w), (err_r, err_w)) = (pipe()?, pipe()?);
    c.exec(req, [stdin, out_w.as_raw_fd(), err_w.as_raw_fd()])?;
    // The process holds the write ends now: ours must go for its exit to end the reads.
    drop((out_w, err_w));
    let read_all = |fd: std::os::fd::OwnedFd| {
        let mut buf = Vec::new();
        let _ = std::fs::File::from(fd).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    };
    let stderr = std::thread::spawn(move || read_all(err_r));
    let stdout = read_all(out_r);
    let stderr = stderr.join().unwrap_or_default();
    let status = c.wait_exit()?;
    let v = serde_json::json!({"exit_code": status, "stdout": stdout, "stderr": stderr});
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(status)
}

/// Runs an exec with a terminal: this terminal raw, bytes copied both ways until the process ends.
/// The process starts with this terminal's size; every SIGWINCH sets the new size on the pty
/// master (the kernel then signals the process in the container).
fn exec_tty(
    c: &mut berth_proto::protocol::ShimClient,
    req: &berth_proto::protocol::ExecRequest,
) -> Result<i32, berth_proto::protocol::ClientError> {
    use nix::sys::termios;
    use std::io::Write;
    use std::os::fd::AsFd;
    // Registered before the exec starts, so no resize between the two is lost.
    let winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
    }
    let res = (|| {
        let (_pid, master) = c.exec_tty(req)?;
        if let Some(mut winch) = winch {
            let m = master.try_clone()?;
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(s) = client_console_size() {
                        let _ = s.set_on(m.as_fd());
                    }
                }
            });
        }
        let mut to_pty = std::fs::File::from(master.try_clone()?);
        let mut from_pty = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut inp = std::io::stdin().lock();
            while let Some(n) = read_retrying(&mut inp, &mut buf) {
                if to_pty.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (drained_tx, drained) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            while let Some(n) = read_retrying(&mut from_pty, &mut buf) {
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
            let _ = drained_tx.send(());
        });
        let status = c.wait_exit();
        // The process's last output may still sit in the pty when its exit is reported: copy it
        // out (the master reads EIO once no process holds the terminal), but do not hang on a
        // background process that inherited the terminal and lives on.
        let _ = drained.recv_timeout(OUTPUT_DRAIN);
        status
    })();
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, t);
    }
    res
}

/// How long an exec with a terminal waits, after its process exited, for the output still in the
/// pty.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// One read that a signal (SIGWINCH on every resize) does not end: `None` at end of file or on
/// an error.
fn read_retrying(r: &mut impl std::io::Read, buf: &mut [u8]) -> Option<usize> {
    loop {
        match r.read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_term_as_docker_sets_it() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            exec_env(v(&["A=1"]), true, Some("screen".into())),
            v(&["A=1", "TERM=screen"])
        );
        assert_eq!(exec_env(v(&[]), true, None), v(&["TERM=xterm"]));
        assert_eq!(
            exec_env(v(&[]), true, Some(String::new())),
            v(&["TERM=xterm"])
        );
        assert_eq!(
            exec_env(v(&["TERM=vt100"]), true, Some("screen".into())),
            v(&["TERM=vt100"])
        );
        assert_eq!(
            exec_env(v(&["A=1"]), false, Some("screen".into())),
            v(&["A=1"])
        );
    }
}

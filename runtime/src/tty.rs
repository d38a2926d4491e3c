//! `berth-runtime run` (and `exec --tty`) with a terminal and no `--console-socket`: like
//! runc, the runtime itself takes the pty master (over a console socket of its own) and copies
//! between it and its stdio until the container exits, forwarding signals and window size.
//! Single-threaded: poll over stdin, the master and a signalfd.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixListener;

use anyhow::{Context, Result};
use berth_runtime::{CreateOptions, Runtime};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::CreateArgs;

pub(crate) fn run(rt: &Runtime, a: &CreateArgs, opts: &CreateOptions, keep: bool) -> Result<u8> {
    std::fs::create_dir_all(rt.root()).context("creating the state directory")?;
    let sock = rt
        .root()
        .join(format!(".console-{}-{}.sock", a.id, std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    let mut opts = opts.clone();
    opts.console_socket = Some(sock.clone());
    let set = forwarded();
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    // The runtime connects before the clone and the init sends the master during set-up; the
    // connection waits in the listen backlog, so accepting afterwards is fine.
    let created = crate::create(rt, &a.id, &a.bundle, &opts);
    let _ = std::fs::remove_file(&sock);
    let result = created.context("berth-runtime run failed").and_then(|c| {
        let (conn, _) = listener
            .accept()
            .context("accepting the console connection")?;
        let master =
            berth_runtime::sys::recv_fd(conn.as_raw_fd()).context("receiving the pty master")?;
        rt.start(&a.id).context("berth-runtime run failed")?;
        copy_loop(std::fs::File::from(master), c.pid, &set)
    });
    // With --keep only a container whose process ran to its end stays (stopped).
    if !(keep && result.is_ok()) {
        let _ = rt.delete(&a.id, true);
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

/// `exec --tty` without `--console-socket`: the same proxy around an exec'd process.
pub(crate) fn exec(
    rt: &Runtime,
    id: &str,
    p: &oci_spec::runtime::Process,
    opts: &berth_runtime::ExecOptions,
) -> Result<u8> {
    std::fs::create_dir_all(rt.root()).context("creating the state directory")?;
    let sock = rt
        .root()
        .join(format!(".console-exec-{id}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    let mut opts = opts.clone();
    opts.console_socket = Some(sock.clone());
    let set = forwarded();
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    let pid = crate::exec(rt, id, p, &opts);
    let _ = std::fs::remove_file(&sock);
    let result = pid.context("berth-runtime exec failed").and_then(|pid| {
        let (conn, _) = listener
            .accept()
            .context("accepting the console connection")?;
        let master =
            berth_runtime::sys::recv_fd(conn.as_raw_fd()).context("receiving the pty master")?;
        copy_loop(std::fs::File::from(master), pid, &set)
    });
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    result
}

fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

fn copy_loop(mut master: std::fs::File, pid: i32, set: &SigSet) -> Result<u8> {
    let stdin = std::io::stdin();
    let stdin_fd = stdin.as_fd();
    let saved = termios::tcgetattr(stdin_fd).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin_fd, termios::SetArg::TCSANOW, &raw);
        copy_winsize(master.as_fd());
    }
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC)?;
    let pid = Pid::from_raw(pid);
    let mut stdin_open = true;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 8192];
    let code = loop {
        let mut fds = vec![
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            r => r?,
        };
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (m, s, i) = (ready(0), ready(1), ready(2));
        drop(fds);
        if m {
            match master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
                _ => {} // EIO once the slave side closed: the exit status comes by SIGCHLD
            }
        }
        if i {
            let mut inb = [0u8; 4096];
            match std::io::stdin().read(&mut inb) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => master.write_all(&inb[..n])?,
            }
        }
        if s && let Some(info) = sfd.read_signal()? {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGWINCH) => copy_winsize(master.as_fd()),
                Ok(Signal::SIGCHLD) => {}
                Ok(sig) => {
                    let _ = nix::sys::signal::kill(pid, sig);
                }
                Err(_) => {}
            }
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::Exited(_, c) => break c as u8,
            WaitStatus::Signaled(_, sig, _) => break 128 + sig as u8,
            _ => {}
        }
    };
    // What the program wrote last is still in the pty.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = out.flush();
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(stdin_fd, termios::SetArg::TCSANOW, t);
    }
    Ok(code)
}

fn copy_winsize(master: BorrowedFd<'_>) {
    if let Some((rows, cols)) = berth_runtime::sys::get_winsize(std::io::stdout().as_raw_fd()) {
        let _ = berth_runtime::sys::set_winsize(master.as_raw_fd(), rows, cols);
    }
}

//! `berth-runtime`: runc's command line over the runtime library (runs as its own process; the
//! container's init is cloned from it by `create`/`run` and outlives it after `create`).

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use berth_runtime::{CreateOptions, ExecOptions, Runtime};

mod cli;
mod logging;
mod tty;
use clap::Parser;
use cli::{Cli, Cmd, CreateArgs, Format, LogFormat};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormat::Text => berth_runtime::log::Format::Text,
        LogFormat::Json => berth_runtime::log::Format::Json,
    };
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        logging::write_line(berth_runtime::log::Level::Error, &e.to_string());
        return ExitCode::from(1);
    }
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            // runc's exec fails with 255, so that callers tell it from the process's own 1.
            ExitCode::from(if matches!(cli.cmd, Cmd::Exec { .. }) {
                255
            } else {
                1
            })
        }
    }
}

/// Reports an error as runc does: the last line of the log (the --log file, else stderr) and,
/// with --log, the bare message on stderr too.
fn report(e: &anyhow::Error) {
    let msg = format!("{e:#}");
    logging::write_line(berth_runtime::log::Level::Error, &msg);
    if logging::to_file() {
        eprintln!("{msg}");
    }
}

fn create_opts(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        stdio: None,
        cgroup_path: None,
        preserve_fds: a.preserve_fds,
        keep_notify_socket: false,
    }
}

fn dispatch(cli: &Cli) -> Result<u8> {
    let rt = Runtime::new(&cli.root);
    match &cli.cmd {
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let data = serde_json::to_string_pretty(&berth_runtime::spec::default_spec())?;
            std::fs::write(&path, data + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Cmd::Create(a) => {
            create(&rt, &a.id, &a.bundle, &create_opts(a))
                .context("berth-runtime create failed")?;
        }
        Cmd::Start { id } => rt.start(id)?,
        Cmd::State { id } => {
            println!("{}", serde_json::to_string_pretty(&rt.info(id)?)?);
        }
        Cmd::Kill { all, id, signal } => rt.kill(id, parse_signal(signal)?, *all)?,
        Cmd::Delete { force, id } => match rt.delete(id, *force) {
            Err(berth_runtime::Error::NotExist(_)) if *force => {}
            r => r?,
        },
        Cmd::Run {
            create,
            detach,
            keep,
        } => return run(&rt, create, *detach, *keep),
        Cmd::Exec {
            process,
            tty,
            detach,
            pid_file,
            console_socket,
            cwd,
            env,
            user,
            cap,
            no_new_privs,
            preserve_fds,
            additional_gids,
            cgroup,
            ignore_paused,
            id,
            command,
        } => {
            let p = match process {
                Some(f) => {
                    let data =
                        std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    process_file(&data).with_context(|| format!("parsing {}", f.display()))?
                }
                None => {
                    if command.is_empty() {
                        bail!("exec: no command given (args or --process)");
                    }
                    let c = berth_runtime::container::load(&rt, id)?;
                    let mut p = c.p.spec.process().clone().unwrap_or_default();
                    p.set_args(Some(command.clone()));
                    p.set_terminal(Some(*tty));
                    if let Some(cwd) = cwd {
                        p.set_cwd(cwd.clone());
                    }
                    let mut e = p.env().clone().unwrap_or_default();
                    e.extend(env.iter().cloned());
                    p.set_env(Some(e));
                    if let Some(u) = user {
                        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
                        let mut usr = p.user().clone();
                        usr.set_uid(uid.parse().context("--user uid")?);
                        usr.set_gid(gid.parse().context("--user gid")?);
                        p.set_user(usr);
                    }
                    if !cap.is_empty()
                        && let Some(mut caps) = p.capabilities().clone()
                    {
                        for c in cap {
                            let v: oci_spec::runtime::Capability =
                                serde_json::from_value(serde_json::Value::String(c.clone()))
                                    .with_context(|| format!("unknown capability {c}"))?;
                            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                                let mut s = s.clone().unwrap_or_default();
                                s.insert(v);
                                Some(s)
                            };
                            caps.set_bounding(add(caps.bounding()));
                            caps.set_effective(add(caps.effective()));
                            caps.set_permitted(add(caps.permitted()));
                        }
                        p.set_capabilities(Some(caps));
                    }
                    if *no_new_privs {
                        p.set_no_new_privileges(Some(true));
                    }
                    if !additional_gids.is_empty() {
                        let mut usr = p.user().clone();
                        usr.set_additional_gids(Some(additional_gids.clone()));
                        p.set_user(usr);
                    }
                    p
                }
            };
            let opts = ExecOptions {
                stdio: None,
                console_socket: console_socket.clone(),
                pid_file: pid_file.clone(),
                preserve_fds: *preserve_fds,
                detach: *detach,
                keep_notify_socket: false,
                ignore_paused: *ignore_paused,
                sub_cgroups: cgroup
                    .iter()
                    .map(|c| match c.split_once(':') {
                        Some((ctl, path)) => (Some(ctl.to_string()), path.to_string()),
                        None => (None, c.clone()),
                    })
                    .collect(),
            };
            if *detach {
                exec(&rt, id, &p, &opts).context("berth-runtime exec failed")?;
                return Ok(0);
            }
            if p.terminal() == Some(true) && opts.console_socket.is_none() {
                return tty::exec(&rt, id, &p, &opts);
            }
            let old = block_signals()?;
            let r = exec(&rt, id, &p, &opts).context("berth-runtime exec failed");
            let code = r.and_then(wait_forwarding);
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            return code;
        }
        Cmd::List { format, quiet } => list(&rt, *format, *quiet)?,
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, *format, id, ps_args)?,
        Cmd::Pause { id } => rt.pause(id)?,
        Cmd::Resume { id } => rt.resume(id)?,
        Cmd::Features => println!(
            "{}",
            serde_json::to_string_pretty(&berth_runtime::features::features())?
        ),
    }
    Ok(0)
}

/// A process file (`exec --process`): the spec's `process` object, where, as runc reads it,
/// `user` may be left out (root).
fn process_file(data: &[u8]) -> Result<oci_spec::runtime::Process> {
    let mut v: serde_json::Value = serde_json::from_slice(data)?;
    if let Some(o) = v.as_object_mut() {
        o.entry("user")
            .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
    }
    Ok(serde_json::from_value(v)?)
}

/// [`Runtime::create`] in this binary.
#[allow(unsafe_code)]
pub(crate) fn create(
    rt: &Runtime,
    id: &str,
    bundle: &std::path::Path,
    opts: &CreateOptions,
) -> berth_runtime::Result<berth_runtime::Created> {
    // SAFETY: berth-runtime is single-threaded: it starts no threads (and links nothing that
    // does), so the clone inside copies the only thread there is.
    unsafe { rt.create(id, bundle, opts) }
}

/// [`Runtime::exec`] in this binary.
#[allow(unsafe_code)]
pub(crate) fn exec(
    rt: &Runtime,
    id: &str,
    process: &oci_spec::runtime::Process,
    opts: &ExecOptions,
) -> berth_runtime::Result<i32> {
    // SAFETY: as in `create` above: the binary is single-threaded.
    unsafe { rt.exec(id, process, opts) }
}

fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow!("unknown signal {s:?}"))
}

const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Blocks the signals `run`/`exec` forward (the container process unblocks them before exec).
fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    Ok(old)
}

/// Waits for child `pid`, forwarding signals to it; returns its exit code (128+signal when
/// killed), as a shell would.
pub(crate) fn wait_forwarding(pid: i32) -> Result<u8> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    let pid = Pid::from_raw(pid);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::Exited(_, code) => {
                berth_runtime::debug!("process {pid} exited, status {code}");
                return Ok(code as u8);
            }
            WaitStatus::Signaled(_, sig, _) => {
                berth_runtime::debug!("process {pid} killed by {sig}");
                return Ok(128 + sig as u8);
            }
            _ => {}
        }
        let sig = set.wait()?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

fn run(rt: &Runtime, a: &CreateArgs, detach: bool, keep: bool) -> Result<u8> {
    if !detach && a.console_socket.is_none() && wants_terminal(&a.bundle) {
        return tty::run(rt, a, &create_opts(a), keep);
    }
    let old = if detach { None } else { Some(block_signals()?) };
    let created = create(rt, &a.id, &a.bundle, &create_opts(a)).context("berth-runtime run failed");
    let result = created.and_then(|c| {
        if let Err(e) = rt.start(&a.id) {
            let _ = rt.delete(&a.id, true);
            return Err(anyhow::Error::from(e).context("berth-runtime run failed"));
        }
        if detach {
            return Ok(0);
        }
        let code = wait_forwarding(c.pid);
        if !keep {
            let _ = rt.delete(&a.id, true);
        }
        code
    });
    if let Some(old) = old {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    }
    result
}

fn wants_terminal(bundle: &std::path::Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .is_some_and(|v| v["process"]["terminal"] == serde_json::Value::Bool(true))
}

fn list(rt: &Runtime, format: Format, quiet: bool) -> Result<()> {
    let all = rt.list()?;
    if quiet {
        for c in &all {
            println!("{}", c.id);
        }
        return Ok(());
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    let rows: Vec<[String; 6]> =
        std::iter::once(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from))
            .chain(all.iter().map(|c| {
                [
                    c.id.clone(),
                    c.pid.to_string(),
                    c.status.to_string(),
                    c.bundle.display().to_string(),
                    c.created.clone(),
                    if c.owner.is_empty() {
                        "root".into()
                    } else {
                        c.owner.clone()
                    },
                ]
            }))
            .collect();
    let mut widths = [12usize; 6];
    for r in &rows {
        for (i, f) in r.iter().enumerate() {
            widths[i] = widths[i].max(f.len() + 3);
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, f) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(f);
            } else {
                line.push_str(&format!("{f:<w$}", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

fn ps(rt: &Runtime, format: Format, id: &str, ps_args: &[String]) -> Result<()> {
    let pids = rt.pids(id)?;
    if format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!("ps: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    println!("{header}");
    for l in lines {
        if let Some(p) = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            && pids.contains(&p)
        {
            println!("{l}");
        }
    }
    Ok(())
}

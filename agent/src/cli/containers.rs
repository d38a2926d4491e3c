//! `berth ps|status|logs|exec|inspect|check|diff|restart|apply|rm`: the container commands of the
//! CLI. All but `check` and `logs` talk to berthd over its socket. Runs in the `berth` process.
//!
//! Exit codes: 0 success (for `diff`: nothing to do), 1 failure or invalid spec (for `diff`: changes
//! pending), 2 usage, 3 no such container, 4 berthd unreachable.

use crate::api::{ApiError, Client, ErrorKind, Request};
use crate::config::{Config, DEFAULT_CONFIG};
use crate::reconcile::status::{ContainerStatus, Phase};
use crate::spec;
use crate::systemd::ActiveState;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_FAIL: u8 = 1;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_UNREACHABLE: u8 = 4;

#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Print JSON instead of tables and text (`logs`: one journal entry per line; `exec`: the
    /// command's exit code and output).
    #[arg(long, global = true)]
    pub json: bool,
    /// berthd's settings file (for the socket, spec directory and journal).
    #[arg(long, global = true, env = "BERTH_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// berthd's API socket (default: from the settings file).
    #[arg(long, global = true, env = "BERTH_SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContainerCommand {
    /// List containers: state, image, why not running.
    Ps,
    /// A container's state, health, image digest, restarts and why it is not running (all without NAME).
    Status { name: Option<String> },
    /// A container's output, from the journal.
    Logs {
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// Only lines since this time (journalctl syntax: "10 min ago", "2024-05-01 12:00").
        #[arg(long)]
        since: Option<String>,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        tail: Option<u32>,
    },
    /// Run a command inside a running container.
    Exec {
        /// Keep stdin open.
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        /// Environment for the command (KEY=value, repeatable).
        #[arg(short, long)]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        /// uid[:gid] inside the container.
        #[arg(short, long)]
        user: Option<String>,
        name: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Everything berthd knows about a container (JSON).
    Inspect { name: String },
    /// Validate spec files without touching anything (default: every file in the spec directory).
    Check { files: Vec<PathBuf> },
    /// What reconcile would do now, per container.
    Diff,
    /// Restart a container (and run it again if it was held stopped).
    Restart { name: String },
    /// Stop a container and keep it stopped (across berthd restarts and reboots) until `start`.
    Stop { name: String },
    /// Run a container that `stop` held stopped.
    Start { name: String },
    /// Freeze a running container's processes (systemd's cgroup freezer) until `unpause`.
    Pause { name: String },
    /// Thaw a paused container.
    Unpause { name: String },
    /// Send a signal to a container's main process.
    Kill {
        name: String,
        /// A name (`HUP`, `SIGHUP`) or a number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
    },
    /// Create or replace a container managed through the API (kept under /var/lib/berth).
    Apply {
        /// Spec file; the container is named after it unless --name is given.
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove a container created with `apply`.
    Rm { name: String },
}

pub(super) fn load_config(g: &Global) -> Config {
    match Config::load(&g.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}; using defaults");
            Config::default()
        }
    }
}

pub(super) async fn call(g: &Global, req: Request) -> Result<Value, ApiError> {
    let socket = g.socket.clone().unwrap_or_else(|| load_config(g).socket);
    Client::connect(&socket).await?.call(&req).await
}

pub(super) fn api_exit(e: &ApiError) -> ExitCode {
    eprintln!("berth: {e}");
    ExitCode::from(match e {
        ApiError::Connect { .. } => EXIT_UNREACHABLE,
        ApiError::Remote {
            kind: ErrorKind::NotFound,
            ..
        } => EXIT_NOT_FOUND,
        _ => EXIT_FAIL,
    })
}

fn short(d: Option<&str>) -> String {
    d.map(|d| d.trim_start_matches("sha256:").chars().take(12).collect())
        .unwrap_or_else(|| "-".into())
}

fn phase_text(p: &Phase) -> String {
    match p {
        Phase::Pulling { percent: Some(n) } => format!("pulling {n}%"),
        Phase::Pulling { percent: None } => "pulling".into(),
        Phase::Waiting { on } => format!("waiting ({on})"),
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// Address and published ports (Docker's `ps` spelling), `-` when there are none.
fn net_text(n: Option<&berth_proto::NetworkStatus>) -> (String, String) {
    let Some(n) = n else {
        return ("-".into(), "-".into());
    };
    let ports: Vec<String> = n.ports.iter().map(|p| p.to_string()).collect();
    let ports = if ports.is_empty() {
        "-".into()
    } else {
        ports.join(", ")
    };
    let addr: Vec<String> = n.networks.iter().map(|a| a.address.to_string()).collect();
    (addr.join(","), ports)
}

fn print_table(rows: &[ContainerStatus]) {
    println!(
        "{:<24} {:<16} {:<22} {:<36} {:<14} {:<16} {:<24} MESSAGE",
        "NAME", "STATE", "UNIT", "IMAGE", "DIGEST", "ADDRESS", "PORTS"
    );
    for s in rows {
        let msg = s
            .message
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        let (addr, ports) = net_text(s.network.as_ref());
        println!(
            "{:<24} {:<16} {:<22} {:<36} {:<14} {:<16} {:<24} {}",
            s.name,
            phase_text(&s.phase),
            s.unit_state.as_deref().unwrap_or("-"),
            s.image.as_deref().unwrap_or("-"),
            short(s.image_digest.as_deref()),
            addr,
            ports,
            msg
        );
    }
}

/// The end of a command that changes something: quiet, or berthd's answer with `--json`.
fn done(g: &Global, r: Result<Value, ApiError>) -> ExitCode {
    match r {
        Ok(v) => {
            if g.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => api_exit(&e),
    }
}

/// `berth status`'s footer: the stale network state berthd removed lately (killed shims').
async fn print_sweeps(g: &Global) {
    let Ok(info) = call(g, Request::Info).await else {
        return;
    };
    let Some(list) = info["network_sweep"].as_array().filter(|l| !l.is_empty()) else {
        return;
    };
    println!("\nnetwork state removed lately (left by killed shims):");
    for r in list {
        let name = r["name"].as_str().filter(|n| !n.is_empty()).unwrap_or("-");
        let what: Vec<&str> = r["removed"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        println!(
            "  {name}: {} ({})",
            what.join(", "),
            r["why"].as_str().unwrap_or("")
        );
        for e in r["errors"].as_array().into_iter().flatten() {
            println!("    error: {}", e.as_str().unwrap_or(""));
        }
    }
}

pub async fn run(cmd: ContainerCommand, g: Global) -> ExitCode {
    match cmd {
        ContainerCommand::Ps | ContainerCommand::Status { name: None } => {
            let status = matches!(cmd, ContainerCommand::Status { .. });
            match call(&g, Request::Ps).await {
                Ok(v) => {
                    if g.json {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    } else {
                        let rows: Vec<ContainerStatus> =
                            serde_json::from_value(v).unwrap_or_default();
                        print_table(&rows);
                        if status {
                            print_sweeps(&g).await;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => api_exit(&e),
            }
        }
        ContainerCommand::Status { name: Some(name) } => {
            match call(&g, Request::Status { name: name.clone() }).await {
                Ok(mut v) => {
                    let dropped = super::journal::dropped_from(
                        &g,
                        v["unit"]["name"].as_str().unwrap_or_default(),
                        v["unit"]["invocation_id"].as_str().unwrap_or_default(),
                    )
                    .await;
                    if g.json {
                        v["journal_dropped"] = dropped.map_or(0, |d| d.lines).into();
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                        return ExitCode::SUCCESS;
                    }
                    let st: Option<ContainerStatus> =
                        serde_json::from_value(v["status"].clone()).ok();
                    let u = &v["unit"];
                    if let Some(s) = st {
                        println!("name:        {}", s.name);
                        println!("state:       {}", phase_text(&s.phase));
                        if let Some(m) = &s.message {
                            println!("why:         {m}");
                        }
                        println!("spec file:   {}", s.spec_file.as_deref().unwrap_or("-"));
                        println!("image:       {}", s.image.as_deref().unwrap_or("-"));
                        println!("digest:      {}", s.image_digest.as_deref().unwrap_or("-"));
                        println!("spec hash:   {}", s.spec_hash.as_deref().unwrap_or("-"));
                        if let Some(n) = &s.network {
                            for a in &n.networks {
                                println!(
                                    "network:     {} {} {}/{}",
                                    a.network, a.interface, a.address, a.prefix_len
                                );
                            }
                            let (_, ports) = net_text(s.network.as_ref());
                            println!("ports:       {ports}");
                        }
                        for p in v["network_problems"].as_array().into_iter().flatten() {
                            println!("problem:     {}", p.as_str().unwrap_or_default());
                        }
                        if let Some(d) = v["disk"].as_str() {
                            println!("problem:     {d}");
                        }
                        if let Some(x) = &s.last_exit {
                            println!("last exit:   {}", x.describe());
                        }
                    }
                    if u.is_object() {
                        let state = ActiveState::parse(u["active_state"].as_str().unwrap_or(""));
                        println!(
                            "unit:        {} ({}/{}, result {})",
                            u["name"].as_str().unwrap_or(""),
                            state,
                            u["sub_state"].as_str().unwrap_or(""),
                            u["result"].as_str().unwrap_or("")
                        );
                        if state.is_up() {
                            println!("main pid:    {}", u["main_pid"]);
                        }
                        match u["freezer_state"].as_str() {
                            Some(f @ ("frozen" | "freezing" | "thawing")) => {
                                println!("paused:      yes ({f}; `berth unpause` thaws it)");
                            }
                            _ if v["paused"] == true => {
                                println!(
                                    "paused:      yes (by its runtime; `berth unpause` thaws it)"
                                );
                            }
                            _ => {}
                        }
                        println!("restarts:    {}", u["n_restarts"]);
                        println!("main status: {}", u["exec_main_status"]);
                    } else {
                        println!("unit:        none");
                    }
                    if let Some(h) = health(&g, &name).await {
                        println!("health:      {h}");
                    }
                    if let Some(d) = dropped {
                        println!(
                            "log lines:   {} dropped by journald's rate limit since this start \
                             (raise `logging.options.rate-limit-burst`; `berth logs {name}` shows where)",
                            d.lines
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => api_exit(&e),
            }
        }
        ContainerCommand::Inspect { name } => match call(&g, Request::Inspect { name }).await {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => api_exit(&e),
        },
        ContainerCommand::Diff => match call(&g, Request::Diff).await {
            Ok(v) => {
                if g.json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                let mut changes = false;
                for (name, d) in v.as_object().into_iter().flatten() {
                    let action = d["action"].as_str().unwrap_or("?");
                    let reason = d["reason"].as_str().unwrap_or("");
                    let line = match action {
                        "nothing" => format!("  {name}: {reason}"),
                        "start" => {
                            format!("+ {name}: start ({}): {reason}", short(d["hash"].as_str()))
                        }
                        "restart" => format!(
                            "~ {name}: restart ({}): {reason}",
                            short(d["hash"].as_str())
                        ),
                        "replace" => format!(
                            "~ {name}: replace ({} -> {}): {reason}",
                            short(d["old_hash"].as_str()),
                            short(d["hash"].as_str())
                        ),
                        "stop" => format!("- {name}: stop and remove: {reason}"),
                        "hold" => format!("  {name}: held stopped: {reason}"),
                        "pull" => format!(
                            "+ {name}: pull {} ({reason}), then decide again",
                            d["image"].as_str().unwrap_or("")
                        ),
                        "wait" => format!(
                            "  {name}: waiting for {}: {reason}",
                            d["on"].as_str().unwrap_or("")
                        ),
                        "invalid" => format!(
                            "! {name}: invalid spec, left as it is: {}",
                            d["error"].as_str().unwrap_or("")
                        ),
                        _ => format!("! {name}: {}", d["error"].as_str().unwrap_or(action)),
                    };
                    changes |= !matches!(action, "nothing" | "wait");
                    if !g.json {
                        println!("{line}");
                    }
                }
                if changes {
                    ExitCode::from(EXIT_FAIL)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => api_exit(&e),
        },
        ContainerCommand::Restart { name } => done(&g, call(&g, Request::Restart { name }).await),
        ContainerCommand::Stop { name } => done(&g, call(&g, Request::Stop { name }).await),
        ContainerCommand::Start { name } => done(&g, call(&g, Request::Start { name }).await),
        ContainerCommand::Pause { name } => {
            done(&g, call(&g, Request::Pause { name, paused: true }).await)
        }
        ContainerCommand::Unpause { name } => done(
            &g,
            call(
                &g,
                Request::Pause {
                    name,
                    paused: false,
                },
            )
            .await,
        ),
        ContainerCommand::Kill { name, signal } => {
            done(&g, call(&g, Request::Kill { name, signal }).await)
        }
        ContainerCommand::Apply { file, name } => {
            let name = name
                .or_else(|| spec::name_of(&file).map(str::to_owned))
                .unwrap_or_default();
            let yaml = match std::fs::read_to_string(&file) {
                Ok(y) => y,
                Err(e) => {
                    eprintln!("berth: cannot read {}: {e}", file.display());
                    return ExitCode::from(EXIT_FAIL);
                }
            };
            let req = Request::Apply {
                name,
                yaml,
                stopped: false,
            };
            done(&g, call(&g, req).await)
        }
        ContainerCommand::Rm { name } => done(&g, call(&g, Request::Delete { name }).await),
        ContainerCommand::Check { files } => check(&g, files),
        ContainerCommand::Logs {
            name,
            follow,
            since,
            tail,
        } => logs(&g, &name, follow, since, tail).await,
        ContainerCommand::Exec {
            interactive,
            tty,
            env,
            workdir,
            user,
            name,
            command,
        } => super::exec::exec(&g, &name, command, env, workdir, user, tty, interactive).await,
    }
}

fn check(g: &Global, files: Vec<PathBuf>) -> ExitCode {
    let cfg = load_config(g);
    let declared = cfg.network_sources().load();
    let mut bad = 0;
    let mut report = Vec::new();
    // The whole directory: every network declaration is judged too.
    if files.is_empty() {
        for (name, problems) in &declared.problems {
            for p in problems {
                bad += 1;
                if !g.json {
                    eprintln!("{p}");
                }
                report.push(serde_json::json!({"network": name, "ok": false, "error": p}));
            }
        }
    }
    let files: Vec<PathBuf> = if files.is_empty() {
        match spec::load_dir(&cfg.spec_dir) {
            Ok(m) => m.into_values().map(|s| s.path).collect(),
            Err(e) => {
                eprintln!("berth: cannot read {}: {e}", cfg.spec_dir.display());
                return ExitCode::from(EXIT_FAIL);
            }
        }
    } else {
        files
    };
    let mut results: Vec<(&PathBuf, Result<spec::Spec, spec::SpecError>)> = files
        .iter()
        .map(|f| {
            let checked = spec::check_file(f).and_then(|s| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                crate::network::check_spec(f, &text, &s, &declared).map(|()| s)
            });
            (f, checked)
        })
        .collect();
    // A static address two specs ask for: an error on the later one.
    let names: Vec<String> = files
        .iter()
        .map(|f| spec::name_of(f).unwrap_or_default().to_owned())
        .collect();
    let clashes = crate::network::address_clashes(
        names
            .iter()
            .zip(&results)
            .filter_map(|(n, (_, r))| Some((n.as_str(), &r.as_ref().ok()?.networks))),
    );
    for (container, message) in clashes {
        if let Some(i) = names.iter().position(|n| *n == container) {
            let file = results[i].0.clone();
            results[i].1 = Err(spec::SpecError {
                file,
                line: None,
                column: None,
                message,
                hint: Some("give each container its own address, or none".into()),
            });
        }
    }
    for (f, checked) in &results {
        match checked {
            Ok(_) => {
                if !g.json {
                    println!("ok      {}", f.display());
                }
                report.push(serde_json::json!({"file": f, "ok": true}));
            }
            Err(e) => {
                bad += 1;
                if !g.json {
                    eprintln!("{e}");
                }
                report.push(serde_json::json!({"file": f, "ok": false, "error": e}));
            }
        }
    }
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if files.is_empty() {
        println!("no spec files");
    }
    if bad > 0 {
        ExitCode::from(EXIT_FAIL)
    } else {
        ExitCode::SUCCESS
    }
}

async fn logs(
    g: &Global,
    name: &str,
    follow: bool,
    since: Option<String>,
    tail: Option<u32>,
) -> ExitCode {
    let mut cmd = super::journal::journalctl(g).await;
    cmd.args([
        "-o",
        if g.json { "json" } else { "short-iso" },
        "-u",
        &crate::systemd::unit_name(name),
    ]);
    if follow {
        cmd.arg("-f");
    }
    if let Some(s) = since {
        cmd.arg("--since").arg(s);
    }
    if let Some(n) = tail {
        cmd.arg("-n").arg(n.to_string());
    }
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_FAIL),
        Err(e) => {
            eprintln!("berth: cannot run journalctl: {e}");
            ExitCode::from(EXIT_FAIL)
        }
    }
}

/// The shim's health report, when the container has a healthcheck and its shim answers.
async fn health(g: &Global, name: &str) -> Option<String> {
    let dir = super::exec::bundle_dir(g, name).await;
    let mut c = berth_proto::protocol::ShimClient::for_bundle(&dir).ok()?;
    let h = c.health().ok()?;
    let last = h
        .log
        .last()
        .map(|r| format!(", last check exit {}: {}", r.exit_code, r.output.trim()))
        .unwrap_or_default();
    Some(format!(
        "{} (failing streak {}{last})",
        h.status, h.failing_streak
    ))
}

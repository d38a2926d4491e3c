//! `berthd`: the agent daemon (thin: see `berth_agent::daemon`).
use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth's agent: runs the containers of a spec directory as systemd units"
)]
struct Args {
    /// Settings file.
    #[arg(long, env = "BERTHD_CONFIG", default_value = berth_agent::config::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Override `spec_dir`.
    #[arg(long)]
    spec_dir: Option<PathBuf>,
    /// Override `state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Override `run_dir`.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Override `socket`.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Override `systemd` (a D-Bus address, or `system`).
    #[arg(long)]
    systemd: Option<String>,
    /// Override `journal_dir`.
    #[arg(long)]
    journal_dir: Option<PathBuf>,
    /// Override `shim`.
    #[arg(long)]
    shim: Option<PathBuf>,
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Under systemd with a journal: structured fields go to journald unprefixed, among them the
    // `pass` span's CONTAINER= on every line of a pass (`journalctl -u berthd CONTAINER=web`).
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(j) = tracing_journald::layer()
    {
        let j = j.with_field_prefix(None);
        tracing_subscriber::registry().with(filter).with(j).init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let a = Args::parse();
    let mut cfg = berth_agent::config::Config::load(&a.config)?;
    if let Some(v) = a.spec_dir {
        cfg.spec_dir = v;
    }
    if let Some(v) = a.state_dir {
        cfg.state_dir = v;
    }
    if let Some(v) = a.run_dir {
        cfg.socket = v.join("berthd.sock");
        cfg.run_dir = v;
    }
    if let Some(v) = a.socket {
        cfg.socket = v;
    }
    if let Some(v) = a.systemd {
        cfg.systemd = v;
    }
    if let Some(v) = a.journal_dir {
        cfg.journal_dir = Some(v);
    }
    if let Some(v) = a.shim {
        cfg.shim = Some(v);
    }
    berth_agent::daemon::run(cfg).await.context("berthd")
}

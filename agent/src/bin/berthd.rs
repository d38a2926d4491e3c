//! `berthd`: the agent daemon (thin: see `berth_agent::daemon`).
use anyhow::Context;
use berth_agent::cli::berthd::DaemonArgs;
use clap::Parser;

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
    let a = DaemonArgs::parse();
    let cfg = berth_agent::config::Config::load(&a.config)?;
    if a.check_config {
        println!("ok      {}", a.config.display());
        return Ok(());
    }
    let cfg = a.apply(cfg);
    berth_agent::daemon::run(cfg).await.context("berthd")
}

//! `berth`: the command-line client.
use clap::Parser;

#[derive(Parser)]
#[command(name = "berth", version, about = "berth container host agent CLI")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    #[command(flatten)]
    Image(berth_agent::cli::image::ImageCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Image(c) => berth_agent::cli::image::run(c).await?,
    }
    Ok(())
}

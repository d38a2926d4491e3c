//! `berth`: the command-line client (thin: the commands live in `berth_agent::cli`).
use clap::{CommandFactory, Parser};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "berth", version, about = "berth container host agent CLI")]
struct Cli {
    #[command(flatten)]
    global: berth_agent::cli::containers::Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    #[command(flatten)]
    Containers(berth_agent::cli::containers::ContainerCommand),
    #[command(flatten)]
    Image(berth_agent::cli::image::ImageCommand),
    /// Writes shell completions and man pages of berth and berthd under DIR, laid out like
    /// `$PREFIX/share` (for installers and packages).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
    #[command(flatten)]
    Network(berth_agent::cli::network::NetworkCommand),
    /// Check the image store and berthd's state, and repair what is safe to repair (exit code:
    /// 0 clean, 1 repaired, 2 problems left).
    Fsck(berth_agent::cli::fsck::FsckArgs),
    #[command(flatten)]
    Events(berth_agent::cli::events::EventsCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Containers(c) => berth_agent::cli::containers::run(c, cli.global).await,
        Cmd::GenerateDocs { dir } => match berth_agent::cli::docs::generate(&dir, Cli::command()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Fsck(a) => berth_agent::cli::fsck::run(a, &cli.global),
        Cmd::Network(c) => berth_agent::cli::network::run(c, cli.global).await,
        Cmd::Events(c) => berth_agent::cli::events::run(c, cli.global).await,
        Cmd::Image(c) => match berth_agent::cli::image::run(c, cli.global.json).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

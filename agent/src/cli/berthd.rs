//! berthd's command line (in the library so that `berth generate-docs` can write its man page and
//! completions); parsed by the `berthd` binary.

use crate::config::Config;
use std::path::PathBuf;

/// With no flags berthd reads `/etc/berth/berthd.yaml` (all defaults when it is missing): what
/// `berthd.service` runs.
#[derive(clap::Parser)]
#[command(
    name = "berthd",
    version,
    about = "berth's agent: runs the containers of a spec directory as systemd units"
)]
pub struct DaemonArgs {
    /// Settings file.
    #[arg(long, env = "BERTHD_CONFIG", default_value = crate::config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Override `spec_dir`.
    #[arg(long)]
    pub spec_dir: Option<PathBuf>,
    /// Override `state_dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Override `run_dir`.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Override `socket`.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Override `systemd` (a D-Bus address, or `system`).
    #[arg(long)]
    pub systemd: Option<String>,
    /// Override `journal_dir`.
    #[arg(long)]
    pub journal_dir: Option<PathBuf>,
    /// Override `shim`.
    #[arg(long)]
    pub shim: Option<PathBuf>,
    /// Check the settings file and exit (0 when berthd would start with it).
    #[arg(long)]
    pub check_config: bool,
}

impl DaemonArgs {
    /// The settings file's values with the flags given on top.
    pub fn apply(self, mut cfg: Config) -> Config {
        if let Some(v) = self.spec_dir {
            cfg.spec_dir = v;
        }
        if let Some(v) = self.state_dir {
            cfg.state_dir = v;
        }
        if let Some(v) = self.run_dir {
            cfg.socket = v.join("berthd.sock");
            cfg.run_dir = v;
        }
        if let Some(v) = self.socket {
            cfg.socket = v;
        }
        if let Some(v) = self.systemd {
            cfg.systemd = v;
        }
        if let Some(v) = self.journal_dir {
            cfg.journal_dir = Some(v);
        }
        if let Some(v) = self.shim {
            cfg.shim = Some(v);
        }
        cfg
    }
}

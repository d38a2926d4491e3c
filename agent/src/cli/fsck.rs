//! `berth fsck`: checks and repairs the image store and berthd's state (the work is in
//! [`crate::fsck`]); runs in the `berth` process, with or without berthd running.

use super::containers::Global;
use crate::config::Config;
use crate::fsck::{self, Status};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// Only report what would be repaired.
    #[arg(long)]
    pub dry_run: bool,
    /// Override `state_dir` (the store and berthd's records).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Override `run_dir` (the bundles).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Override `spec_dir`.
    #[arg(long)]
    pub spec_dir: Option<PathBuf>,
}

/// Runs fsck; exit code 0 clean, 1 repaired (or would be), 2 problems left, 3 fsck itself failed.
pub fn run(args: FsckArgs, g: &Global) -> ExitCode {
    let mut cfg: Config = super::containers::load_config(g);
    if let Some(d) = args.state_dir {
        cfg.state_dir = d;
    }
    if let Some(d) = args.run_dir {
        cfg.run_dir = d;
    }
    if let Some(d) = args.spec_dir {
        cfg.spec_dir = d;
    }
    let report = match fsck::run(&fsck::Paths::from_config(&cfg), args.dry_run) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: fsck: {e}");
            return ExitCode::from(3);
        }
    };
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return ExitCode::from(report.exit_code());
    }
    let c = &report.checked;
    println!(
        "checked {} blobs, {} images, {} container records, {} bundles",
        c.blobs, c.images, c.containers, c.bundles
    );
    for f in &report.findings {
        let what = match f.status {
            Status::Repaired => "repaired",
            Status::WouldRepair => "would repair",
            Status::NotRepaired => "NOT repaired",
        };
        println!("{}: {}\n  {what}: {}", f.object, f.problem, f.action);
    }
    if report.findings.is_empty() {
        println!("clean");
    }
    ExitCode::from(report.exit_code())
}

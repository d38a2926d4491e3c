//! `berth-shim`: thin binary over the shim library; the main process of `berth-<name>.service`.

use clap::Parser;
use std::path::PathBuf;

/// berth's per-container monitor (started by systemd as a transient unit's ExecStart).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Bundle directory holding config.json and shim.json.
    #[arg(long)]
    bundle: PathBuf,
    /// The runtime's state directory.
    #[arg(long, default_value = "/run/berth/runtime")]
    root: PathBuf,
    /// Container id for the runtime (default: the name in shim.json).
    #[arg(long)]
    id: Option<String>,
    /// Where the cgroup hierarchies are mounted.
    #[arg(long, default_value = "/sys/fs/cgroup", hide = true)]
    cgroup_base: PathBuf,
    /// Drive this runc-compatible binary (runc, crun, berth-runtime) instead of the linked
    /// runtime library.
    #[arg(long)]
    runtime_binary: Option<PathBuf>,
}

fn main() {
    let a = Args::parse();
    let status = berth_shim::run(berth_shim::Options {
        bundle: a.bundle,
        root: a.root,
        id: a.id,
        cgroup_base: a.cgroup_base,
        runtime_binary: a.runtime_binary,
    });
    std::process::exit(status);
}

//! berth-runtime's command line: runc's commands, flags and defaults, as clap types (parsed in
//! the `berth-runtime` process; `main` carries them out).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc-compatible command line)"
)]
pub struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Log file for debug lines, warnings and the error (which stderr still gets); default stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log the runtime's steps (level=debug).
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility (berth drives cgroupfs directly).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility.
    #[arg(long, global = true)]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's PID to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Pass this many fds (from 3 on) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Container id.
    pub id: String,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Write a default config.json.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (or all its processes).
    Kill {
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once it started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container (stopped) after its process exits, instead of deleting it.
        #[arg(long)]
        keep: bool,
    },
    /// Run a process in a running container.
    Exec {
        /// A process.json (the spec's `process` object).
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Allocate a terminal (needs --console-socket).
        #[arg(short, long)]
        tty: bool,
        /// Return once it started.
        #[arg(short, long)]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Working directory.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Extra environment (KEY=VALUE).
        #[arg(short, long)]
        env: Vec<String>,
        /// uid[:gid].
        #[arg(short, long)]
        user: Option<String>,
        /// Extra capabilities.
        #[arg(short, long)]
        cap: Vec<String>,
        /// Set no_new_privs.
        #[arg(long = "no-new-privs")]
        no_new_privs: bool,
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        /// Additional gids of the process.
        #[arg(short = 'g', long = "additional-gids")]
        additional_gids: Vec<u32>,
        /// Run the process in an existing sub-cgroup: [CONTROLLER:]PATH (repeatable).
        #[arg(long)]
        cgroup: Vec<String>,
        /// Allow exec in a paused container.
        #[arg(long = "ignore-paused")]
        ignore_paused: bool,
        /// Command and arguments (without --process).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show a container's processes.
    Ps {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container.
    Pause { id: String },
    /// Thaw a container.
    Resume { id: String },
    /// Print what this runtime supports (JSON).
    Features,
}

//! The runtime library's error type (every process role): messages follow runc's where tools
//! match on them ("container does not exist", "container with id exists: ID").

use std::io;

/// Errors of the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container of that id under the state directory.
    #[error("container does not exist")]
    NotExist(String),
    /// `create` with an id already in use.
    #[error("container with given ID already exists")]
    Exists(String),
    /// An id that is empty, too long or has characters outside `[A-Za-z0-9_+.-]`.
    #[error("invalid container id format: {0}")]
    InvalidId(String),
    /// The operation does not fit the container's status (message as runc words it).
    #[error("{0}")]
    State(String),
    /// A part of the runtime spec this runtime does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An I/O operation failed on a named object.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, on which object.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A system call failed on a named object.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done, on which object.
        what: String,
        /// The cause.
        source: nix::Error,
    },
    /// The container's init (or an exec'd process) failed during set-up and said why; the
    /// message is its own (it names the object).
    #[error("{0}")]
    Init(String),
    /// The bundle (config.json, rootfs) is not usable.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The spec's namespaces do not make a plan.
    #[error(transparent)]
    Namespaces(#[from] crate::namespaces::NsError),
    /// A process's terminal could not be set up.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// The container's cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// A lifecycle hook failed (boxed: it carries the hook's output).
    #[error(transparent)]
    Hook(#[from] Box<crate::hooks::HookError>),
    /// Talking to a container process during its set-up failed (it exited, or hangs).
    #[error(transparent)]
    Channel(#[from] crate::process::channel::ChannelError),
    /// A process (the container's or an exec'd one) this runtime cannot run as given.
    #[error("invalid process: {0}")]
    InvalidProcess(&'static str),
    /// A container's `state.json` does not parse (or serialize).
    #[error("state file {path}: {source}")]
    StateFile {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The operation failed and so did the cleanup after it; the cause comes first.
    #[error("{cause} (cleanup also failed: {cleanup})")]
    Cleanup {
        /// The original error.
        cause: Box<Error>,
        /// The error of the cleanup that followed.
        cleanup: Box<Error>,
    },
}

impl From<crate::hooks::HookError> for Error {
    fn from(e: crate::hooks::HookError) -> Self {
        Error::Hook(Box::new(e))
    }
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// An [`Error::Sys`] with its context.
    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// Keeps `self` as the cause and records a failed cleanup beside it.
    pub fn with_cleanup(self, cleanup: Option<Error>) -> Self {
        match cleanup {
            None => self,
            Some(c) => Error::Cleanup {
                cause: Box::new(self),
                cleanup: Box::new(c),
            },
        }
    }
}

//! Containers as persisted under the state directory (skeleton).

use crate::{Error, Result, Runtime};

/// Status of a container, as `state` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for start.
    Created,
    /// Running the user's program.
    Running,
    /// Frozen.
    Paused,
    /// Stopped.
    Stopped,
}

/// A container's state plus runc's extra `state` fields.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// The OCI state.
    pub state: crate::State,
}

impl ContainerInfo {
    /// The OCI state.
    pub fn oci_state(&self) -> crate::State {
        self.state.clone()
    }
}

/// Loads container `id`.
pub fn load(_rt: &Runtime, id: &str) -> Result<Loaded> {
    Err(Error::NotExist(id.into()))
}

/// A loaded container.
pub struct Loaded;
impl Loaded {
    /// Info.
    pub fn info(&self) -> Result<ContainerInfo> {
        Err(Error::Unsupported("skeleton".into()))
    }
    /// Pids.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Err(Error::Unsupported("skeleton".into()))
    }
}

/// Lists containers.
pub fn list(_rt: &Runtime) -> Result<Vec<ContainerInfo>> {
    Ok(vec![])
}

macro_rules! stub {
    ($m:ident, $($f:ident($($a:ident: $t:ty),*) -> $r:ty),*) => {
        /// Skeleton.
        pub mod $m {
            use crate::*;
            $(
            /// Skeleton.
            pub fn $f($($a: $t),*) -> Result<$r> {
                $(let _ = $a;)*
                Err(Error::Unsupported("skeleton".into()))
            })*
        }
    };
}
stub!(create, create(rt: &Runtime, id: &str, bundle: &std::path::Path, opts: &CreateOptions) -> Created);
stub!(start, start(rt: &Runtime, id: &str) -> ());
stub!(kill, kill(rt: &Runtime, id: &str, sig: i32, all: bool) -> ());
stub!(delete, delete(rt: &Runtime, id: &str, force: bool) -> ());
stub!(exec, exec(rt: &Runtime, id: &str, p: &oci_spec::runtime::Process, o: &ExecOptions) -> i32);
stub!(pause, pause(rt: &Runtime, id: &str) -> (), resume(rt: &Runtime, id: &str) -> ());

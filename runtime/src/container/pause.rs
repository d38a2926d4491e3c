//! `pause` and `resume`: run in the runtime process; freeze and thaw the container's cgroup.

use super::{Status, load};
use crate::{Error, Result, Runtime};

/// See [`Runtime::pause`].
pub fn pause(rt: &Runtime, id: &str) -> Result<()> {
    let c = load(rt, id)?;
    match c.status() {
        Status::Running | Status::Created => {}
        s => return Err(Error::State(format!("container not running: {s}"))),
    }
    crate::debug!("container {id}: freezing its cgroup");
    c.p.cgroup.freeze(true).map_err(Error::from)
}

/// See [`Runtime::resume`].
pub fn resume(rt: &Runtime, id: &str) -> Result<()> {
    let c = load(rt, id)?;
    if c.status() != Status::Paused {
        return Err(Error::State("container not paused".into()));
    }
    crate::debug!("container {id}: thawing its cgroup");
    c.p.cgroup.freeze(false).map_err(Error::from)
}

//! The container's overlay root filesystem: mounted by the shim at the bundle's root path before
//! the runtime creates the container, unmounted after it is deleted. Runs in berth-shim (in the
//! host's mount namespace, the unit's).

use crate::config::OverlayRootfs;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("creating mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid overlay directory {0}: ':' and ',' cannot be passed to overlayfs")]
    BadPath(PathBuf),
    #[error("mounting overlay at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmounting {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// The overlayfs mount options: `lowerdir=top:…:bottom,upperdir=…,workdir=…`.
pub fn overlay_options(o: &OverlayRootfs) -> Result<String, RootfsError> {
    let check = |p: &Path| -> Result<String, RootfsError> {
        let s = p.to_string_lossy().into_owned();
        if s.contains(':') || s.contains(',') {
            return Err(RootfsError::BadPath(p.to_path_buf()));
        }
        Ok(s)
    };
    let lower: Result<Vec<String>, _> = o.lower.iter().map(|p| check(p)).collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower?.join(":"),
        check(&o.upper)?,
        check(&o.work)?
    ))
}

pub fn mount_overlay(o: &OverlayRootfs, target: &Path) -> Result<(), RootfsError> {
    let opts = overlay_options(o)?;
    std::fs::create_dir_all(target).map_err(|source| RootfsError::MountPoint {
        path: target.to_path_buf(),
        source,
    })?;
    // A shim killed before its clean-up (SIGKILL at TimeoutStopSec) left its overlay mounted:
    // take it (and anything stacked) down rather than mounting over it.
    for _ in 0..8 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        path: target.to_path_buf(),
        source,
    })
}

/// Unmounts; a busy mount (a process of ours still holds it) is detached instead.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    match umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => {
            umount2(target, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount {
                path: target.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(RootfsError::Unmount {
            path: target.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = OverlayRootfs {
            lower: vec!["/l/2".into(), "/l/1".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
        };
        assert_eq!(
            overlay_options(&o).unwrap(),
            "lowerdir=/l/2:/l/1,upperdir=/c/upper,workdir=/c/work"
        );
        let bad = OverlayRootfs {
            lower: vec!["/l/a:b".into()],
            ..o
        };
        assert!(overlay_options(&bad).is_err());
    }
}

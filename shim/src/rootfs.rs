//! The container's overlay root filesystem: mounted by the shim at the bundle's root path before
//! the runtime creates the container, unmounted after it is deleted. Runs in berth-shim (in the
//! host's mount namespace, the unit's).

use crate::sys;
use berth_proto::OverlayRootfs;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
    /// The new mount API, for lower dir lists too long for mount(2)'s one-page option string.
    #[error(
        "mounting overlay of {layers} layers at {path} (fsopen/fsconfig): {step}: {source}{log}{hint}"
    )]
    MountApi {
        path: PathBuf,
        layers: usize,
        step: String,
        #[source]
        source: std::io::Error,
        /// What the kernel logged on the filesystem context.
        log: String,
        hint: &'static str,
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
    // mount(2) copies at most one page of options (with its NUL): images of ~45 layers and more
    // need the new mount API, which takes the lower dirs one at a time.
    if opts.len() < page_size() {
        return mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|source| RootfsError::Mount {
            path: target.to_path_buf(),
            source,
        });
    }
    mount_overlay_fsconfig(o, target)
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(4096)
}

fn cstring(p: &Path) -> Result<CString, RootfsError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RootfsError::BadPath(p.to_path_buf()))
}

/// Mounts the overlay through fsopen/fsconfig/fsmount/move_mount, one `lowerdir+` per layer
/// (Linux 6.8+), topmost first as in `lowerdir=`.
fn mount_overlay_fsconfig(o: &OverlayRootfs, target: &Path) -> Result<(), RootfsError> {
    let fail = |step: String, fd: Option<&OwnedFd>, source: std::io::Error| {
        let hint = if step.starts_with("lowerdir+") && source.raw_os_error() == Some(libc::EINVAL) {
            " (an overlay of this many layers needs Linux 6.8 or later)"
        } else {
            ""
        };
        RootfsError::MountApi {
            path: target.to_path_buf(),
            layers: o.lower.len(),
            step,
            source,
            log: fd.map(context_log).unwrap_or_default(),
            hint,
        }
    };
    let fs = sys::fsopen(c"overlay").map_err(|e| fail("fsopen".into(), None, e))?;
    let set = |key: &CStr, p: &Path| {
        sys::fsconfig_set_string(fs.as_fd(), key, &cstring(p)?).map_err(|e| {
            fail(
                format!("{} {}", key.to_string_lossy(), p.display()),
                Some(&fs),
                e,
            )
        })
    };
    for l in &o.lower {
        set(c"lowerdir+", l)?;
    }
    set(c"upperdir", &o.upper)?;
    set(c"workdir", &o.work)?;
    sys::fsconfig_create(fs.as_fd()).map_err(|e| fail("creating".into(), Some(&fs), e))?;
    let mnt = sys::fsmount(fs.as_fd(), libc::MOUNT_ATTR_NODEV)
        .map_err(|e| fail("fsmount".into(), Some(&fs), e))?;
    cstring(target)?;
    berth_runtime::sys::move_mount_to(mnt.as_fd(), target)
        .map_err(|e| fail("move_mount".into(), None, e.into()))
}

/// The messages the kernel left on a filesystem context (`e overlay: …` lines), for errors.
fn context_log(fd: &OwnedFd) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 1024];
    // The context may hold a few messages; each read returns one, ENODATA when none are left.
    for _ in 0..8 {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(n) if n > 0 => {
                out.push_str("; kernel: ");
                out.push_str(String::from_utf8_lossy(&buf[..n]).trim());
            }
            _ => break,
        }
    }
    out
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

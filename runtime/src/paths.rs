//! Resolving paths from the runtime spec inside a container's root filesystem (runs in the
//! container's init, before pivot_root): symlinks in the rootfs are followed as the container
//! would see them (an absolute link is relative to the rootfs), and a path that would climb out
//! of the rootfs through `..` is refused.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Errors of [`resolve_in_root`].
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path (or a symlink on it) climbs above the root.
    #[error("{path}: the path or a symlink on it escapes the rootfs")]
    Escapes {
        /// The path as given.
        path: PathBuf,
    },
    /// Too many symlinks on the way (a loop).
    #[error("{path}: too many levels of symbolic links")]
    Loop {
        /// The path as given.
        path: PathBuf,
    },
    /// Reading the rootfs failed.
    #[error("{path}: {source}")]
    Io {
        /// The host path that could not be read.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

const MAX_SYMLINKS: usize = 40;

/// Resolves `unsafe_path` (as the container sees it) to a host path under `root`, following
/// symlinks that exist in the rootfs. Components that do not exist yet are kept as they are (the
/// caller creates them). Fails when a `..` (literal or from a symlink) would leave `root`.
pub fn resolve_in_root(root: &Path, unsafe_path: &Path) -> Result<PathBuf, PathError> {
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: Vec<OsString> = components(unsafe_path);
    todo.reverse();
    let mut links = 0usize;
    let escapes = || PathError::Escapes {
        path: unsafe_path.to_path_buf(),
    };
    while let Some(c) = todo.pop() {
        if c == ".." {
            if done.pop().is_none() {
                return Err(escapes());
            }
            continue;
        }
        let mut cur = root.to_path_buf();
        cur.extend(&done);
        cur.push(&c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(PathError::Loop {
                        path: unsafe_path.to_path_buf(),
                    });
                }
                let target = std::fs::read_link(&cur).map_err(|source| PathError::Io {
                    path: cur.clone(),
                    source,
                })?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut more = components(&target);
                more.reverse();
                todo.extend(more);
            }
            Ok(_) => done.push(c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => done.push(c),
            Err(source) => return Err(PathError::Io { path: cur, source }),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&done);
    Ok(out)
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn follows_links_inside_root_and_refuses_escapes() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("run")).unwrap();
        std::fs::create_dir_all(r.join("var")).unwrap();
        symlink("/run", r.join("var/run")).unwrap();
        symlink("../run/x", r.join("var/rel")).unwrap();
        symlink("../../../../etc", r.join("esc")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(r, "/var/run/a".as_ref()).unwrap(),
            r.join("run/a")
        );
        assert_eq!(
            resolve_in_root(r, "var/rel".as_ref()).unwrap(),
            r.join("run/x")
        );
        assert_eq!(
            resolve_in_root(r, "/new/dir".as_ref()).unwrap(),
            r.join("new/dir")
        );
        assert_eq!(resolve_in_root(r, "/a/../b".as_ref()).unwrap(), r.join("b"));
        assert!(matches!(
            resolve_in_root(r, "/esc".as_ref()),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            resolve_in_root(r, "/../x".as_ref()),
            Err(PathError::Escapes { .. })
        ));
        assert!(matches!(
            resolve_in_root(r, "/loop".as_ref()),
            Err(PathError::Loop { .. })
        ));
    }
}

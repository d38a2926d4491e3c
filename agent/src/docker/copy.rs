//! The filesystem side of `docker cp` and `docker export`: a container's root as berthd reaches
//! it (the overlay its shim mounted, or for a stopped container an overlay of its layers mounted
//! here for the copy), paths resolved inside that root with openat2(RESOLVE_IN_ROOT) so that no
//! symlink leads out of it, trees written as tar and tars extracted with the layer unpacker's
//! safe code. Runs in berthd, on blocking threads.

use crate::image::unpack::{Extract, UnpackError, unpack_at};
use berth_proto::OverlayRootfs;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{FileStat, Mode, fstatat};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("Could not find the file {0} in container")]
    NotFound(String),
    #[error("{path}: {source}")]
    Fs { path: String, source: Errno },
    #[error("mounting the root of the stopped container at {path}: {source}")]
    Mount { path: PathBuf, source: Errno },
    #[error("the root of the stopped container has layer paths overlayfs cannot take: {0}")]
    BadLayer(PathBuf),
    #[error("writing the archive: {0}")]
    Write(std::io::Error),
    #[error("extracting the archive: {0}")]
    Extract(#[from] UnpackError),
    #[error("extraction point {0} is not a directory")]
    NotADirectory(String),
}

/// A container's root directory for the length of one copy.
pub struct Root {
    pub dir: PathBuf,
    /// Mounted here for this copy: unmounted and removed on drop.
    temporary: bool,
}

impl Root {
    /// The overlay the running container's shim mounted at `<bundle>/rootfs`.
    pub fn running(bundle: &Path) -> Root {
        Root {
            dir: bundle.join("rootfs"),
            temporary: false,
        }
    }

    /// A bind mount's (or named volume's) host directory.
    pub fn bind(dir: PathBuf) -> Root {
        Root {
            dir,
            temporary: false,
        }
    }

    /// Whether `<bundle>/rootfs` is a mount (the running container's overlay) in berthd's view.
    pub fn is_mounted(bundle: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            std::fs::metadata(bundle),
            std::fs::metadata(bundle.join("rootfs")),
        ) {
            (Ok(b), Ok(r)) => b.dev() != r.dev(),
            _ => false,
        }
    }

    /// Mounts the stopped container's root at a new directory beside the bundles: read-only, its upper
    /// dir as the top layer (no work dir touched), or `writable` with its upper and work dirs.
    pub fn mount_stopped(
        bundle: &Path,
        o: &OverlayRootfs,
        writable: bool,
    ) -> Result<Root, CopyError> {
        let check = |p: &Path| {
            let s = p.to_string_lossy().into_owned();
            if s.contains([':', ',']) {
                Err(CopyError::BadLayer(p.to_owned()))
            } else {
                Ok(s)
            }
        };
        let lower: Vec<String> = o.lower.iter().map(|p| check(p)).collect::<Result<_, _>>()?;
        let opts = if writable {
            format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                check(&o.upper)?,
                check(&o.work)?
            )
        } else {
            format!("lowerdir={}:{}", check(&o.upper)?, lower.join(":"))
        };
        // Beside the bundles, not in one: a container never started has no bundle to make.
        let run_dir = bundle.parent().and_then(Path::parent).unwrap_or(bundle);
        let name = bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = unique(
            run_dir
                .join("copy")
                .join(format!("{name}-{}", std::process::id())),
        );
        std::fs::create_dir_all(&dir).map_err(|e| CopyError::Mount {
            path: dir.clone(),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        let flags = MsFlags::MS_NODEV
            | MsFlags::MS_NOSUID
            | if writable {
                MsFlags::empty()
            } else {
                MsFlags::MS_RDONLY
            };
        if let Err(source) = mount(
            Some("overlay"),
            &dir,
            Some("overlay"),
            flags,
            Some(opts.as_str()),
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(CopyError::Mount { path: dir, source });
        }
        Ok(Root {
            dir,
            temporary: true,
        })
    }
}

/// `base`, or `base.N` for the first N not taken (two copies at once each mount their own).
fn unique(base: PathBuf) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(format!("{}.{n}", base.display()))
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.temporary {
            if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
                tracing::warn!(dir = %self.dir.display(), "unmounting a copy's root: {e}");
            }
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

fn in_root(flags: OFlag) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    )
}

fn fs_err(path: &str) -> impl FnOnce(Errno) -> CopyError + '_ {
    move |e| match e {
        Errno::ENOENT => CopyError::NotFound(path.to_owned()),
        source => CopyError::Fs {
            path: path.to_owned(),
            source,
        },
    }
}

/// A path inside the container: the directory holding it (opened inside the root) and its last
/// component (`None`: the root itself). Symlinks in the directory part resolve inside the root;
/// the last component is never followed, as Docker's copy does not follow it.
pub struct Resolved {
    pub dir: OwnedFd,
    pub name: Option<OsString>,
}

pub fn resolve(root: &Path, path: &str) -> Result<Resolved, CopyError> {
    let rootfd = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fs_err(path))?;
    let comps: Vec<&[u8]> = path
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    // `dir/.` and `dir/` ask for the directory itself, through a symlink too.
    let follow_last = path.ends_with('/') || path.ends_with("/.");
    let Some((last, parent)) = comps.split_last() else {
        return Ok(Resolved {
            dir: rootfd,
            name: None,
        });
    };
    let join = |cs: &[&[u8]]| OsString::from(OsStr::from_bytes(&cs.join(&b'/')));
    if follow_last || *last == b".." {
        let dir = openat2(
            &rootfd,
            join(&comps).as_os_str(),
            in_root(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        )
        .map_err(fs_err(path))?;
        return Ok(Resolved { dir, name: None });
    }
    let dir = if parent.is_empty() {
        rootfd
    } else {
        openat2(
            &rootfd,
            join(parent).as_os_str(),
            in_root(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        )
        .map_err(fs_err(path))?
    };
    Ok(Resolved {
        dir,
        name: Some(OsStr::from_bytes(last).to_os_string()),
    })
}

impl Resolved {
    pub fn stat(&self, path: &str) -> Result<FileStat, CopyError> {
        let name = self.name.as_deref().unwrap_or(OsStr::new("."));
        fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fs_err(path))
    }

    pub fn link_target(&self) -> Option<OsString> {
        readlinkat(&self.dir, self.name.as_deref()?).ok()
    }

    /// The directory itself, to extract into.
    pub fn open_dir(self, path: &str) -> Result<OwnedFd, CopyError> {
        let Some(name) = &self.name else {
            return Ok(self.dir);
        };
        openat2(
            &self.dir,
            name.as_os_str(),
            in_root(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        )
        .map_err(|e| match e {
            Errno::ENOTDIR => CopyError::NotADirectory(path.to_owned()),
            e => fs_err(path)(e),
        })
    }
}

/// Docker's `X-Docker-Container-Path-Stat`: name, size, Go's FileMode bits, mtime, link target.
pub fn path_stat(name: &str, st: &FileStat, link: Option<&OsStr>) -> serde_json::Value {
    let kind = st.st_mode & libc::S_IFMT;
    let mut mode = st.st_mode & 0o777;
    for (bit, go) in [
        (libc::S_ISUID, 1u32 << 23),
        (libc::S_ISGID, 1 << 22),
        (libc::S_ISVTX, 1 << 20),
    ] {
        if st.st_mode & bit != 0 {
            mode |= go;
        }
    }
    mode |= match kind {
        libc::S_IFDIR => 1 << 31,
        libc::S_IFLNK => 1 << 27,
        libc::S_IFIFO => 1 << 25,
        libc::S_IFSOCK => 1 << 24,
        libc::S_IFBLK => 1 << 26,
        libc::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    let mtime = chrono::DateTime::from_timestamp(st.st_mtime, st.st_mtime_nsec as u32)
        .unwrap_or_default()
        .to_rfc3339();
    serde_json::json!({
        "name": name,
        "size": st.st_size,
        "mode": mode,
        "mtime": mtime,
        "linkTarget": link.map(|l| l.to_string_lossy().into_owned()).unwrap_or_default(),
    })
}

/// Writes `name` in `dir` (recursively for a directory) to `tar` as `as_name`, never following
/// a symlink.
pub fn write_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &OwnedFd,
    name: &OsStr,
    as_name: &Path,
) -> Result<(), CopyError> {
    let shown = as_name.display().to_string();
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fs_err(&shown))?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    let w = CopyError::Write;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => {
            let f = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fs_err(&shown))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            tar.append_data(&mut h, as_name, std::fs::File::from(f))
                .map_err(w)?;
        }
        libc::S_IFLNK => {
            let target = readlinkat(dir, name).map_err(fs_err(&shown))?;
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, as_name, Path::new(&target))
                .map_err(w)?;
        }
        libc::S_IFDIR => {
            h.set_entry_type(tar::EntryType::Directory);
            let label = if as_name.as_os_str().is_empty() {
                Path::new(".")
            } else {
                as_name
            };
            tar.append_data(&mut h, label, std::io::empty())
                .map_err(w)?;
            let sub = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fs_err(&shown))?;
            write_children(tar, &sub, as_name)?;
        }
        kind @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
            h.set_entry_type(match kind {
                libc::S_IFCHR => tar::EntryType::Char,
                libc::S_IFBLK => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            });
            h.set_device_major(libc::major(st.st_rdev)).map_err(w)?;
            h.set_device_minor(libc::minor(st.st_rdev)).map_err(w)?;
            tar.append_data(&mut h, as_name, std::io::empty())
                .map_err(w)?;
        }
        // Sockets have no place in an archive (Docker leaves them out too).
        _ => {}
    }
    Ok(())
}

/// Writes what the directory `dir` holds, each under `prefix`, in name order.
pub fn write_children<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &OwnedFd,
    prefix: &Path,
) -> Result<(), CopyError> {
    let shown = prefix.display().to_string();
    let mut d = nix::dir::Dir::from_fd(dir.try_clone().map_err(CopyError::Write)?)
        .map_err(fs_err(&shown))?;
    let mut names: Vec<OsString> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    for n in names {
        write_tree(tar, dir, &n, &prefix.join(&n))?;
    }
    Ok(())
}

/// Extracts `tar` into the directory `dir`: nothing can leave it, Docker's `noOverwriteDirNonDir`
/// when asked, the tar's owners unless `owner` is given.
pub fn extract(
    tar: impl std::io::Read,
    dir: &OwnedFd,
    keep_kinds: bool,
    owner: Option<(u64, u64)>,
) -> Result<(), CopyError> {
    unpack_at(
        tar,
        dir,
        Extract {
            layer: false,
            keep_kinds,
            owner,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root_and_trees_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("secret");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/sub/f"), b"inside").unwrap();
        std::fs::write(&outside, b"outside").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        // Through an absolute symlink: the root's /etc, not the host's.
        let r = resolve(&root, "/link/sub/f").unwrap();
        assert_eq!(r.stat("/link/sub/f").unwrap().st_size, 6);
        // `..` cannot climb out.
        let r = resolve(&root, "/up/secret");
        assert!(matches!(
            r.and_then(|r| r.stat("x").map(drop)),
            Err(CopyError::NotFound(_))
        ));
        // The last component is not followed: the link itself.
        let r = resolve(&root, "/link").unwrap();
        assert_eq!(r.link_target().unwrap(), "/etc");
        let s = path_stat(
            "link",
            &r.stat("/link").unwrap(),
            r.link_target().as_deref(),
        );
        assert_eq!(s["mode"].as_u64().unwrap() & (1 << 27), 1 << 27);

        let r = resolve(&root, "/etc").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        write_tree(&mut b, &r.dir, r.name.as_deref().unwrap(), Path::new("etc")).unwrap();
        let data = b.into_inner().unwrap();
        let dest = t.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let fd = resolve(&dest, "/").unwrap().open_dir("/").unwrap();
        extract(&data[..], &fd, true, None).unwrap();
        assert_eq!(std::fs::read(dest.join("etc/sub/f")).unwrap(), b"inside");
        // noOverwriteDirNonDir: a file where a directory is.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "etc/sub", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(extract(&data[..], &fd, true, None).is_err());
        extract(&data[..], &fd, false, None).unwrap();
        assert!(dest.join("etc/sub").is_file());
        // A file is not an extraction point.
        let e = resolve(&dest, "/etc/sub").unwrap().open_dir("/etc/sub");
        assert!(matches!(e, Err(CopyError::NotADirectory(_))));
    }
}

//! The container's root filesystem, set up by its init inside the new mount namespace: mount
//! propagation, the rootfs bind mount, the spec's mounts of every kind, device nodes and `/dev`
//! symlinks (all before pivot_root, while hooks can still see host paths), then pivot_root, and
//! after it masked paths, read-only paths and the read-only root. Every kernel call goes through
//! [`Syscall`], so the plan is unit-tested with the [`crate::syscall::Recorder`].

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use crate::mount_options::{parse_options, propagation_flag};
use crate::paths::{PathError, resolve_in_root};
use crate::syscall::Syscall;

mod binds;
mod devices;
mod shared;

/// Errors of the root filesystem set-up.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A mount(2) failed.
    #[error("error mounting {source_name:?} to rootfs at {dest:?}: {err}")]
    Mount {
        /// The mount's source (or type).
        source_name: String,
        /// The destination inside the container.
        dest: PathBuf,
        /// The cause.
        err: Errno,
    },
    /// A destination could not be resolved safely.
    #[error("mount destination {0}")]
    Path(#[from] PathError),
    /// Creating a mount point, device or link failed.
    #[error("{what} {path:?}: {err}")]
    Create {
        /// What was being created.
        what: &'static str,
        /// Where (inside the container).
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// pivot_root or the steps around it failed.
    #[error("pivot_root {rootfs:?}: {step}: {err}")]
    Pivot {
        /// The new root.
        rootfs: PathBuf,
        /// Which step.
        step: &'static str,
        /// The cause.
        err: Errno,
    },
    /// proc or sysfs on something that is not a directory (a symlink, say).
    #[error(
        "error mounting {fstype:?} to rootfs at {dest:?}: filesystem {fstype:?} must be mounted on ordinary directory"
    )]
    NotDirectory {
        /// The filesystem type.
        fstype: String,
        /// The destination inside the container.
        dest: PathBuf,
    },
    /// A mount option or propagation this runtime does not know.
    #[error("invalid mount {dest:?}: {why}")]
    Invalid {
        /// The destination.
        dest: PathBuf,
        /// Why.
        why: String,
    },
}

type Result<T> = std::result::Result<T, RootfsError>;

/// A cgroup hierarchy to show inside the container under the `cgroup` mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// Directory name under the mount (`memory`, `cpu,cpuacct`, `systemd`, `unified`); empty for
    /// a pure cgroup v2 host, where the mount itself is the hierarchy.
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
}

/// What the root filesystem set-up needs besides the spec.
pub struct RootfsContext<'a> {
    /// The kernel.
    pub sys: &'a dyn Syscall,
    /// The bundle directory (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// The rootfs, absolute host path.
    pub rootfs: &'a Path,
    /// The container's spec.
    pub spec: &'a Spec,
    /// The init is in a new user namespace: device nodes are bind mounted from the host
    /// instead of created.
    pub in_user_ns: bool,
    /// The container's cgroup directories, for `cgroup` mounts.
    pub cgroups: &'a [CgroupMount],
    /// Bind mount sources the runtime opened before the init entered its user namespace, by
    /// mount index (see [`open_bind_sources`]); empty without one.
    pub bind_sources: &'a [Option<OwnedFd>],
}

/// Clones (open_tree) the source of every bind mount of `spec` into a detached mount tree, by
/// mount index. The runtime does it before the clone when the container gets a user namespace:
/// the container's root may not be able to reach a source (a directory under a 0700 one of the
/// host's root), which runc mounts all the same. A source that cannot be cloned gets None, and
/// the init reports it as before.
pub fn open_bind_sources(spec: &Spec, bundle: &Path) -> Vec<Option<OwnedFd>> {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let opts = parse_options(m.options().as_deref().unwrap_or_default());
            if m.typ().as_deref() != Some("bind") && !opts.flags.contains(MsFlags::MS_BIND) {
                return None;
            }
            let src = bind_source(m, bundle);
            crate::sys::open_tree_clone(&src, opts.flags.contains(MsFlags::MS_REC)).ok()
        })
        .collect()
}

/// A bind mount's source on the host (relative ones are relative to the bundle).
fn bind_source(m: &Mount, bundle: &Path) -> PathBuf {
    let src = m.source().clone().unwrap_or_default();
    if src.is_absolute() {
        src
    } else {
        bundle.join(src)
    }
}

impl RootfsContext<'_> {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        self.sys
            .mount(source, target, fstype, flags, data)
            .map_err(|err| RootfsError::Mount {
                source_name: source
                    .map(|s| s.display().to_string())
                    .or(fstype.map(str::to_string))
                    .unwrap_or_default(),
                dest: self.inside(target),
                err,
            })
    }

    fn inside(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(self.rootfs) {
            Ok(r) => Path::new("/").join(r),
            Err(_) => host.to_path_buf(),
        }
    }

    fn mkdir(&self, p: &Path) -> Result<()> {
        self.sys
            .mkdir_all(p, 0o755)
            .map_err(|err| RootfsError::Create {
                what: "creating mount point",
                path: self.inside(p),
                err,
            })
    }

    /// Everything before pivot_root: propagation of `/`, the rootfs bind mount, the spec's mounts,
    /// devices and `/dev` links.
    pub fn prepare(&self) -> Result<()> {
        let linux = self.spec.linux().as_ref();
        // Nothing mounted from here on may propagate back to the host: make the whole tree a
        // slave (or what rootfsPropagation asks) before the first mount.
        let prop = linux
            .and_then(|l| l.rootfs_propagation().as_deref())
            .unwrap_or("");
        let root_flag = if prop.is_empty() {
            MsFlags::MS_SLAVE | MsFlags::MS_REC
        } else {
            let f = propagation_flag(prop).ok_or_else(|| RootfsError::Invalid {
                dest: "/".into(),
                why: format!("unknown rootfsPropagation {prop:?}"),
            })?;
            // The root's own mount must not be shared for pivot_root; shared is applied to the
            // new root after the pivot instead.
            if f.contains(MsFlags::MS_SHARED) {
                MsFlags::MS_SLAVE | MsFlags::MS_REC
            } else {
                f
            }
        };
        self.mount(None, Path::new("/"), None, root_flag, None)?;
        // pivot_root needs the new root to be a mount point.
        self.mount(
            Some(self.rootfs),
            self.rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        for (i, m) in self
            .spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            self.mount_one(i, m)?;
        }
        self.create_devices()?;
        self.dev_symlinks()?;
        Ok(())
    }

    fn mount_one(&self, index: usize, m: &Mount) -> Result<()> {
        let dest = resolve_in_root(self.rootfs, m.destination())?;
        let mut opts = parse_options(m.options().as_deref().unwrap_or_default());
        let typ = m.typ().as_deref().unwrap_or("none");
        let bind = typ == "bind" || opts.flags.contains(MsFlags::MS_BIND);
        if (bind || typ == "cgroup" || typ == "cgroup2") && !opts.data.is_empty() {
            // The kernel would ignore them: refuse rather than silently not do what was asked.
            return Err(RootfsError::Invalid {
                dest: m.destination().clone(),
                why: format!("unknown mount option(s) {:?}", opts.data),
            });
        }
        if opts.tmpcopyup && typ != "tmpfs" {
            return Err(RootfsError::Invalid {
                dest: m.destination().clone(),
                why: "tmpcopyup is for tmpfs mounts only".into(),
            });
        }
        if typ == "proc" || typ == "sysfs" {
            self.ordinary_directory(m, typ, &dest)?;
        }
        // /dev is made read-only only once populated (devices, links, console): see `finish`.
        if is_dev(m) {
            opts.flags -= MsFlags::MS_RDONLY;
        }
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        if bind {
            self.bind_mount(index, m, &dest, &opts)?;
        } else if typ == "cgroup" || typ == "cgroup2" {
            self.mount_cgroup(&dest, opts.flags)?;
        } else {
            self.mkdir(&dest)?;
            let source = m.source().clone().unwrap_or_else(|| typ.into());
            let below = if opts.tmpcopyup {
                Some(
                    self.sys
                        .open_dir(&dest)
                        .map_err(|err| RootfsError::Create {
                            what: "opening the directory below tmpcopyup mount",
                            path: m.destination().clone(),
                            err,
                        })?,
                )
            } else {
                None
            };
            let r = self.mount(Some(&source), &dest, Some(typ), opts.flags, data);
            if r.is_ok()
                && let Some(below) = below
            {
                self.sys
                    .copy_tree(below, &dest)
                    .map_err(|err| RootfsError::Create {
                        what: "copying up into tmpfs",
                        path: m.destination().clone(),
                        err,
                    })?;
            }
            match r {
                // sysfs cannot be mounted from a user namespace that does not own the network
                // namespace: show the host's, read-only, as runc does.
                Err(RootfsError::Mount {
                    err: Errno::EPERM, ..
                }) if typ == "sysfs" => {
                    let sys = Path::new("/sys");
                    self.mount(
                        Some(sys),
                        &dest,
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )?;
                    self.mount(
                        Some(sys),
                        &dest,
                        None,
                        MsFlags::MS_BIND
                            | MsFlags::MS_REMOUNT
                            | MsFlags::MS_RDONLY
                            | (opts.flags & locked_flags()),
                        None,
                    )?;
                }
                r => r?,
            }
        }
        for p in &opts.propagation {
            self.mount(None, &dest, None, *p, None)?;
        }
        if opts.rec_set != 0 || opts.rec_clr != 0 {
            self.sys
                .mount_setattr_recursive(&dest, opts.rec_set, opts.rec_clr)
                .map_err(|err| RootfsError::Mount {
                    source_name: "mount_setattr".into(),
                    dest: m.destination().clone(),
                    err,
                })?;
        }
        Ok(())
    }

    /// proc and sysfs go on a directory, never through a symlink (which would put them where
    /// the image's link points: runc refuses the same way).
    fn ordinary_directory(&self, m: &Mount, typ: &str, dest: &Path) -> Result<()> {
        // `dest` is resolved, so check the path as written: its last component must not be a
        // link, whatever its parents are.
        let literal = match m.destination().parent() {
            Some(parent) => resolve_in_root(self.rootfs, parent)?
                .join(m.destination().file_name().unwrap_or_default()),
            None => dest.to_path_buf(),
        };
        match std::fs::symlink_metadata(&literal) {
            Ok(md) if !md.is_dir() => Err(RootfsError::NotDirectory {
                fstype: typ.to_string(),
                dest: m.destination().clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The error of one step of making the rootfs the root (pivot_root or chroot).
    fn pivot_err(&self, step: &'static str) -> impl FnOnce(Errno) -> RootfsError + '_ {
        move |err| RootfsError::Pivot {
            rootfs: self.rootfs.to_path_buf(),
            step,
            err,
        }
    }

    /// Makes the rootfs the root: pivot_root(".", ".") stacks the old root on top of the new
    /// one, which is then lazily unmounted (after making it a slave so that the unmount does not
    /// propagate to the host), so no directory for the old root is needed.
    pub fn pivot(&self) -> Result<()> {
        let err = |step| self.pivot_err(step);
        self.sys.chdir(self.rootfs).map_err(err("chdir"))?;
        self.sys
            .pivot_root(Path::new("."), Path::new("."))
            .map_err(err("pivot_root"))?;
        self.sys
            .mount(
                None,
                Path::new("."),
                None,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None,
            )
            .map_err(err("make old root a slave"))?;
        self.sys
            .umount2(Path::new("."), MntFlags::MNT_DETACH)
            .map_err(err("unmount old root"))?;
        self.sys.chdir(Path::new("/")).map_err(err("chdir /"))?;
        Ok(())
    }

    /// After pivot_root: a read-only /dev, rootfsPropagation, read-only and masked paths, the
    /// read-only root.
    pub fn finish(&self) -> Result<()> {
        let linux = self.spec.linux().as_ref();
        let dev_flags = self
            .spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|m| is_dev(m))
            .map(|m| parse_options(m.options().as_deref().unwrap_or_default()).flags)
            .next_back();
        if let Some(f) = dev_flags.filter(|f| f.contains(MsFlags::MS_RDONLY)) {
            // A bind remount with the mount's own flags, as runc does: it changes only this
            // mount (never a bind-mounted host /dev's superblock) and works in a user namespace.
            let keep = f - (MsFlags::MS_REC | MsFlags::MS_REMOUNT);
            self.remount_bind(Path::new("/dev"), Path::new("/dev"), keep)?;
        }
        if let Some(p) = linux.and_then(|l| l.rootfs_propagation().as_deref())
            && let Some(f) = propagation_flag(p)
        {
            self.mount(None, Path::new("/"), None, f, None)?;
        }
        for p in linux
            .and_then(|l| l.readonly_paths().as_deref())
            .unwrap_or_default()
        {
            let p = Path::new(p);
            if std::fs::symlink_metadata(p).is_err() {
                continue;
            }
            self.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
            let cur = self.sys.mount_flags_of(p).unwrap_or(MsFlags::empty());
            self.mount(
                Some(p),
                p,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | cur,
                None,
            )?;
        }
        for p in linux
            .and_then(|l| l.masked_paths().as_deref())
            .unwrap_or_default()
        {
            let p = Path::new(p);
            match std::fs::metadata(p) {
                Err(_) => continue,
                Ok(m) if m.is_dir() => self.mount(
                    Some(Path::new("tmpfs")),
                    p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None,
                )?,
                Ok(_) => self.mount(
                    Some(Path::new("/dev/null")),
                    p,
                    None,
                    MsFlags::MS_BIND,
                    None,
                )?,
            }
        }
        if self
            .spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false)
        {
            let cur = self
                .sys
                .mount_flags_of(Path::new("/"))
                .unwrap_or(MsFlags::empty());
            self.mount(
                None,
                Path::new("/"),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | cur,
                None,
            )?;
        }
        Ok(())
    }
}

/// runc's rule for bind mounts into /proc (`dest` as the container sees it, resolved): over
/// /proc itself only a procfs (`src_is_proc`), below it only the files lxcfs emulates; anything
/// else could cover or replace the kernel's files (CVE-2019-16884 and its kind).
pub fn proc_bind_refusal(dest: &Path, src_is_proc: impl FnOnce() -> bool) -> Option<String> {
    const LXCFS: [&str; 10] = [
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
    ];
    if dest == Path::new("/proc") {
        return (!src_is_proc())
            .then(|| format!("{dest:?} cannot be mounted because it is not of type proc"));
    }
    if !dest.starts_with("/proc") || LXCFS.iter().any(|p| dest == Path::new(p)) {
        return None;
    }
    Some(format!(
        "{dest:?} cannot be mounted because it is inside /proc"
    ))
}

/// Whether `m` mounts /dev itself.
fn is_dev(m: &Mount) -> bool {
    let d = m.destination();
    d.components()
        .filter(|c| {
            !matches!(
                c,
                std::path::Component::RootDir | std::path::Component::CurDir
            )
        })
        .count()
        == 1
        && d.ends_with("dev")
}

fn locked_flags() -> MsFlags {
    MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOATIME
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
}

#[cfg(test)]
mod tests;

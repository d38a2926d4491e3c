//! Bind mounts and cgroup mounts of the spec (run in the container's init, before pivot_root):
//! a bind's source is the host path or, with a user namespace, the tree the runtime cloned
//! before the clone; its options are applied by a remount, as the kernel ignores them on the
//! bind itself.

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::Mount;

use super::{Result, RootfsContext, RootfsError, bind_source, locked_flags, proc_bind_refusal};
use crate::mount_options::MountOptions;

impl RootfsContext<'_> {
    pub(super) fn bind_mount(
        &self,
        index: usize,
        m: &Mount,
        dest: &Path,
        opts: &MountOptions,
    ) -> Result<()> {
        let src = bind_source(m, self.bundle);
        let opened = self.bind_sources.get(index).and_then(Option::as_ref);
        let meta = match opened {
            Some(fd) => nix::sys::stat::fstat(fd).map(|st| {
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
            }),
            None => std::fs::metadata(&src)
                .map(|m| m.is_dir())
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
        };
        let is_dir = meta.map_err(|err| RootfsError::Create {
            what: "bind mount source",
            path: src.clone(),
            err: err.into(),
        })?;
        if let Some(why) = proc_bind_refusal(&self.inside(dest), || {
            let fs = match opened {
                Some(fd) => nix::sys::statfs::fstatfs(fd),
                None => nix::sys::statfs::statfs(&src),
            };
            fs.is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
        }) {
            return Err(RootfsError::Invalid {
                dest: m.destination().clone(),
                why,
            });
        }
        if is_dir {
            self.mkdir(dest)?;
        } else {
            if let Some(parent) = dest.parent() {
                self.mkdir(parent)?;
            }
            self.sys.touch(dest).map_err(|err| RootfsError::Create {
                what: "creating mount point",
                path: self.inside(dest),
                err,
            })?;
        }
        let bind = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        match opened {
            // Attaching the tree cloned by the runtime needs no access to the source path.
            Some(tree) => {
                self.sys
                    .move_mount(tree.as_fd(), dest)
                    .map_err(|err| RootfsError::Mount {
                        source_name: src.display().to_string(),
                        dest: self.inside(dest),
                        err,
                    })?
            }
            None => self.mount(Some(&src), dest, None, bind, None)?,
        }
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            self.remount_bind(&src, dest, extra)?;
        }
        Ok(())
    }

    /// A bind remount with `flags`; when the kernel refuses because the mount has locked
    /// flags (a user namespace), retries keeping them.
    pub(super) fn remount_bind(&self, src: &Path, dest: &Path, flags: MsFlags) -> Result<()> {
        let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        match self.mount(Some(src), dest, None, base | flags, None) {
            Err(RootfsError::Mount {
                err: Errno::EPERM, ..
            }) => {
                let cur = self.sys.mount_flags_of(dest).unwrap_or(MsFlags::empty());
                self.mount(
                    Some(src),
                    dest,
                    None,
                    base | flags | (cur & locked_flags()),
                    None,
                )
            }
            r => r,
        }
    }

    pub(super) fn mount_cgroup(&self, dest: &Path, flags: MsFlags) -> Result<()> {
        self.mkdir(dest)?;
        let bind_flags = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if let [only] = self.cgroups
            && only.name.is_empty()
        {
            // cgroup v2: the container's own cgroup directory is the whole hierarchy.
            self.mount(
                Some(&only.host_dir),
                dest,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            return self.remount_bind(&only.host_dir, dest, flags - MsFlags::MS_REC);
        }
        // cgroup v1: a tmpfs with one directory per hierarchy, each the container's own cgroup
        // bind mounted from the host (the container sees its cgroup as the hierarchy's root).
        self.mount(
            Some(Path::new("tmpfs")),
            dest,
            Some("tmpfs"),
            bind_flags,
            Some("mode=755"),
        )?;
        for cg in self.cgroups {
            let d = dest.join(&cg.name);
            self.mkdir(&d)?;
            self.mount(
                Some(&cg.host_dir),
                &d,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            self.remount_bind(&cg.host_dir, &d, bind_flags | (flags & MsFlags::MS_RDONLY))?;
            if cg.name.contains(',') {
                for part in cg.name.split(',') {
                    let link = dest.join(part);
                    let _ = self.sys.symlink(Path::new(&cg.name), &link);
                }
            }
        }
        if flags.contains(MsFlags::MS_RDONLY) {
            self.mount(
                Some(Path::new("tmpfs")),
                dest,
                Some("tmpfs"),
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | bind_flags,
                Some("mode=755"),
            )?;
        }
        Ok(())
    }
}

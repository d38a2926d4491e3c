//! A container without a mount namespace of its own (runs in its init): it shares the caller's
//! mounts, so nothing is mounted and the init chroots into the rootfs.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::{Result, RootfsContext, RootfsError};

impl RootfsContext<'_> {
    /// Without a mount namespace of its own the container shares the caller's mounts (the
    /// spec allows it; runc runs it). Nothing may be mounted then, as it would land in the
    /// caller's namespace and outlive the container (runc mounts there regardless; berth
    /// refuses): checks that the spec asks for no mount, and gives runc's message for the
    /// combinations it refuses too.
    pub fn check_shared(spec: &Spec) -> Result<()> {
        let linux = spec.linux().as_ref();
        let refuse = |why: &str| {
            Err(RootfsError::Invalid {
                dest: "/".into(),
                why: why.into(),
            })
        };
        if linux.is_some_and(|l| {
            l.masked_paths().as_ref().is_some_and(|p| !p.is_empty())
                || l.readonly_paths().as_ref().is_some_and(|p| !p.is_empty())
        }) {
            return refuse("unable to restrict sys entries without a private MNT namespace");
        }
        if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
            return refuse("mounts need a private mount namespace");
        }
        if linux.is_some_and(|l| {
            l.rootfs_propagation()
                .as_ref()
                .is_some_and(|p| !p.is_empty())
        }) {
            return refuse("rootfsPropagation needs a private mount namespace");
        }
        if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
            return refuse("a read-only root needs a private mount namespace");
        }
        Ok(())
    }

    /// The shared-mount-namespace counterpart of [`Self::prepare`]: device nodes and `/dev`
    /// links in the rootfs (files, as runc makes them), no mount.
    pub fn prepare_shared(&self) -> Result<()> {
        self.create_devices()?;
        self.dev_symlinks()
    }

    /// The shared-mount-namespace counterpart of [`Self::pivot`]: chroot into the rootfs.
    pub fn chroot(&self) -> Result<()> {
        let err = |step| self.pivot_err(step);
        self.sys.chdir(self.rootfs).map_err(err("chdir"))?;
        self.sys.chroot(Path::new(".")).map_err(err("chroot"))?;
        self.sys.chdir(Path::new("/")).map_err(err("chdir /"))
    }
}

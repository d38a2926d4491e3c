//! Device nodes and the `/dev` links of a container's root filesystem (runs in its init, before
//! pivot_root): created with mknod, or bind mounted from the host in a user namespace.

use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::{Result, RootfsContext, RootfsError};
use crate::paths::resolve_in_root;

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const DEV_SYMLINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

impl RootfsContext<'_> {
    pub(super) fn create_devices(&self) -> Result<()> {
        let devs: &[LinuxDevice] = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        for (path, major, minor) in DEFAULT_DEVICES {
            if devs.iter().any(|d| d.path() == Path::new(path)) {
                continue;
            }
            self.device(Path::new(path), SFlag::S_IFCHR, major, minor, 0o666, 0, 0)?;
        }
        for d in devs {
            let kind = match d.typ() {
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                _ => SFlag::S_IFCHR,
            };
            self.device(
                d.path(),
                kind,
                d.major() as u64,
                d.minor() as u64,
                d.file_mode().unwrap_or(0o666),
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn device(
        &self,
        path: &Path,
        kind: SFlag,
        major: u64,
        minor: u64,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let dest = resolve_in_root(self.rootfs, path)?;
        if let Some(parent) = dest.parent() {
            self.mkdir(parent)?;
        }
        let create_err = |err| RootfsError::Create {
            what: "creating device",
            path: path.into(),
            err,
        };
        if self.in_user_ns {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            self.sys.touch(&dest).map_err(create_err)?;
            return self.mount(Some(path), &dest, None, MsFlags::MS_BIND, None);
        }
        let _ = std::fs::remove_file(&dest);
        let dev = nix::sys::stat::makedev(major, minor);
        self.sys
            .mknod(&dest, kind, Mode::from_bits_truncate(mode & 0o7777), dev)
            .map_err(|e| create_err(e.into()))?;
        self.sys
            .chown(&dest, uid, gid)
            .map_err(|e| create_err(e.into()))
    }

    pub(super) fn dev_symlinks(&self) -> Result<()> {
        let dev = resolve_in_root(self.rootfs, Path::new("/dev"))?;
        let mut links: Vec<(&str, &str)> = DEV_SYMLINKS.to_vec();
        if Path::new("/proc/kcore").exists() {
            links.push(("/proc/kcore", "/dev/core"));
        }
        let has_devpts = self
            .spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|m| {
                m.destination() == Path::new("/dev/pts") && m.typ().as_deref() == Some("devpts")
            });
        if has_devpts {
            let _ = std::fs::remove_file(dev.join("ptmx"));
            links.push(("pts/ptmx", "/dev/ptmx"));
        }
        for (target, link) in links {
            // Resolved like every other path: a hostile image's /dev may itself be a symlink.
            let at = resolve_in_root(self.rootfs, Path::new(link))?;
            if let Err(err) = self.sys.symlink(Path::new(target), &at)
                && err.kind() != std::io::ErrorKind::AlreadyExists
            {
                return Err(RootfsError::Create {
                    what: "creating symlink",
                    path: link.into(),
                    err,
                });
            }
        }
        Ok(())
    }
}

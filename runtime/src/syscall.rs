//! The seam between the container set-up logic and the kernel, used in the container's init:
//! [`Syscall`] is implemented by [`LinuxSyscall`] (the real calls) and, in unit tests, by
//! [`Recorder`], which logs each call so the mount plan and its order are tested without root.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// The kernel operations that shape a container's root filesystem and namespaces.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// umount2(2).
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    /// chroot(2).
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    /// `mkdir -p` with `mode` for the directories it creates.
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty regular file if nothing exists at `path` (a bind-mount target).
    fn touch(&self, path: &Path) -> io::Result<()>;
    /// mknod(2).
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()>;
    /// chown(2).
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()>;
    /// symlink(2), replacing nothing.
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    /// Writes `data` to an existing file (sysctls, proc files).
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// setdomainname(2).
    fn setdomainname(&self, name: &str) -> nix::Result<()>;
    /// setns(2) on an open namespace file.
    fn setns(&self, fd: std::os::fd::BorrowedFd<'_>, ns: CloneFlags) -> nix::Result<()>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// The per-mount flags (nosuid, nodev, noexec, ro, atime) of the mount holding `path`, as
    /// mount flags: a bind remount must repeat them or fail on locked mounts.
    fn mount_flags_of(&self, path: &Path) -> nix::Result<MsFlags>;
    /// mount_setattr(2) with AT_RECURSIVE: sets and clears `MOUNT_ATTR_*` bits on the mount at
    /// `path` and every mount below it.
    fn mount_setattr_recursive(&self, path: &Path, set: u64, clr: u64) -> nix::Result<()>;
    /// Attaches the detached mount tree `tree` at `target` (move_mount(2)).
    fn move_mount(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> nix::Result<()>;
    /// Opens directory `path` (to read it later from below a mount that covers it).
    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd>;
    /// Copies the tree of directory `from` into directory `to`: modes, owners, symlinks and
    /// device nodes as they are.
    fn copy_tree(&self, from: OwnedFd, to: &Path) -> io::Result<()>;
}

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }
    fn chroot(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }
    fn touch(&self, path: &Path) -> io::Result<()> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .write_all(data.as_bytes())
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }
    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        crate::sys::setdomainname(name)
    }
    fn setns(&self, fd: std::os::fd::BorrowedFd<'_>, ns: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(fd.as_fd(), ns)
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }
    fn mount_flags_of(&self, path: &Path) -> nix::Result<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let f = nix::sys::statvfs::statvfs(path)?.flags();
        let mut m = MsFlags::empty();
        for (s, t) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(s) {
                m |= t;
            }
        }
        Ok(m)
    }
    fn mount_setattr_recursive(&self, path: &Path, set: u64, clr: u64) -> nix::Result<()> {
        crate::sys::mount_setattr_recursive(path, set, clr)
    }
    fn move_mount(&self, tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> nix::Result<()> {
        crate::sys::move_mount_to(tree, target)
    }
    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        Ok(nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?)
    }
    fn copy_tree(&self, from: OwnedFd, to: &Path) -> io::Result<()> {
        // The fd's /proc link reaches the directory even now that a mount covers its path.
        let src = PathBuf::from(format!("/proc/self/fd/{}", from.as_raw_fd()));
        copy_tree(&src, to)
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            let kind = SFlag::from_bits_truncate(md.mode() & SFlag::S_IFMT.bits());
            nix::sys::stat::mknod(&dst, kind, Mode::from_bits_truncate(md.mode()), md.rdev())?;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// A fake kernel for unit tests: records every call as a line of text and succeeds. File
/// system changes (mkdir, touch, symlink) are really done, on the temporary trees tests use, so
/// the logic that inspects the tree keeps working.
#[derive(Debug, Default)]
pub struct Recorder {
    /// One line per call, e.g. `mount tmpfs /r/dev tmpfs NOSUID|STRICTATIME mode=755`.
    pub calls: std::cell::RefCell<Vec<String>>,
    /// Strip this prefix from paths in the log (the temporary root).
    pub strip: Option<PathBuf>,
}

impl Recorder {
    fn p(&self, path: &Path) -> String {
        match &self.strip {
            Some(s) => match path.strip_prefix(s) {
                Ok(rest) => format!("/{}", rest.display()),
                Err(_) => path.display().to_string(),
            },
            None => path.display().to_string(),
        }
    }
    fn log(&self, line: String) {
        self.calls.borrow_mut().push(line);
    }
}

impl Syscall for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        let fl: Vec<String> = flags
            .iter_names()
            .map(|(n, _)| n.trim_start_matches("MS_").to_string())
            .collect();
        self.log(format!(
            "mount {} {} {} {} {}",
            source.map(|s| self.p(s)).unwrap_or_else(|| "-".into()),
            self.p(target),
            fstype.unwrap_or("-"),
            if fl.is_empty() {
                "-".into()
            } else {
                fl.join("|")
            },
            data.unwrap_or("-")
        ));
        Ok(())
    }
    fn umount2(&self, target: &Path, _flags: MntFlags) -> nix::Result<()> {
        self.log(format!("umount {}", self.p(target)));
        Ok(())
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.log(format!(
            "pivot_root {} {}",
            self.p(new_root),
            self.p(put_old)
        ));
        Ok(())
    }
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.log(format!("chdir {}", self.p(path)));
        Ok(())
    }
    fn chroot(&self, path: &Path) -> nix::Result<()> {
        self.log(format!("chroot {}", self.p(path)));
        Ok(())
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        LinuxSyscall.mkdir_all(path, mode)
    }
    fn touch(&self, path: &Path) -> io::Result<()> {
        LinuxSyscall.touch(path)
    }
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        let t = if kind == SFlag::S_IFBLK { "b" } else { "c" };
        self.log(format!(
            "mknod {} {t} {}:{} {:o}",
            self.p(path),
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev),
            perm.bits()
        ));
        Ok(())
    }
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        self.log(format!("chown {} {uid}:{gid}", self.p(path)));
        Ok(())
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.log(format!("symlink {} {}", target.display(), self.p(link)));
        Ok(())
    }
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        self.log(format!("write {} {data}", self.p(path)));
        Ok(())
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.log(format!("sethostname {name}"));
        Ok(())
    }
    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        self.log(format!("setdomainname {name}"));
        Ok(())
    }
    fn setns(&self, _fd: std::os::fd::BorrowedFd<'_>, ns: CloneFlags) -> nix::Result<()> {
        self.log(format!("setns {ns:?}"));
        Ok(())
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.log(format!("unshare {flags:?}"));
        Ok(())
    }
    fn mount_flags_of(&self, _path: &Path) -> nix::Result<MsFlags> {
        Ok(MsFlags::MS_NOSUID)
    }
    fn mount_setattr_recursive(&self, path: &Path, set: u64, clr: u64) -> nix::Result<()> {
        self.log(format!(
            "mount_setattr {} set={set:#x} clr={clr:#x}",
            self.p(path)
        ));
        Ok(())
    }
    fn move_mount(&self, _tree: std::os::fd::BorrowedFd<'_>, target: &Path) -> nix::Result<()> {
        self.log(format!("move_mount {}", self.p(target)));
        Ok(())
    }
    fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        LinuxSyscall.open_dir(path)
    }
    fn copy_tree(&self, _from: OwnedFd, to: &Path) -> io::Result<()> {
        self.log(format!("copy_tree {}", self.p(to)));
        Ok(())
    }
}

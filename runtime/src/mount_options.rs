//! Mount `options` of the runtime spec as mount(8) and runc (1.1) read them: mount(2) flags,
//! propagation changes, recursive attributes for mount_setattr(2), runc's `tmpcopyup`, and the
//! rest as filesystem data. Pure; used by the container's init (see [`crate::rootfs`]).

use nix::mount::MsFlags;

/// Parsed `options` of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2) (`MS_BIND`/`MS_REC` for bind and rbind).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (`mode=755,size=65536k`), which the kernel checks for every
    /// type but bind mounts (where it would be ignored: there it is an error).
    pub data: String,
    /// Recursive attributes (`rro`, `rnosuid`, …) set on the mount and every mount below it
    /// with mount_setattr(2): `MOUNT_ATTR_*` bits to set and to clear.
    pub rec_set: u64,
    /// See `rec_set`.
    pub rec_clr: u64,
    /// `tmpcopyup`: a tmpfs starts with a copy of what the directory it covers held.
    pub tmpcopyup: bool,
}

/// `MOUNT_ATTR_*` of mount_setattr(2) (linux/mount.h), which libc does not export.
pub mod mount_attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// Ignore suid and sgid bits.
    pub const NOSUID: u64 = 0x2;
    /// No device access.
    pub const NODEV: u64 = 0x4;
    /// No program execution.
    pub const NOEXEC: u64 = 0x8;
    /// The access-time mode field (relatime is 0 in it).
    pub const ATIME: u64 = 0x70;
    /// Relative access times.
    pub const RELATIME: u64 = 0x0;
    /// No access times.
    pub const NOATIME: u64 = 0x10;
    /// Every access time.
    pub const STRICTATIME: u64 = 0x20;
    /// No directory access times.
    pub const NODIRATIME: u64 = 0x80;
    /// Symlinks are not followed (Linux 5.14).
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// The recursive attribute options runc (1.1) knows: name, `MOUNT_ATTR_*` bit, and whether the
/// option clears it.
const RECURSIVE: [(&str, u64, bool); 18] = [
    ("rro", mount_attr::RDONLY, false),
    ("rrw", mount_attr::RDONLY, true),
    ("rnosuid", mount_attr::NOSUID, false),
    ("rsuid", mount_attr::NOSUID, true),
    ("rnodev", mount_attr::NODEV, false),
    ("rdev", mount_attr::NODEV, true),
    ("rnoexec", mount_attr::NOEXEC, false),
    ("rexec", mount_attr::NOEXEC, true),
    ("rnodiratime", mount_attr::NODIRATIME, false),
    ("rdiratime", mount_attr::NODIRATIME, true),
    ("rrelatime", mount_attr::RELATIME, false),
    ("rnorelatime", mount_attr::RELATIME, true),
    ("rnoatime", mount_attr::NOATIME, false),
    ("ratime", mount_attr::NOATIME, true),
    ("rstrictatime", mount_attr::STRICTATIME, false),
    ("rnostrictatime", mount_attr::STRICTATIME, true),
    ("rnosymfollow", mount_attr::NOSYMFOLLOW, false),
    ("rsymfollow", mount_attr::NOSYMFOLLOW, true),
];

/// Parses mount options as mount(8) and runc understand them.
pub fn parse_options(opts: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
        rec_set: 0,
        rec_clr: 0,
        tmpcopyup: false,
    };
    let mut data: Vec<&str> = Vec::new();
    for opt in opts {
        if let Some((_, bit, clear)) = RECURSIVE.iter().find(|(n, _, _)| n == opt) {
            if *clear {
                o.rec_clr |= bit;
                o.rec_set &= !bit;
            } else {
                o.rec_set |= bit;
                o.rec_clr &= !bit;
                // An access-time mode replaces the field (mount_setattr(2)).
                if bit & mount_attr::ATIME == *bit {
                    o.rec_clr |= mount_attr::ATIME;
                }
            }
            continue;
        }
        let (set, flag) = match opt.as_str() {
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "suid" => (false, MsFlags::MS_NOSUID),
            "nodev" => (true, MsFlags::MS_NODEV),
            "dev" => (false, MsFlags::MS_NODEV),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "exec" => (false, MsFlags::MS_NOEXEC),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "async" => (false, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (true, MsFlags::MS_DIRSYNC),
            "remount" => (true, MsFlags::MS_REMOUNT),
            "mand" => (true, MsFlags::MS_MANDLOCK),
            "nomand" => (false, MsFlags::MS_MANDLOCK),
            "atime" => (false, MsFlags::MS_NOATIME),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "diratime" => (false, MsFlags::MS_NODIRATIME),
            "nodiratime" => (true, MsFlags::MS_NODIRATIME),
            "bind" => (true, MsFlags::MS_BIND),
            "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "norelatime" => (false, MsFlags::MS_RELATIME),
            "strictatime" => (true, MsFlags::MS_STRICTATIME),
            "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
            "lazytime" => (true, MsFlags::MS_LAZYTIME),
            "nolazytime" => (false, MsFlags::MS_LAZYTIME),
            "silent" => (true, MsFlags::MS_SILENT),
            "loud" => (false, MsFlags::MS_SILENT),
            "acl" => (true, MsFlags::MS_POSIXACL),
            "noacl" => (false, MsFlags::MS_POSIXACL),
            "iversion" => (true, MsFlags::MS_I_VERSION),
            "noiversion" => (false, MsFlags::MS_I_VERSION),
            "nosymfollow" => (true, MS_NOSYMFOLLOW),
            "symfollow" => (false, MS_NOSYMFOLLOW),
            "defaults" => continue,
            "tmpcopyup" => {
                o.tmpcopyup = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation
                    .push(propagation_flag(opt).unwrap_or(MsFlags::MS_PRIVATE));
                continue;
            }
            other => {
                data.push(other);
                continue;
            }
        };
        if set {
            o.flags |= flag;
        } else {
            o.flags -= flag;
        }
    }
    o.data = data.join(",");
    o
}

/// The mount(2) flags of a propagation name (`rslave`, `shared`, …).
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_into_flags_propagation_and_data() {
        let o = parse_options(&[
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "rslave".into(),
            "mode=755".into(),
            "size=1m".into(),
            "rw".into(),
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data, "mode=755,size=1m");
    }

    #[test]
    fn recursive_attributes_set_and_clear_with_the_atime_field() {
        let o = parse_options(&[
            "rro".into(),
            "rnosuid".into(),
            "rnoatime".into(),
            "rexec".into(),
        ]);
        assert_eq!(
            o.rec_set,
            mount_attr::RDONLY | mount_attr::NOSUID | mount_attr::NOATIME
        );
        assert_eq!(o.rec_clr, mount_attr::NOEXEC | mount_attr::ATIME);
        assert!(o.data.is_empty() && o.flags.is_empty());
        let o = parse_options(&[
            "rro".into(),
            "rrw".into(),
            "tmpcopyup".into(),
            "nosymfollow".into(),
        ]);
        assert_eq!((o.rec_set, o.rec_clr), (0, mount_attr::RDONLY));
        assert!(o.tmpcopyup);
        assert_eq!(o.flags, MS_NOSYMFOLLOW);
        assert_eq!(parse_options(&["foo=bar".into()]).data, "foo=bar");
    }
}

//! Layer unpacking: a (gzip, zstd or plain) tar stream becomes a directory usable as an overlayfs
//! lower, with OCI whiteouts turned into overlayfs ones. Runs in berthd and the CLI on a blocking
//! thread. Layer tarballs are hostile input: every path is resolved inside the layer root with
//! openat2(RESOLVE_IN_ROOT) and the last component is only ever touched with *at calls that do not
//! follow symlinks, so no entry can write outside the root (`..` is refused outright). How far a
//! layer may expand is bounded by [`UnpackLimits`].

use super::limits::{Exceeded, Meter, UnpackLimits};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use sha2::{Digest as _, Sha256};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?} escapes the layer root")]
    Escape { path: String },
    #[error("layer entry {path:?}: {what}: {source}")]
    Entry {
        path: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("reading layer tar stream: {0}")]
    Read(io::Error),
    #[error("creating layer directory {0}: {1}")]
    Create(PathBuf, io::Error),
    #[error("{0}")]
    Limit(Exceeded),
}

fn ent<'a>(path: &'a [u8], what: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Entry {
        path: String::from_utf8_lossy(path).into_owned(),
        what,
        source: e.into(),
    }
}

fn ent_io<'a>(path: &'a [u8], what: &'static str) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |e| UnpackError::Entry {
        path: String::from_utf8_lossy(path).into_owned(),
        what,
        source: e,
    }
}

/// Compression of a layer blob, detected from its first bytes (media types lie more often).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Zero padding after the end of the stream: some writers (umoci) omit the last entry's padding
/// and the end-of-archive blocks. The padding is not hashed; truncation is caught by the digests.
struct PadReader<R> {
    inner: R,
    pad: usize,
}

impl<R: Read> Read for PadReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let k = self.pad.min(buf.len());
        buf[..k].fill(0);
        self.pad -= k;
        Ok(k)
    }
}

/// Splits a tar path into safe components: leading `/` and `.` are dropped (tar paths are
/// relative to the layer root), `..` is refused.
fn components(path: &[u8]) -> Result<Vec<&OsStr>, UnpackError> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Escape {
                    path: String::from_utf8_lossy(path).into_owned(),
                });
            }
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn join(comps: &[&OsStr]) -> OsString {
    let mut p = OsString::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            p.push("/");
        }
        p.push(c);
    }
    p
}

fn in_root(flags: OFlag) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    )
}

/// Opens (and creates, 0755 root, when missing) the directory `comps` inside `root`.
fn open_dir_in_root(root: &OwnedFd, comps: &[&OsStr], create: bool) -> Result<OwnedFd, Errno> {
    let dirflags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    if comps.is_empty() {
        return openat(root, ".", dirflags | OFlag::O_CLOEXEC, Mode::empty());
    }
    match openat2(root, join(comps).as_os_str(), in_root(dirflags)) {
        Err(Errno::ENOENT) if create => {}
        r => return r,
    }
    let mut cur = openat(root, ".", dirflags | OFlag::O_CLOEXEC, Mode::empty())?;
    for i in 0..comps.len() {
        match openat2(root, join(&comps[..=i]).as_os_str(), in_root(dirflags)) {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) => {
                // `cur` was resolved inside the root; the new name is a plain component.
                match mkdirat(&cur, comps[i], Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                cur = openat2(root, join(&comps[..=i]).as_os_str(), in_root(dirflags))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

fn lstat_at(dir: &OwnedFd, name: &OsStr) -> Result<Option<FileStat>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Removes `name` in `dir` (recursively for directories) without following symlinks.
pub(crate) fn remove_at(dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let sub = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let names: Vec<OsString> = {
            let d = nix::dir::Dir::from_fd(sub.try_clone().map_err(|_| Errno::EIO)?)?;
            let mut d = d;
            d.iter()
                .filter_map(Result::ok)
                .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                .filter(|n| n != "." && n != "..")
                .collect()
        };
        for n in names {
            remove_at(&sub, &n)?;
        }
        unlinkat(dir, name, UnlinkatFlags::RemoveDir)
    } else {
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
    }
}

/// Sets mode bits including setuid/setgid/sticky, after chown (which clears setuid).
fn perm(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// A sparse-aware copy: all-zero 4 KiB blocks become holes.
fn copy_sparse(src: &mut impl Read, file: &File, size: u64, buf: &mut [u8]) -> io::Result<()> {
    const BLK: usize = 4096;
    let mut off = 0u64;
    loop {
        let n = src.read(buf)?;
        if n == 0 {
            break;
        }
        let data = &buf[..n];
        let mut i = 0;
        while i < n {
            let end = (i + BLK).min(n);
            if data[i..end].iter().all(|&b| b == 0) {
                i = end;
                continue;
            }
            // extend the run of non-zero blocks
            let mut j = end;
            while j < n {
                let e = (j + BLK).min(n);
                if data[j..e].iter().all(|&b| b == 0) {
                    break;
                }
                j = e;
            }
            file.write_all_at(&data[i..j], off + i as u64)?;
            i = j;
        }
        off += n as u64;
    }
    if off != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file data shorter than its header says",
        ));
    }
    file.set_len(size)
}

/// What an unpacked layer looked like (for progress and tests).
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    /// `sha256:` of the uncompressed tar stream: must equal the config's diff id.
    pub diff_id: String,
    pub entries: u64,
}

/// How a tar stream is extracted: as an image layer, or as `docker cp` copies into a container.
#[derive(Debug, Clone, Copy)]
pub struct Extract {
    /// OCI whiteouts become overlayfs ones and the root entry sets the root's metadata (a
    /// layer); otherwise `.wh.` names are ordinary files and the root is left as it is.
    pub layer: bool,
    /// Refuse to replace a directory with a non-directory or the reverse (Docker's
    /// `noOverwriteDirNonDir`).
    pub keep_kinds: bool,
    /// Every entry owned by this uid and gid instead of the tar's.
    pub owner: Option<(u64, u64)>,
}

impl Extract {
    pub const LAYER: Extract = Extract {
        layer: true,
        keep_kinds: false,
        owner: None,
    };
}

/// Unpacks a layer stream into the existing, empty directory `dest`, within the default limits.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> Result<Unpacked, UnpackError> {
    unpack_layer_with(reader, dest, &UnpackLimits::default())
}

/// Unpacks a layer stream into the existing, empty directory `dest`; past a limit it stops at
/// once with [`UnpackError::Limit`], leaving what it wrote for the caller to remove.
pub fn unpack_layer_with(
    reader: impl Read,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<Unpacked, UnpackError> {
    let root: OwnedFd = openat(
        nix::fcntl::AT_FDCWD,
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Create(dest.to_path_buf(), e.into()))?;
    unpack_at_with(reader, &root, Extract::LAYER, limits)
}

/// Unpacks a tar stream under the directory `root`, within the default limits; no entry can
/// leave it.
pub fn unpack_at(reader: impl Read, root: &OwnedFd, how: Extract) -> Result<Unpacked, UnpackError> {
    unpack_at_with(reader, root, how, &UnpackLimits::default())
}

fn unpack_at_with(
    reader: impl Read,
    root: &OwnedFd,
    how: Extract,
    limits: &UnpackLimits,
) -> Result<Unpacked, UnpackError> {
    let meter = Meter::new(*limits);
    unpack_metered(reader, root, how, &meter)
        .map_err(|e| meter.tripped().map(UnpackError::Limit).unwrap_or(e))
}

fn unpack_metered(
    reader: impl Read,
    root: &OwnedFd,
    how: Extract,
    meter: &Meter,
) -> Result<Unpacked, UnpackError> {
    let mut br = meter.consumed(BufReader::with_capacity(256 * 1024, reader));
    let head = br.fill_buf().map_err(UnpackError::Read)?;
    let dec: Box<dyn Read> = match detect(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(br).map_err(UnpackError::Read)?)
        }
        Compression::None => Box::new(br),
    };
    let mut hr = HashReader {
        inner: meter.reader(dec, |c| &mut c.expanded),
        hasher: Sha256::new(),
    };
    let root = root.try_clone().map_err(UnpackError::Read)?;
    let mut entries = 0u64;
    let mut dirs: Vec<(Vec<u8>, i64)> = Vec::new();
    {
        let mut ar = tar::Archive::new(PadReader {
            inner: &mut hr,
            pad: 1536,
        });
        let mut buf = vec![0u8; 256 * 1024];
        let mut cache: Option<(OsString, OwnedFd)> = None;
        for e in ar.entries().map_err(UnpackError::Read)? {
            let mut e = e.map_err(UnpackError::Read)?;
            entries += 1;
            let path = e.path_bytes().into_owned();
            let comps = components(&path)?;
            let h = e.header();
            let kind = h.entry_type();
            // Before any of it is written: a sparse file's holes count, though they take no space.
            let size = match kind {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => e.size(),
                _ => 0,
            };
            meter
                .add(|c| {
                    c.entries += 1;
                    c.content += size;
                })
                .map_err(UnpackError::Limit)?;
            let mut meta = Meta {
                // empty numeric fields (some writers) count as 0
                uid: h.uid().unwrap_or(0),
                gid: h.gid().unwrap_or(0),
                mode: h.mode().map_err(ent_io(&path, "header mode"))?,
                mtime: h.mtime().unwrap_or(0) as i64,
                xattrs: Vec::new(),
            };
            let (dev_major, dev_minor) = (
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            );
            if let Some(pax) = e.pax_extensions().map_err(UnpackError::Read)? {
                for x in pax.flatten() {
                    let Ok(k) = x.key() else { continue };
                    let v = x.value_bytes();
                    let num = || {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
                    };
                    match k {
                        "uid" => meta.uid = num().unwrap_or(meta.uid as i64) as u64,
                        "gid" => meta.gid = num().unwrap_or(meta.gid as i64) as u64,
                        "mtime" => meta.mtime = num().unwrap_or(meta.mtime),
                        // overlayfs's own metadata (redirects, metacopy, opaque) would let a
                        // layer steer the overlay: only whiteout translation here sets it
                        k if k.starts_with("SCHILY.xattr.trusted.overlay.") => {}
                        k if k.starts_with("SCHILY.xattr.") => meta
                            .xattrs
                            .push((k["SCHILY.xattr.".len()..].to_string(), v.to_vec())),
                        _ => {}
                    }
                }
            }
            if let Some((uid, gid)) = how.owner {
                (meta.uid, meta.gid) = (uid, gid);
            }
            let Some((name, parent)) = comps.split_last() else {
                // the layer root itself
                if kind.is_dir() && how.layer {
                    set_meta_fd(&root, &meta, &path)?;
                }
                continue;
            };
            let name_b = name.as_bytes();
            if how.layer
                && name_b.starts_with(b".wh.")
                && !matches!(kind, tar::EntryType::Directory)
            {
                let parent_fd =
                    open_dir_in_root(&root, parent, true).map_err(ent(&path, "opening parent"))?;
                if name_b == b".wh..wh..opq" {
                    crate::image::sys::fsetxattr(&parent_fd, "trusted.overlay.opaque", b"y")
                        .map_err(ent_io(&path, "marking opaque directory"))?;
                } else if name_b.starts_with(b".wh..wh.") {
                    // aufs metadata (hard-link store): nothing to do for overlayfs
                } else {
                    // `.wh...` would remove the root's parent, `.wh..` the directory itself
                    if matches!(&name_b[4..], b"" | b"." | b"..") {
                        return Err(UnpackError::Escape {
                            path: String::from_utf8_lossy(&path).into_owned(),
                        });
                    }
                    let target = OsStr::from_bytes(&name_b[4..]);
                    remove_at(&parent_fd, target).map_err(ent(&path, "replacing"))?;
                    mknodat(&parent_fd, target, SFlag::S_IFCHR, Mode::empty(), 0)
                        .map_err(ent(&path, "creating whiteout"))?;
                }
                cache = None;
                continue;
            }
            // Only the parent of the current entry is cached; an entry can only replace things
            // below its own parent, so the cached directory is never one that was replaced.
            let parent_key = join(parent);
            if cache.as_ref().is_none_or(|(k, _)| *k != parent_key) {
                let fd =
                    open_dir_in_root(&root, parent, true).map_err(ent(&path, "opening parent"))?;
                cache = Some((parent_key, fd));
            }
            let parent_fd = &cache.as_ref().expect("parent cached").1;
            let existing = lstat_at(parent_fd, name).map_err(ent(&path, "stat"))?;
            let keep_dir =
                matches!(kind, tar::EntryType::Directory) && existing.as_ref().is_some_and(is_dir);
            if how.keep_kinds
                && let Some(st) = &existing
                && is_dir(st) != matches!(kind, tar::EntryType::Directory)
            {
                return Err(UnpackError::Entry {
                    path: String::from_utf8_lossy(&path).into_owned(),
                    what: "replacing",
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "cannot overwrite a directory with a non-directory or the reverse",
                    ),
                });
            }
            if existing.is_some() && !keep_dir {
                remove_at(parent_fd, name).map_err(ent(&path, "replacing"))?;
            }
            match kind {
                tar::EntryType::Directory => {
                    if !keep_dir {
                        mkdirat(parent_fd, *name, Mode::from_bits_truncate(0o700))
                            .map_err(ent(&path, "mkdir"))?;
                    }
                    let fd = openat(
                        parent_fd,
                        *name,
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(ent(&path, "opening directory"))?;
                    set_meta_fd(&fd, &meta, &path)?;
                    dirs.push((path.clone(), meta.mtime));
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let fd = openat(
                        parent_fd,
                        *name,
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map_err(ent(&path, "creating file"))?;
                    let file = File::from(fd);
                    let size = e.size();
                    copy_sparse(&mut e, &file, size, &mut buf)
                        .map_err(ent_io(&path, "writing file"))?;
                    set_meta_fd(&file, &meta, &path)?;
                }
                tar::EntryType::Symlink => {
                    let target = e.link_name_bytes().ok_or_else(|| UnpackError::Entry {
                        path: String::from_utf8_lossy(&path).into_owned(),
                        what: "symlink",
                        source: io::Error::new(io::ErrorKind::InvalidData, "no link target"),
                    })?;
                    // The target is stored, never followed by berth: later entries resolve in the root.
                    symlinkat(OsStr::from_bytes(&target), parent_fd, *name)
                        .map_err(ent(&path, "symlink"))?;
                    fchownat(
                        parent_fd,
                        *name,
                        Some(Uid::from_raw(meta.uid as u32)),
                        Some(Gid::from_raw(meta.gid as u32)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(ent(&path, "chown symlink"))?;
                    let t = TimeSpec::new(meta.mtime, 0);
                    utimensat(parent_fd, *name, &t, &t, UtimensatFlags::NoFollowSymlink)
                        .map_err(ent(&path, "utimes symlink"))?;
                }
                tar::EntryType::Link => {
                    let target = e
                        .link_name_bytes()
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    let tcomps = components(&target)?;
                    let Some((tname, tparent)) = tcomps.split_last() else {
                        return Err(UnpackError::Escape {
                            path: String::from_utf8_lossy(&path).into_owned(),
                        });
                    };
                    let tdir = open_dir_in_root(&root, tparent, false)
                        .map_err(ent(&path, "opening hard link target"))?;
                    // no AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself
                    linkat(&tdir, *tname, parent_fd, *name, AtFlags::empty())
                        .map_err(ent(&path, "hard link"))?;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let k = match kind {
                        tar::EntryType::Char => SFlag::S_IFCHR,
                        tar::EntryType::Block => SFlag::S_IFBLK,
                        _ => SFlag::S_IFIFO,
                    };
                    let dev = libc::makedev(dev_major, dev_minor);
                    mknodat(parent_fd, *name, k, perm(meta.mode), dev)
                        .map_err(ent(&path, "mknod"))?;
                    fchownat(
                        parent_fd,
                        *name,
                        Some(Uid::from_raw(meta.uid as u32)),
                        Some(Gid::from_raw(meta.gid as u32)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(ent(&path, "chown"))?;
                    fchmodat(
                        parent_fd,
                        *name,
                        perm(meta.mode),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(ent(&path, "chmod"))?;
                }
                _ => {} // pax/global headers are consumed by the tar reader; others are ignored
            }
        }
        // directory mtimes last (writing children changed them), deepest first
        for (p, mtime) in dirs.iter().rev() {
            let comps = components(p)?;
            if let Ok(fd) = open_dir_in_root(&root, &comps, false) {
                let t = TimeSpec::new(*mtime, 0);
                let _ = futimens(&fd, &t, &t);
            }
        }
    }
    // hash the tar trailer and any padding too: the diff id covers the whole stream
    io::copy(&mut hr, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex::encode(hr.hasher.finalize())),
        entries,
    })
}

fn set_meta_fd(fd: &impl AsFd, m: &Meta, path: &[u8]) -> Result<(), UnpackError> {
    fchown(
        fd,
        Some(Uid::from_raw(m.uid as u32)),
        Some(Gid::from_raw(m.gid as u32)),
    )
    .map_err(ent(path, "chown"))?;
    fchmod(fd, perm(m.mode)).map_err(ent(path, "chmod"))?;
    for (k, v) in &m.xattrs {
        crate::image::sys::fsetxattr(fd, k, v).map_err(ent_io(path, "setting xattr"))?;
    }
    let t = TimeSpec::new(m.mtime, 0);
    futimens(fd, &t, &t).map_err(ent(path, "utimes"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_dotdot_and_strip_root() {
        assert_eq!(
            components(b"/a/./b/").unwrap(),
            vec![OsStr::new("a"), OsStr::new("b")]
        );
        assert!(components(b"a/../../b").is_err());
        assert!(components(b"..").is_err());
        assert!(components(b"./").unwrap().is_empty());
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    #[ignore = "needs root: whiteouts are 0:0 character devices, opaque dirs trusted.* xattrs"]
    fn whiteouts_become_overlay_whiteouts() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let t = tempfile::tempdir().unwrap();
        let data = tar_of(&[
            ("a/", tar::EntryType::Directory, b""),
            ("a/.wh.gone", tar::EntryType::Regular, b""),
            ("b/.wh..wh..opq", tar::EntryType::Regular, b""),
            ("b/kept", tar::EntryType::Regular, b"k"),
            (".wh..wh.plnk", tar::EntryType::Directory, b""),
        ]);
        let u = unpack_layer(&data[..], t.path()).unwrap();
        assert_eq!(u.diff_id, crate::image::manifest::sha256_digest(&data));
        let w = std::fs::symlink_metadata(t.path().join("a/gone")).unwrap();
        assert!(w.file_type().is_char_device() && w.rdev() == 0);
        assert!(!t.path().join("a/.wh.gone").exists());
        let b = File::open(t.path().join("b")).unwrap();
        assert_eq!(
            crate::image::sys::fgetxattr(&b, "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!t.path().join("b/.wh..wh..opq").exists());
        assert_eq!(std::fs::read(t.path().join("b/kept")).unwrap(), b"k");
    }

    #[test]
    fn detects_compression() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(b"usr/"), Compression::None);
    }
}

//! The store's free space during a pull: checked before the layers are fetched, and a write that
//! ran out of it reported as such, naming the store, what is free and what the pull still needs.
//! Runs in berthd and the CLI.

use super::*;

/// Bytes an unprivileged writer could still put on the filesystem of `path`.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Whether the error, or one of its causes, is ENOSPC.
pub(super) fn is_enospc(e: &Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>()
            && io.raw_os_error() == Some(libc::ENOSPC)
        {
            return true;
        }
        cur = c.source();
    }
    false
}

impl Store {
    /// The layers' blobs still missing, in bytes (compressed: what they take in `blobs/`; the
    /// unpacked layers need more).
    pub(super) fn missing_bytes(&self, layers: &[Descriptor]) -> u64 {
        layers
            .iter()
            .filter(|l| !self.has_blob(l.digest().as_ref(), l.size()))
            .map(|l| l.size())
            .sum()
    }

    /// Refuses a pull whose missing blobs alone do not fit.
    pub(super) fn check_space(&self, layers: &[Descriptor]) -> Result<()> {
        let needed = self.missing_bytes(layers);
        match free_bytes(&self.inner.root) {
            Some(free) if free < needed => Err(Error::NoSpace {
                store: self.inner.root.clone(),
                free,
                needed,
                detail: "checked before fetching the layers".into(),
            }),
            _ => Ok(()),
        }
    }

    /// `e` as [`Error::NoSpace`] when the disk was full.
    pub(super) fn no_space(&self, e: Error, layers: &[Descriptor]) -> Error {
        if !is_enospc(&e) {
            return e;
        }
        Error::NoSpace {
            store: self.inner.root.clone(),
            free: free_bytes(&self.inner.root).unwrap_or(0),
            needed: self.missing_bytes(layers),
            detail: e.to_string(),
        }
    }
}

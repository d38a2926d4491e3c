//! The names of the store's index beyond pulling: a further name for a stored image, and
//! removing a name. Runs in berthd and the CLI.

use super::manifest::{self, digest_hex};
use super::{Error, ImageRef, Result, Store};

impl Store {
    /// Names the stored image `source` also `target`; returns the normalised new name.
    pub fn tag(&self, source: &str, target: &str) -> Result<String> {
        let img = self
            .image(source)?
            .ok_or_else(|| Error::NotInStore(source.to_string()))?;
        let target = ImageRef::parse(target)?.to_string();
        let len = self.read_blob(&img.digest)?.len() as u64;
        let media_type = img
            .manifest
            .media_type()
            .as_ref()
            .map_or_else(|| manifest::OCI_MANIFEST.to_owned(), |m| m.to_string());
        let desc = manifest::descriptor(&media_type, &img.digest, len).map_err(|detail| {
            Error::Manifest {
                image: img.name.clone(),
                detail,
            }
        })?;
        self.set_ref(&target, desc)?;
        Ok(target)
    }

    /// Removes the name `reference` (blobs and layers go at the next GC). Refuses while a container
    /// prepared from it exists unless `force`.
    pub fn remove(&self, reference: &str, force: bool) -> Result<()> {
        let img = self
            .image(reference)?
            .ok_or_else(|| Error::NotInStore(reference.to_string()))?;
        if !force {
            let users: Vec<String> = self
                .container_records()?
                .into_iter()
                .filter(|(_, r)| r.digest == img.digest)
                .map(|(id, _)| id)
                .collect();
            if !users.is_empty() {
                return Err(Error::InUse {
                    image: img.name,
                    containers: users.join(", "),
                });
            }
        }
        let name = img.name.clone();
        let by_digest = digest_hex(reference).is_some();
        self.update_index(|m| {
            m.retain(|d| {
                if by_digest {
                    d.digest().to_string() != img.digest
                } else {
                    manifest::ref_name(d) != Some(name.as_str())
                }
            })
        })
    }
}

//! Garbage collection of the image store: blobs, unpacked layers, partial downloads and temp dirs
//! that no named image, prepared container or image in use needs. Runs in berthd and `berth gc`,
//! under the exclusive `gc.lock` (pulls hold it shared).

use super::manifest::{Document, digest_hex, parse_document};
use super::{GcReport, Result, Store, io_err};
use nix::fcntl::FlockArg;
use std::collections::HashSet;
use std::fs;

impl Store {
    /// Removes blobs, unpacked layers, partial downloads and stale temp dirs that no named image,
    /// no prepared container and no image in `in_use` (references or manifest digests) needs.
    pub async fn gc(&self, in_use: &[String]) -> Result<GcReport> {
        let s = self.clone();
        let in_use = in_use.to_vec();
        tokio::task::spawn_blocking(move || s.gc_blocking(&in_use))
            .await
            .expect("gc task")
    }

    fn gc_blocking(&self, in_use: &[String]) -> Result<GcReport> {
        let _lock = self.lock_file("gc.lock", FlockArg::LockExclusive)?;
        let mut roots: Vec<String> = self
            .read_index()?
            .manifests()
            .iter()
            .map(|d| d.digest().to_string())
            .collect();
        roots.extend(self.container_records()?.into_iter().map(|(_, r)| r.digest));
        for r in in_use {
            if digest_hex(r).is_some() {
                roots.push(r.clone());
            } else if let Some(img) = self.image(r)? {
                roots.push(img.digest);
            }
        }
        let mut keep_blobs: HashSet<String> = HashSet::new();
        let mut keep_layers: HashSet<String> = HashSet::new();
        let mut stack = roots;
        while let Some(d) = stack.pop() {
            if !keep_blobs.insert(d.clone()) {
                continue;
            }
            let Ok(raw) = self.read_blob(&d) else {
                continue;
            };
            match parse_document(&raw) {
                Ok(Document::Index(i)) => {
                    stack.extend(i.manifests().iter().map(|m| m.digest().to_string()))
                }
                Ok(Document::Manifest(m)) => {
                    keep_blobs.insert(m.config().digest().to_string());
                    keep_blobs.extend(m.layers().iter().map(|l| l.digest().to_string()));
                    if let Ok(img) = self.load_image(&d, "") {
                        keep_layers.extend(
                            img.chain_ids
                                .iter()
                                .filter_map(|c| digest_hex(c).map(str::to_string)),
                        );
                    }
                }
                Err(_) => {}
            }
        }
        let mut rep = GcReport::default();
        let blobs = self.inner.root.join("blobs/sha256");
        for e in fs::read_dir(&blobs)
            .map_err(io_err("listing", &blobs))?
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&format!("sha256:{n}")) {
                rep.bytes_freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("removing blob", &e.path()))?;
                rep.blobs_removed += 1;
            }
        }
        let layers = self.inner.root.join("layers");
        for e in fs::read_dir(&layers)
            .map_err(io_err("listing", &layers))?
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if n != "empty" && !keep_layers.contains(&n) {
                fs::remove_dir_all(e.path()).map_err(io_err("removing layer", &e.path()))?;
                if !n.starts_with(".tmp") {
                    rep.layers_removed += 1;
                }
            }
        }
        let ingest = self.inner.root.join("ingest");
        for e in fs::read_dir(&ingest)
            .map_err(io_err("listing", &ingest))?
            .flatten()
        {
            let p = e.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err("removing", &p))?;
        }
        Ok(rep)
    }
}

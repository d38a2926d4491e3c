//! What `berth fsck` needs from the image store: every blob hashed against its digest, the named
//! images, imports and containers' records read as they are on disk, and the store's two repairs
//! that go through its own locks (dropping a name). Runs in the `berth` process, under the store's
//! exclusive `gc.lock`, so no pull, import or rootfs preparation writes meanwhile.

use super::manifest::{Document, digest_hex, parse_document};
use super::{ContainerRecord, Result, Store, io_err};
use crate::fsutil::is_orphan_temp;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

/// A stored blob, hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    Intact,
    /// Its content hashes to this other digest.
    Mismatch(String),
    Unreadable(String),
}

/// A manifest or index blob as far as fsck follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doc {
    Manifest {
        config: String,
        layers: Vec<String>,
        /// Chain ids of the layers (empty when the config cannot be read).
        chain_ids: Vec<String>,
    },
    Index {
        children: Vec<String>,
    },
    Invalid(String),
}

/// The store as it is on disk.
#[derive(Debug, Clone, Default)]
pub struct StoreFacts {
    pub blobs: BTreeMap<String, BlobState>,
    /// The documents reachable from names, imports and container records (intact blobs only).
    pub docs: BTreeMap<String, Doc>,
    /// index.json: name → manifest digest.
    pub names: Vec<(String, String)>,
    /// `imports/<file>` → the manifest digest it records (`None`: unreadable).
    pub imports: Vec<(String, Option<String>)>,
    /// Entry names under `layers/` (chain id hexes, `empty`, `.tmp-*`).
    pub layer_dirs: Vec<String>,
    /// Entry names under `ingest/`, each with whether its blob is stored (intact) already.
    pub ingest: Vec<(String, bool)>,
    /// `containers/<id>/image.json` → the digest it records (`None`: missing or unreadable).
    pub containers: Vec<(String, Option<String>)>,
    /// `.tmp-*` files `write_atomic` left at the store's root or in `blobs/sha256` or `imports`.
    pub temp_files: Vec<PathBuf>,
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn hash_file(path: &std::path::Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

impl Store {
    /// The exclusive store lock garbage collection takes: while it is held, no pull, import or
    /// rootfs preparation runs (they hold it shared, and wait).
    pub fn lock_exclusive(&self) -> Result<Flock<File>> {
        self.lock_file("gc.lock", FlockArg::LockExclusive)
    }

    /// Reads and hashes the whole store (call with [`Self::lock_exclusive`] held).
    pub fn facts(&self) -> Result<StoreFacts> {
        let root = self.root().to_path_buf();
        let mut f = StoreFacts::default();
        let blobs = root.join("blobs/sha256");
        for n in names_in(&blobs) {
            let p = blobs.join(&n);
            if n.starts_with(".tmp-") {
                if is_orphan_temp(&n) {
                    f.temp_files.push(p);
                }
                continue;
            }
            let digest = format!("sha256:{n}");
            let state = match hash_file(&p) {
                Ok(d) if d == digest => BlobState::Intact,
                Ok(d) => BlobState::Mismatch(d),
                Err(e) => BlobState::Unreadable(e.to_string()),
            };
            f.blobs.insert(digest, state);
        }
        f.names = self
            .read_index()?
            .manifests()
            .iter()
            .map(|d| {
                (
                    super::manifest::ref_name(d).unwrap_or_default().to_owned(),
                    d.digest().to_string(),
                )
            })
            .collect();
        let imports = root.join("imports");
        for n in names_in(&imports) {
            let p = imports.join(&n);
            if n.starts_with(".tmp-") {
                if is_orphan_temp(&n) {
                    f.temp_files.push(p);
                }
                continue;
            }
            let d = fs::read_to_string(&p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| digest_hex(s).is_some());
            f.imports.push((n, d));
        }
        let containers = root.join("containers");
        for id in names_in(&containers) {
            let d = fs::read(containers.join(&id).join("image.json"))
                .ok()
                .and_then(|raw| serde_json::from_slice::<ContainerRecord>(&raw).ok())
                .map(|r| r.digest);
            f.containers.push((id, d));
        }
        // A temp dir or import work dir whose writer still runs is no leftover.
        let live =
            |n: &str| (n.starts_with(".tmp-") || n.starts_with("import-")) && !is_orphan_temp(n);
        f.layer_dirs = names_in(&root.join("layers"));
        f.layer_dirs.retain(|n| !live(n));
        for n in names_in(&root.join("ingest"))
            .into_iter()
            .filter(|n| !live(n))
        {
            let stored = f.blobs.get(&format!("sha256:{n}")) == Some(&BlobState::Intact);
            f.ingest.push((n, stored));
        }
        for n in names_in(&root) {
            if n.starts_with(".tmp-") && is_orphan_temp(&n) {
                f.temp_files.push(root.join(n));
            }
        }
        let mut stack: Vec<String> = f.names.iter().map(|(_, d)| d.clone()).collect();
        stack.extend(f.imports.iter().filter_map(|(_, d)| d.clone()));
        stack.extend(f.containers.iter().filter_map(|(_, d)| d.clone()));
        while let Some(d) = stack.pop() {
            if f.docs.contains_key(&d) || f.blobs.get(&d) != Some(&BlobState::Intact) {
                continue;
            }
            let doc = match self.read_blob(&d).map(|raw| parse_document(&raw)) {
                Ok(Ok(Document::Manifest(m))) => Doc::Manifest {
                    config: m.config().digest().to_string(),
                    layers: m.layers().iter().map(|l| l.digest().to_string()).collect(),
                    chain_ids: self
                        .load_image(&d, "")
                        .map(|i| i.chain_ids)
                        .unwrap_or_default(),
                },
                Ok(Ok(Document::Index(i))) => {
                    let children: Vec<String> = i
                        .manifests()
                        .iter()
                        .map(|m| m.digest().to_string())
                        .collect();
                    stack.extend(children.iter().cloned());
                    Doc::Index { children }
                }
                Ok(Err(e)) => Doc::Invalid(e),
                Err(e) => Doc::Invalid(e.to_string()),
            };
            f.docs.insert(d, doc);
        }
        Ok(f)
    }

    /// Removes `name` from index.json (its content stays until `gc`), so the next pull or import
    /// of it starts afresh.
    pub fn drop_name(&self, name: &str) -> Result<()> {
        self.update_index(|m| m.retain(|d| super::manifest::ref_name(d) != Some(name)))
    }

    /// Writes container `id`'s record of the image it uses (for GC to keep that image).
    pub fn write_container_record(&self, id: &str, image: &str, digest: &str) -> Result<()> {
        let dir = self.root().join("containers").join(id);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let rec = ContainerRecord {
            image: image.to_owned(),
            digest: digest.to_owned(),
        };
        super::write_atomic(
            &dir.join("image.json"),
            &serde_json::to_vec(&rec).expect("record serialises"),
        )
    }
}

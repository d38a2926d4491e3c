//! `image_file`: importing docker-archive (`docker save`, NixOS dockerTools) and oci-archive
//! tarballs into the store once, keyed by the archive's sha256. Runs in berthd and the CLI (the
//! work happens on a blocking thread).

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::manifest::{self, Document, digest_hex, parse_document};
use super::unpack::{Compression, detect};
use super::{Error, Image, ImageRef, Result, Store, io_err, write_atomic};

/// One regular file of the archive, copied to a temp file while hashed.
struct Member {
    tmp: PathBuf,
    digest: String,
    size: u64,
    head: [u8; 4],
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Store {
    /// Imports the archive at `path` (once: a second call with the same content only looks it up)
    /// and names it `name`, or the archive's own tag, or `import/<digest prefix>:latest`.
    pub async fn import_archive(&self, path: &Path, name: Option<&str>) -> Result<Image> {
        let _lock = self.gc_shared().await?;
        let (s, p, n) = (self.clone(), path.to_path_buf(), name.map(str::to_string));
        tokio::task::spawn_blocking(move || s.import_blocking(&p, n.as_deref()))
            .await
            .expect("import task")
    }

    fn import_blocking(&self, path: &Path, name: Option<&str>) -> Result<Image> {
        let bad = |detail: String| Error::Import {
            path: path.to_path_buf(),
            detail,
        };
        let file_digest = {
            let mut f = File::open(path).map_err(io_err("opening archive", path))?;
            let mut h = Sha256::new();
            io::copy(&mut f, &mut h).map_err(io_err("reading archive", path))?;
            hex::encode(h.finalize())
        };
        let record = self.root().join("imports").join(&file_digest);
        if let Ok(d) = fs::read_to_string(&record) {
            let d = d.trim();
            let stored = self.list()?.into_iter().find(|s| s.digest == d);
            let n = match (name, stored) {
                (Some(n), _) => ImageRef::parse(n)?.to_string(),
                (None, Some(s)) => s.name,
                (None, None) => untagged_name(&file_digest)?,
            };
            if let Ok(img) = self.load_image(d, &n) {
                self.name_image(&img, &n)?;
                return Ok(img);
            }
        }
        let work = self
            .root()
            .join("ingest")
            .join(self.tmp_name(&format!("import-{}", &file_digest[..12])));
        fs::create_dir(&work).map_err(io_err("creating", &work))?;
        let res = self.import_members(path, &work, &file_digest, name);
        let _ = fs::remove_dir_all(&work);
        let img = res?;
        write_atomic(&record, img.digest.as_bytes())?;
        let _ = bad;
        Ok(img)
    }

    fn name_image(&self, img: &Image, name: &str) -> Result<()> {
        let raw = self.read_blob(&img.digest)?;
        let media_type = img
            .manifest
            .media_type()
            .as_ref()
            .map_or_else(|| manifest::OCI_MANIFEST.to_owned(), |m| m.to_string());
        let desc =
            manifest::descriptor(&media_type, &img.digest, raw.len() as u64).map_err(|detail| {
                Error::Manifest {
                    image: name.to_owned(),
                    detail,
                }
            })?;
        self.set_ref(name, desc)
    }

    fn import_members(
        &self,
        path: &Path,
        work: &Path,
        file_digest: &str,
        name: Option<&str>,
    ) -> Result<Image> {
        let bad = |detail: String| Error::Import {
            path: path.to_path_buf(),
            detail,
        };
        let f = File::open(path).map_err(io_err("opening archive", path))?;
        let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
        let mut members: HashMap<String, Member> = HashMap::new();
        let mut buf = vec![0u8; 1 << 20];
        for (i, e) in ar
            .entries()
            .map_err(io_err("reading archive", path))?
            .enumerate()
        {
            let mut e = e.map_err(io_err("reading archive", path))?;
            if !matches!(
                e.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            // member names are only map keys: nothing is created from them
            let key = String::from_utf8_lossy(&e.path_bytes())
                .trim_start_matches("./")
                .to_string();
            let tmp = work.join(format!("m{i}"));
            let mut out = File::create(&tmp).map_err(io_err("writing", &tmp))?;
            let mut h = Sha256::new();
            let (mut size, mut head) = (0u64, [0u8; 4]);
            loop {
                let n = e.read(&mut buf).map_err(io_err("reading archive", path))?;
                if n == 0 {
                    break;
                }
                if size == 0 {
                    head[..n.min(4)].copy_from_slice(&buf[..n.min(4)]);
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err("writing", &tmp))?;
                size += n as u64;
            }
            members.insert(
                key,
                Member {
                    tmp,
                    digest: format!("sha256:{}", hex::encode(h.finalize())),
                    size,
                    head,
                },
            );
        }
        let small = |k: &str| -> Result<Vec<u8>> {
            let m = members
                .get(k)
                .ok_or_else(|| bad(format!("no {k} in the archive")))?;
            if m.size > 16 << 20 {
                return Err(bad(format!("{k} is too large")));
            }
            fs::read(&m.tmp).map_err(io_err("reading", &m.tmp))
        };
        let commit = |m: &Member| -> Result<()> {
            let dest = self.blob_path(&m.digest)?;
            if !self.has_blob(&m.digest, m.size) {
                File::open(&m.tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("syncing", &m.tmp))?;
                fs::rename(&m.tmp, &dest).map_err(io_err("committing blob", &dest))?;
            }
            Ok(())
        };
        let (digest, tag) = if members.contains_key("oci-layout")
            && members.contains_key("index.json")
        {
            // oci-archive: blobs are named by digest; check each against its name
            for (k, m) in &members {
                if let Some(hex) = k.strip_prefix("blobs/sha256/") {
                    if digest_hex(&m.digest) != Some(hex) {
                        return Err(Error::DigestMismatch {
                            digest: format!("sha256:{hex}"),
                            actual: m.digest.clone(),
                        });
                    }
                    commit(m)?;
                }
            }
            let idx: manifest::ImageIndex = serde_json::from_slice(&small("index.json")?)
                .map_err(|e| bad(format!("index.json: {e}")))?;
            let first = idx
                .manifests()
                .first()
                .ok_or_else(|| bad("index.json lists no image".into()))?;
            let tag = manifest::ref_name(first).map(str::to_owned);
            let mut d = first.digest().to_string();
            if let Ok(Document::Index(i)) = parse_document(&self.read_blob(&d)?) {
                d = manifest::choose_platform(&i, &manifest::host_platform())
                    .ok_or_else(|| bad("no manifest for the host platform".into()))?
                    .digest()
                    .to_string();
            }
            // an OCI ref name is often just a tag; only take full references
            (d, tag.filter(|t| t.contains('/')))
        } else if members.contains_key("manifest.json") {
            let entries: Vec<DockerEntry> = serde_json::from_slice(&small("manifest.json")?)
                .map_err(|e| bad(format!("manifest.json: {e}")))?;
            let e = entries
                .first()
                .ok_or_else(|| bad("manifest.json lists no image".into()))?;
            let cfg = members
                .get(&e.config)
                .ok_or_else(|| bad(format!("config {} missing", e.config)))?;
            commit(cfg)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let m = members
                    .get(l)
                    .ok_or_else(|| bad(format!("layer {l} missing")))?;
                commit(m)?;
                let media_type = match detect(&m.head) {
                    Compression::Gzip => manifest::OCI_LAYER_GZIP,
                    Compression::Zstd => manifest::OCI_LAYER_ZSTD,
                    Compression::None => manifest::OCI_LAYER,
                };
                layers.push(manifest::descriptor(media_type, &m.digest, m.size).map_err(bad)?);
            }
            let config =
                manifest::descriptor(manifest::OCI_CONFIG, &cfg.digest, cfg.size).map_err(bad)?;
            let man = manifest::image_manifest(config, layers).map_err(bad)?;
            let raw = serde_json::to_vec(&man).expect("manifest serialises");
            let d = manifest::sha256_digest(&raw);
            self.put_blob(&d, &raw)?;
            (d, e.repo_tags.as_ref().and_then(|t| t.first().cloned()))
        } else {
            return Err(bad("neither a docker-archive (manifest.json) nor an oci-archive (oci-layout, index.json)".into()));
        };
        let n = match (name, tag) {
            (Some(n), _) => ImageRef::parse(n)?.to_string(),
            (None, Some(t)) => ImageRef::parse(&t)?.to_string(),
            (None, None) => untagged_name(file_digest)?,
        };
        let img = self.load_image(&digest, &n)?;
        for l in img.manifest.layers() {
            if !self.has_blob(l.digest().as_ref(), l.size()) {
                return Err(bad(format!(
                    "layer {} missing from the archive",
                    l.digest()
                )));
            }
        }
        self.name_image(&img, &n)?;
        Ok(img)
    }
}

/// The name of an archive that names no image: `import/<digest prefix>:latest`, normalised like
/// every name in the store, so that `image: import/…` (or `docker run import/…`) finds it.
fn untagged_name(file_digest: &str) -> Result<String> {
    Ok(ImageRef::parse(&format!("import/{}:latest", &file_digest[..12]))?.to_string())
}

//! Stored images written out as one docker-archive, as `docker save` writes it: `manifest.json`
//! (config and layers of each image, with its names), `repositories`, and the blobs under
//! `blobs/sha256/` as the store holds them (layers possibly compressed, which `docker load` and
//! berth's own import both read). Runs in berthd on a blocking thread.

use super::manifest::digest_hex;
use super::{Error, Image, Result, Store, io_err};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// A stored name as `docker save` writes it in RepoTags (Docker Hub's prefix left out).
fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// manifest.json and repositories for `images`.
fn index_files(images: &[Image]) -> (Value, Value) {
    let mut manifest = Vec::new();
    let mut repos: Map<String, Value> = Map::new();
    for img in images {
        let blob = |d: &str| format!("blobs/sha256/{}", digest_hex(d).unwrap_or_default());
        let tags: Vec<&str> = if img.name.starts_with("sha256:") {
            vec![]
        } else {
            vec![familiar(&img.name)]
        };
        let config = img.manifest.config().digest().to_string();
        for t in &tags {
            if let Some((repo, tag)) = t.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                let r = repos.entry(repo.to_owned()).or_insert_with(|| json!({}));
                r[tag] = json!(digest_hex(&config).unwrap_or_default());
            }
        }
        manifest.push(json!({
            "Config": blob(&config),
            "RepoTags": tags,
            "Layers": img.manifest.layers().iter().map(|l| blob(l.digest().as_ref())).collect::<Vec<_>>(),
        }));
    }
    (Value::Array(manifest), Value::Object(repos))
}

impl Store {
    /// Writes `references` (names or manifest digests) as one docker-archive at `out`.
    pub fn save_archive(&self, references: &[String], out: &Path) -> Result<Vec<String>> {
        let mut images = Vec::new();
        for r in references {
            let img = self.image(r)?.ok_or_else(|| Error::NotInStore(r.clone()))?;
            images.push(img);
        }
        let f = File::create(out).map_err(io_err("creating", out))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, f));
        let werr = io_err("writing", out);
        let mut done = BTreeSet::new();
        for img in &images {
            let blobs = std::iter::once(img.manifest.config().digest().to_string())
                .chain(img.manifest.layers().iter().map(|l| l.digest().to_string()));
            for d in blobs {
                if !done.insert(d.clone()) {
                    continue;
                }
                let p = self.blob_path(&d)?;
                let mut src = File::open(&p).map_err(io_err("opening blob", &p))?;
                tar.append_file(
                    format!("blobs/sha256/{}", digest_hex(&d).unwrap_or_default()),
                    &mut src,
                )
                .map_err(io_err("writing", out))?;
            }
        }
        let (manifest, repos) = index_files(&images);
        for (name, v) in [("manifest.json", manifest), ("repositories", repos)] {
            let data = serde_json::to_vec(&v).expect("json serialises");
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            tar.append_data(&mut h, name, &data[..])
                .map_err(io_err("writing", out))?;
        }
        let mut w = tar.into_inner().map_err(io_err("writing", out))?;
        w.flush().map_err(werr)?;
        Ok(images.into_iter().map(|i| i.name).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_tags_as_docker_writes_them() {
        assert_eq!(familiar("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(
            familiar("127.0.0.1:5000/tb/busybox:1"),
            "127.0.0.1:5000/tb/busybox:1"
        );
    }
}

//! berth's image store (the containerd image layer of berth): pulls images with oci-client into an
//! OCI image layout under /var/lib/berth, unpacks each layer once (keyed by chain id) as an
//! overlayfs lower, imports docker/oci archives, prepares container root filesystems and collects
//! garbage. A library called by berthd (async, tokio) and the `berth` CLI.
//!
//! On disk (`root`):
//! - `oci-layout`, `index.json` (one entry per name, `org.opencontainers.image.ref.name` = the
//!   normalised reference), `blobs/sha256/<hex>`: readable by skopeo and umoci;
//! - `ingest/<hex>`: partial downloads (resumed with a range request);
//! - `layers/<chain-id hex>/`: unpacked layers (overlayfs lower dirs), `layers/.tmp-*` while unpacking;
//! - `containers/<id>/{upper,work,image.json}`: per-container overlay dirs and the image they use;
//! - `imports/<archive sha256 hex>`: manifest digest of an imported archive.
//!
//! Every blob is verified (size and digest) before it is renamed into `blobs/`; every unpacked layer
//! is checked against its diff id before it is renamed into `layers/`; index.json is replaced
//! atomically under a lock. Pulls hold a shared lock on `gc.lock`, garbage collection an exclusive one.

pub mod check;
pub mod credhelper;
mod gc;
pub mod import;
pub mod limits;
pub mod manifest;
mod names;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod retry;
mod save;
pub mod sys;
pub mod unpack;

pub use manifest::{Descriptor, Platform, host_platform};
pub use pull::{LayerPhase, LayerProgress, Phase, Progress, PullOptions};
pub use reference::{ImageRef, RefError};
pub use registry::{RegistryConfig, Secret};
pub use retry::RetryPolicy;

use berth_proto::OverlayRootfs;
use manifest::{Document, ImageIndex, ImageManifest, REF_NAME, digest_hex, parse_document};
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error("{image}: {source}")]
    CredentialHelper {
        image: String,
        source: Box<credhelper::HelperError>,
    },
    #[error("{image}: registry {registry} rejected the credentials (401 unauthorized): {detail}")]
    Unauthorized {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("{image}: registry {registry} denied access (403 forbidden): {detail}")]
    Denied {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("{image}: not found on registry {registry} (404): {what}")]
    NotFound {
        image: String,
        registry: String,
        what: String,
    },
    #[error(
        "{image}: registry {registry} is rate limiting pulls (429 too many requests); retry later"
    )]
    TooManyRequests {
        image: String,
        registry: String,
        /// The registry's `Retry-After`, when it sent one.
        retry_after: Option<std::time::Duration>,
    },
    #[error("{image}: registry {registry} server error {code}: {message}")]
    Server {
        image: String,
        registry: String,
        code: u16,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    #[error("{image}: cannot talk to registry {registry}: {detail}")]
    Transport {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("{image}: registry {registry}: {detail}")]
    Registry {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("blob {digest}: content does not match its digest (got {actual})")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest}: got {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "blob {digest}: download interrupted after {done} of {size} bytes (kept for resuming): {detail}"
    )]
    Interrupted {
        digest: String,
        done: u64,
        size: u64,
        detail: String,
    },
    #[error("{image}: no manifest for platform {platform} in the image index")]
    NoPlatform { image: String, platform: String },
    #[error("{image}: invalid manifest or config: {detail}")]
    Manifest { image: String, detail: String },
    #[error("layer {digest}: uncompressed content is {actual}, the image config says {expected}")]
    DiffIdMismatch {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        digest: String,
        source: unpack::UnpackError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "image store {store} is full (No space left on device): {free} bytes free, the image's \
         missing blobs need {needed} ({detail})"
    )]
    NoSpace {
        store: PathBuf,
        free: u64,
        needed: u64,
        detail: String,
    },
    #[error("image {0} is not in the store")]
    NotInStore(String),
    #[error("image {image} is used by container(s) {containers}")]
    InUse { image: String, containers: String },
    #[error("invalid container id {0:?}")]
    ContainerId(String),
    #[error("importing {path}: {detail}")]
    Import { path: PathBuf, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// An image in the store, as berthd needs it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Normalised reference it is stored under (`docker.io/library/nginx:1.27`).
    pub name: String,
    /// Digest of the image manifest (the platform-specific one when pulled through an index).
    pub digest: String,
    pub manifest: ImageManifest,
    /// The image config (ENTRYPOINT, CMD, ENV, WORKDIR, USER, … for berthd to merge).
    pub config: ImageConfiguration,
    /// Docker's `Healthcheck` from the same config blob (parsed with it, once).
    pub healthcheck: Option<manifest::ImageHealthcheck>,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<String>,
    /// Chain ids, bottom first (the keys of unpacked layers).
    pub chain_ids: Vec<String>,
}

impl Image {
    /// Total compressed size of the layers.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }
}

/// A row of `berth images`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub name: String,
    pub digest: String,
    pub size: u64,
    /// The config's `created` (RFC 3339), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// What berthd needs to start a container from an image.
#[derive(Debug, Clone)]
pub struct PreparedRootfs {
    /// Lower dirs (topmost first) + the container's own upper/work dirs, for shim.json.
    pub rootfs: OverlayRootfs,
    pub image: Image,
}

/// What garbage collection removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub layers_removed: usize,
    pub bytes_freed: u64,
}

#[derive(Serialize, Deserialize)]
struct ContainerRecord {
    image: String,
    digest: String,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) registry: RegistryConfig,
    pub(crate) clients: Mutex<HashMap<String, oci_client::Client>>,
    pub(crate) inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) seq: AtomicU64,
    /// How far a layer may expand while unpacked.
    pub(crate) limits: limits::UnpackLimits,
}

/// The image store. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// [`crate::fsutil::write_atomic`], with the store's error naming the path.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic(path, data).map_err(io_err("writing", path))
}

fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Store {
    /// Opens (creating when needed) the store at `root`, with the default unpack limits.
    pub fn open(root: impl Into<PathBuf>, registry: RegistryConfig) -> Result<Store> {
        Store::open_with_limits(root, registry, limits::UnpackLimits::default())
    }

    /// Opens (creating when needed) the store at `root`; layers are unpacked within `limits`.
    pub fn open_with_limits(
        root: impl Into<PathBuf>,
        registry: RegistryConfig,
        limits: limits::UnpackLimits,
    ) -> Result<Store> {
        let root = root.into();
        for d in ["blobs/sha256", "ingest", "layers", "containers", "imports"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("creating store directory", &p))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            write_atomic(&index, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#)?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                root,
                registry,
                clients: Mutex::new(HashMap::new()),
                inflight: Mutex::new(HashMap::new()),
                seq: AtomicU64::new(0),
                limits,
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest).ok_or_else(|| Error::Manifest {
            image: String::new(),
            detail: format!("unsupported digest {digest:?}"),
        })?;
        Ok(self.inner.root.join("blobs/sha256").join(hex))
    }

    /// Directory of the unpacked layer with this chain id.
    pub fn layer_path(&self, chain_id: &str) -> PathBuf {
        self.inner
            .root
            .join("layers")
            .join(digest_hex(chain_id).unwrap_or("invalid"))
    }

    pub(crate) fn tmp_name(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            self.inner.seq.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(crate) fn has_blob(&self, digest: &str, size: u64) -> bool {
        self.blob_path(digest)
            .ok()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|m| m.len() == size)
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(io_err("reading blob", &p))
    }

    /// Stores a small blob held in memory after checking its digest.
    pub(crate) fn put_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        let actual = manifest::sha256_digest(data);
        if actual != digest {
            return Err(Error::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        let p = self.blob_path(digest)?;
        if fs::metadata(&p).is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(());
        }
        write_atomic(&p, data)
    }

    fn lock_file(&self, name: &str, arg: FlockArg) -> Result<Flock<File>> {
        let p = self.inner.root.join(name);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("opening lock", &p))?;
        Flock::lock(f, arg).map_err(|(_, e)| Error::Io {
            what: "locking",
            path: p,
            source: e.into(),
        })
    }

    /// Shared lock held by pulls, imports and rootfs preparation (GC takes it exclusively).
    pub(crate) async fn gc_shared(&self) -> Result<Flock<File>> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.lock_file("gc.lock", FlockArg::LockShared))
            .await
            .expect("lock task")
    }

    fn read_index(&self) -> Result<ImageIndex> {
        let p = self.inner.root.join("index.json");
        let data = fs::read(&p).map_err(io_err("reading", &p))?;
        serde_json::from_slice(&data).map_err(|e| Error::Io {
            what: "parsing",
            path: p,
            source: io::Error::other(e),
        })
    }

    fn update_index(&self, f: impl FnOnce(&mut Vec<Descriptor>)) -> Result<()> {
        let _lock = self.lock_file("index.lock", FlockArg::LockExclusive)?;
        let mut idx = self.read_index()?;
        let mut manifests = idx.manifests().clone();
        f(&mut manifests);
        idx.set_manifests(manifests);
        idx.set_schema_version(2);
        idx.set_media_type(Some(oci_spec::image::MediaType::ImageIndex));
        let data = serde_json::to_vec(&idx).expect("index serialises");
        write_atomic(&self.inner.root.join("index.json"), &data)
    }

    /// Records `name` → manifest (replacing an older entry of that name).
    pub(crate) fn set_ref(&self, name: &str, mut desc: Descriptor) -> Result<()> {
        desc.set_platform(None);
        desc.set_annotations(Some(HashMap::from([(
            REF_NAME.to_string(),
            name.to_string(),
        )])));
        self.update_index(|m| {
            m.retain(|d| manifest::ref_name(d) != Some(name));
            m.push(desc);
        })
    }

    /// Looks an image up by reference (normalised) or manifest digest.
    pub fn image(&self, reference: &str) -> Result<Option<Image>> {
        let idx = self.read_index()?;
        let by_digest = digest_hex(reference).is_some();
        let name = if by_digest {
            reference.to_string()
        } else {
            ImageRef::parse(reference)?.to_string()
        };
        let found = idx.manifests().iter().find(|d| {
            if by_digest {
                d.digest().to_string() == name
            } else {
                manifest::ref_name(d) == Some(name.as_str())
            }
        });
        let Some(d) = found else { return Ok(None) };
        let n = manifest::ref_name(d)
            .map(str::to_owned)
            .unwrap_or_else(|| d.digest().to_string());
        self.load_image(d.digest().as_ref(), &n).map(Some)
    }

    pub(crate) fn load_image(&self, digest: &str, name: &str) -> Result<Image> {
        let bad = |detail: String| Error::Manifest {
            image: name.to_string(),
            detail,
        };
        let raw = self.read_blob(digest)?;
        let manifest = match parse_document(&raw).map_err(bad)? {
            Document::Manifest(m) => m,
            Document::Index(_) => {
                return Err(bad(format!("{digest} is an index, not an image manifest")));
            }
        };
        let craw = self.read_blob(manifest.config().digest().as_ref())?;
        let (config, healthcheck) = manifest::parse_config_blob(&craw)
            .map_err(|e| bad(format!("config {}: {e}", manifest.config().digest())))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "{} layers but {} diff ids in the config",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let chain_ids = manifest::chain_ids(&diff_ids);
        Ok(Image {
            name: name.to_string(),
            digest: digest.to_string(),
            manifest,
            config,
            healthcheck,
            diff_ids,
            chain_ids,
        })
    }

    /// All named images.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let idx = self.read_index()?;
        let mut out = Vec::new();
        for d in idx.manifests() {
            let name = manifest::ref_name(d).unwrap_or_default().to_owned();
            let m = self
                .read_blob(d.digest().as_ref())
                .ok()
                .and_then(|raw| serde_json::from_slice::<ImageManifest>(&raw).ok());
            let size = m
                .as_ref()
                .map_or(0, |m| m.layers().iter().map(|l| l.size()).sum());
            let created = m
                .and_then(|m| self.read_blob(m.config().digest().as_ref()).ok())
                .and_then(|raw| serde_json::from_slice::<ImageConfiguration>(&raw).ok())
                .and_then(|c| c.created().clone());
            out.push(ImageSummary {
                name,
                digest: d.digest().to_string(),
                size,
                created,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn container_records(&self) -> Result<Vec<(String, ContainerRecord)>> {
        let dir = self.inner.root.join("containers");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir)
            .map_err(io_err("listing", &dir))?
            .flatten()
        {
            let p = e.path().join("image.json");
            if let Ok(data) = fs::read(&p)
                && let Ok(r) = serde_json::from_slice::<ContainerRecord>(&data)
            {
                out.push((e.file_name().to_string_lossy().into_owned(), r));
            }
        }
        Ok(out)
    }

    /// Unpacks every layer of `image` that is not unpacked yet (from the stored blobs).
    pub async fn unpack(&self, image: &Image) -> Result<()> {
        for (i, l) in image.manifest.layers().iter().enumerate() {
            let chain = &image.chain_ids[i];
            if !self.layer_path(chain).exists() {
                self.unpack_blob(l.clone(), image.diff_ids[i].clone(), chain.clone())
                    .await?;
            }
        }
        Ok(())
    }

    /// Makes the root filesystem of container `id` from `image` (a reference or manifest digest):
    /// every layer unpacked, the container's upper/work dirs created (kept if they exist, so a
    /// restarted container keeps its changes), and the image recorded as in use by `id` for GC.
    pub async fn prepare_rootfs(&self, id: &str, image: &str) -> Result<PreparedRootfs> {
        if !valid_container_id(id) {
            return Err(Error::ContainerId(id.to_string()));
        }
        let _lock = self.gc_shared().await?;
        let img = self
            .image(image)?
            .ok_or_else(|| Error::NotInStore(image.to_string()))?;
        let dir = self.inner.root.join("containers").join(id);
        // record first: from here on GC keeps the image's blobs and layers
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let rec = ContainerRecord {
            image: img.name.clone(),
            digest: img.digest.clone(),
        };
        write_atomic(
            &dir.join("image.json"),
            &serde_json::to_vec(&rec).expect("record serialises"),
        )?;
        self.unpack(&img).await?;
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        let mut lower: Vec<PathBuf> = img
            .chain_ids
            .iter()
            .rev()
            .map(|c| self.layer_path(c))
            .collect();
        if lower.is_empty() {
            let empty = self.inner.root.join("layers/empty");
            fs::create_dir_all(&empty).map_err(io_err("creating", &empty))?;
            lower.push(empty);
        }
        Ok(PreparedRootfs {
            rootfs: OverlayRootfs { lower, upper, work },
            image: img,
        })
    }

    /// Deletes container `id`'s upper/work dirs and its hold on the image.
    pub fn release_rootfs(&self, id: &str) -> Result<()> {
        if !valid_container_id(id) {
            return Err(Error::ContainerId(id.to_string()));
        }
        let dir = self.inner.root.join("containers").join(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &dir)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// berthd spawns these futures on its multi-threaded runtime.
    #[test]
    fn store_futures_are_send() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), RegistryConfig::default()).unwrap();
        let opts = PullOptions::default();
        assert_send(&s.pull("busybox", &opts));
        assert_send(&s.prepare_rootfs("c", "busybox"));
        assert_send(&s.import_archive(Path::new("/nonexistent"), None));
        assert_send(&s.gc(&[]));
    }
}

//! Pulling an image from a registry into the store: manifest (index → host platform), config,
//! then all layers concurrently, each streamed to `ingest/` while it is hashed and, on a fresh
//! download, unpacked at the same time on another thread (download, SHA-256 and decompression
//! overlap). A blob becomes visible only after size and digest checked; an unpacked layer only after
//! its diff id checked. Runs in berthd and the CLI (async, with blocking threads for disk work).

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use oci_client::client::LayerDescriptor;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

use super::manifest::{self, Descriptor, Document, Platform, digest_hex, parse_document};
use super::registry::{Secret, chain, map_err};
use super::unpack::{Unpacked, unpack_layer};
use super::{Error, Image, ImageRef, Result, Store, io_err};

/// Where a pull is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Resolving,
    Fetching,
    Done,
    Failed,
}

/// Progress of one pull: readable by the CLI and by berthd (sd_notify STATUS=).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Progress {
    pub image: String,
    pub phase: Phase,
    pub layers_total: usize,
    pub layers_done: usize,
    pub bytes_total: u64,
    pub bytes_done: u64,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1e6;
        write!(
            f,
            "{} {:?}: {}/{} layers, {:.1}/{:.1} MB",
            self.image,
            self.phase,
            self.layers_done,
            self.layers_total,
            mb(self.bytes_done),
            mb(self.bytes_total)
        )
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Platform to choose from an index (default: the host's).
    pub platform: Platform,
    /// Unpack the layers as overlay lowers while pulling.
    pub unpack: bool,
    /// Receives progress updates (create with `watch::channel(Progress::default())`).
    pub progress: Option<Arc<watch::Sender<Progress>>>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: manifest::host_platform(),
            unpack: true,
            progress: None,
        }
    }
}

impl PullOptions {
    fn report(&self, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = &self.progress {
            p.send_modify(f);
        }
    }
}

/// A message from the network task to the blob writer, and from the writer to the unpacker.
enum Msg {
    Data(Bytes),
    /// The server ignored the range request: start the file over.
    Restart,
    End,
}

/// Feeds the unpacker from the writer; a dropped sender without `End` is an aborted download.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Msg>,
    cur: Bytes,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(b)) => self.cur = b,
                Ok(Msg::End) => self.done = true,
                Ok(Msg::Restart) | Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "layer download aborted",
                    ));
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

enum SinkEnd {
    Complete,
    /// The network side stopped without `End`: partial file kept for resuming.
    Interrupted(u64),
}

impl Store {
    fn client(&self, host: &str) -> Result<oci_client::Client> {
        let mut m = self.inner.clients.lock().expect("clients lock");
        if let Some(c) = m.get(host) {
            return Ok(c.clone());
        }
        let c = self.inner.registry.client_for(host)?;
        m.insert(host.to_string(), c.clone());
        Ok(c)
    }

    /// Pulls `reference` (Docker syntax) into the store and names it; returns the stored image.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<Image> {
        let r = ImageRef::parse(reference)?;
        let name = r.to_string();
        opts.report(|p| {
            *p = Progress {
                image: name.clone(),
                ..Default::default()
            }
        });
        let res = self.pull_inner(&r, &name, opts).await;
        opts.report(|p| {
            p.phase = if res.is_ok() {
                Phase::Done
            } else {
                Phase::Failed
            }
        });
        res
    }

    async fn pull_inner(&self, r: &ImageRef, name: &str, opts: &PullOptions) -> Result<Image> {
        let _lock = self.gc_shared().await?;
        // docker.io mirrors first, then the registry itself
        let mut sources: Vec<(String, oci_client::Reference)> = Vec::new();
        if r.registry() == super::reference::DOCKER_HUB {
            for m in &self.inner.registry.mirrors {
                let mut o = r.to_oci();
                o.set_mirror_registry(m.clone());
                sources.push((m.clone(), o));
            }
        }
        sources.push((r.registry().to_owned(), r.to_oci()));
        let mut last_err = None;
        for (i, (host, oref)) in sources.iter().enumerate() {
            match self.pull_from(host, oref, r, name, opts).await {
                Ok(img) => return Ok(img),
                Err(e) if i + 1 < sources.len() => {
                    tracing::warn!(image = name, mirror = host, error = %e, "mirror failed, trying the next source");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("at least one source"))
    }

    async fn fetch_manifest(
        &self,
        client: &oci_client::Client,
        host: &str,
        oref: &oci_client::Reference,
        name: &str,
        auth: &oci_client::secrets::RegistryAuth,
        want_digest: Option<&str>,
    ) -> Result<(Bytes, String)> {
        let (raw, _) = client
            .pull_manifest_raw(oref, auth, manifest::ACCEPTED)
            .await
            .map_err(|e| map_err(name, host, "manifest", e))?;
        let actual = manifest::sha256_digest(&raw);
        if let Some(w) = want_digest
            && w != actual
        {
            return Err(Error::DigestMismatch {
                digest: w.to_string(),
                actual,
            });
        }
        Ok((raw, actual))
    }

    async fn pull_from(
        &self,
        host: &str,
        oref: &oci_client::Reference,
        r: &ImageRef,
        name: &str,
        opts: &PullOptions,
    ) -> Result<Image> {
        let client = self.client(host)?;
        let (secret, from) = self
            .inner
            .registry
            .credentials(host, r.repository())
            .await
            .map_err(|source| Error::CredentialHelper {
                image: name.to_string(),
                source: Box::new(source),
            })?;
        // A 401/403 says where the rejected credentials came from (or that there were none).
        let says_source = |e: Error| match e {
            Error::Unauthorized {
                image,
                registry,
                detail,
            } => Error::Unauthorized {
                image,
                registry,
                detail: format!("{detail} ({from})"),
            },
            Error::Denied {
                image,
                registry,
                detail,
            } => Error::Denied {
                image,
                registry,
                detail: format!("{detail} ({from})"),
            },
            e => e,
        };
        let auth = match secret {
            Secret::Auth(a) => a,
            Secret::IdentityToken(t) => self
                .inner
                .registry
                .exchange_identity_token(name, host, oref, &t, &from)
                .await
                .map_err(says_source)?,
        };
        client
            .auth(oref, &auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| says_source(map_err(name, host, "authenticating", e)))?;
        let (raw, digest) = self
            .fetch_manifest(&client, host, oref, name, &auth, r.digest())
            .await
            .map_err(says_source)?;
        let bad = |detail: String| Error::Manifest {
            image: name.to_string(),
            detail,
        };
        let (raw, digest, manifest) = match parse_document(&raw).map_err(bad)? {
            Document::Manifest(m) => (raw, digest, m),
            Document::Index(idx) => {
                let p = &opts.platform;
                let d = manifest::choose_platform(&idx, p).ok_or_else(|| Error::NoPlatform {
                    image: name.to_string(),
                    platform: manifest::platform_name(p),
                })?;
                let mref = oref.clone_with_digest(d.digest().to_string());
                let (raw, digest) = self
                    .fetch_manifest(&client, host, &mref, name, &auth, Some(d.digest().as_ref()))
                    .await?;
                match parse_document(&raw).map_err(bad)? {
                    Document::Manifest(m) => (raw, digest, m),
                    Document::Index(_) => return Err(bad(format!("{digest}: nested index"))),
                }
            }
        };
        for l in manifest.layers() {
            let media_type = manifest::media_type(l);
            if !media_type.contains("tar") && !media_type.contains("layer") {
                return Err(bad(format!(
                    "layer {} has unsupported media type {media_type}",
                    l.digest()
                )));
            }
            digest_hex(l.digest().as_ref())
                .ok_or_else(|| bad(format!("unsupported layer digest {}", l.digest())))?;
        }
        // config (small: in memory)
        let cd = &manifest.config();
        if !self.has_blob(cd.digest().as_ref(), cd.size()) {
            // the config is held in memory: refuse absurd sizes from a hostile manifest
            if cd.size() > 64 << 20 {
                return Err(bad(format!(
                    "config {} claims {} bytes",
                    cd.digest(),
                    cd.size()
                )));
            }
            let mut buf = Vec::with_capacity(cd.size() as usize);
            client
                .pull_blob(
                    oref,
                    &LayerDescriptor {
                        digest: cd.digest().as_ref(),
                        urls: &None,
                    },
                    &mut buf,
                )
                .await
                .map_err(|e| map_err(name, host, &format!("config blob {}", cd.digest()), e))?;
            if buf.len() as u64 != cd.size() {
                return Err(Error::SizeMismatch {
                    digest: cd.digest().to_string(),
                    expected: cd.size(),
                    actual: buf.len() as u64,
                });
            }
            self.put_blob(cd.digest().as_ref(), &buf)?;
        }
        self.put_blob(&digest, &raw)?;
        let img = self.load_image(&digest, name)?;
        opts.report(|p| {
            p.phase = Phase::Fetching;
            p.layers_total = img.manifest.layers().len();
            p.bytes_total = img.size();
        });
        // Boxed and collected first: a lazy `map` closure over borrowed layers makes the pull
        // future not provably Send (higher-ranked lifetimes), and berthd spawns it.
        let mut jobs: Vec<
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + '_>>,
        > = Vec::new();
        for (i, l) in img.manifest.layers().iter().enumerate() {
            let unpack = opts
                .unpack
                .then(|| (img.diff_ids[i].clone(), img.chain_ids[i].clone()));
            let client = &client;
            jobs.push(Box::pin(async move {
                self.fetch_layer(client, host, oref, name, l, unpack, opts)
                    .await?;
                opts.report(|p| p.layers_done += 1);
                Ok::<(), Error>(())
            }));
        }
        // every layer runs to its end (no cancelled half-done unpacks); the first error is reported
        let results: Vec<Result<()>> = stream::iter(jobs)
            .buffer_unordered(self.inner.registry.concurrency())
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let media_type = manifest
            .media_type()
            .as_ref()
            .map_or_else(|| manifest::OCI_MANIFEST.to_owned(), |m| m.to_string());
        let desc = manifest::descriptor(&media_type, &digest, raw.len() as u64).map_err(bad)?;
        let s = self.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || s.set_ref(&n, desc))
            .await
            .expect("index task")?;
        Ok(img)
    }

    fn inflight(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inner.inflight.lock().expect("inflight lock");
        m.retain(|_, v| Arc::strong_count(v) > 1);
        m.entry(digest.to_string()).or_default().clone()
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_layer(
        &self,
        client: &oci_client::Client,
        host: &str,
        oref: &oci_client::Reference,
        name: &str,
        desc: &Descriptor,
        unpack: Option<(String, String)>,
        opts: &PullOptions,
    ) -> Result<()> {
        let lock = self.inflight(desc.digest().as_ref());
        let _g = lock.lock().await;
        let need_unpack = unpack
            .as_ref()
            .is_some_and(|(_, c)| !self.layer_path(c).exists());
        if self.has_blob(desc.digest().as_ref(), desc.size()) {
            opts.report(|p| p.bytes_done += desc.size());
            if need_unpack {
                let (diff, chain) = unpack.expect("need_unpack");
                self.unpack_blob(desc.clone(), diff, chain).await?;
            }
            return Ok(());
        }
        let hex = digest_hex(desc.digest().as_ref())
            .expect("checked")
            .to_string();
        let ingest = self.inner.root.join("ingest").join(&hex);
        let mut offset = fs::metadata(&ingest).map(|m| m.len()).unwrap_or(0);
        if offset > desc.size() {
            offset = 0;
        }
        let stream_unpack = need_unpack && offset == 0;
        // the unpacker, when unpacking while downloading
        let (utx, unpack_task) = if stream_unpack {
            let (utx, urx) = std::sync::mpsc::sync_channel::<Msg>(256);
            let (s, chain) = (self.clone(), unpack.as_ref().expect("unpack").1.clone());
            let t = tokio::task::spawn_blocking(move || {
                s.unpack_to_tmp(
                    ChannelReader {
                        rx: urx,
                        cur: Bytes::new(),
                        done: false,
                    },
                    &chain,
                )
            });
            (Some(utx), Some(t))
        } else {
            (None, None)
        };
        // the writer: hashes, writes the ingest file, forwards to the unpacker
        let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(64);
        let sink = {
            let (desc, ingest, blob) = (
                desc.clone(),
                ingest.clone(),
                self.blob_path(desc.digest().as_ref())?,
            );
            tokio::task::spawn_blocking(move || write_blob(rx, utx, &ingest, &blob, &desc, offset))
        };
        opts.report(|p| p.bytes_done += offset);
        let net = self
            .download(client, host, oref, name, desc, offset, &tx, opts)
            .await;
        if net.is_ok() {
            let _ = tx.send(Msg::End).await;
        }
        drop(tx);
        let sink_res = sink.await.expect("writer task");
        let unpacked = match unpack_task {
            Some(t) => Some(t.await.expect("unpack task")),
            None => None,
        };
        let cleanup = |u: &Option<Result<(PathBuf, Unpacked)>>| {
            if let Some(Ok((tmp, _))) = u {
                let _ = fs::remove_dir_all(tmp);
            }
        };
        match (net, sink_res) {
            (_, Err(e)) => {
                cleanup(&unpacked);
                return Err(e);
            }
            (Err(e), Ok(SinkEnd::Interrupted(done))) => {
                cleanup(&unpacked);
                return Err(match e {
                    Error::Transport { detail, .. } => Error::Interrupted {
                        digest: desc.digest().to_string(),
                        done,
                        size: desc.size(),
                        detail,
                    },
                    e => e,
                });
            }
            (Err(e), Ok(SinkEnd::Complete)) => {
                cleanup(&unpacked);
                return Err(e);
            }
            (Ok(()), Ok(SinkEnd::Interrupted(done))) => {
                cleanup(&unpacked);
                return Err(Error::Interrupted {
                    digest: desc.digest().to_string(),
                    done,
                    size: desc.size(),
                    detail: "writer stopped".into(),
                });
            }
            (Ok(()), Ok(SinkEnd::Complete)) => {}
        }
        let Some((diff, chain)) = unpack.filter(|_| need_unpack) else {
            return Ok(());
        };
        match unpacked {
            Some(Ok((tmp, u))) => {
                self.commit_layer(&tmp, desc.digest().as_ref(), &diff, &chain, &u)
                    .await
            }
            Some(Err(e)) => Err(e),
            // resumed download: unpack from the now complete blob
            None => self.unpack_blob(desc.clone(), diff, chain).await,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        client: &oci_client::Client,
        host: &str,
        oref: &oci_client::Reference,
        name: &str,
        desc: &Descriptor,
        offset: u64,
        tx: &tokio::sync::mpsc::Sender<Msg>,
        opts: &PullOptions,
    ) -> Result<()> {
        let ld = LayerDescriptor {
            digest: desc.digest().as_ref(),
            urls: &None,
        };
        // Always a range request: a 206 answer is not hashed again by oci-client (the writer
        // hashes every byte anyway); a 200 answer means "from the start".
        let resp = client
            .pull_blob_stream_partial(oref, &ld, offset, None)
            .await
            .map_err(|e| map_err(name, host, &format!("layer blob {}", desc.digest()), e))?;
        let mut s = match resp {
            oci_client::client::BlobResponse::Partial(s) => s,
            oci_client::client::BlobResponse::Full(s) => {
                if offset > 0 {
                    let _ = tx.send(Msg::Restart).await;
                    opts.report(|p| p.bytes_done = p.bytes_done.saturating_sub(offset));
                }
                s
            }
        };
        let mut since = 0u64;
        while let Some(chunk) = s.next().await {
            let b = match chunk {
                Ok(b) => b,
                // oci-client's own digest check at the end of a full response: let the writer
                // report the mismatch with both digests
                Err(e)
                    if e.get_ref()
                        .is_some_and(|i| i.is::<oci_client::errors::DigestError>()) =>
                {
                    break;
                }
                Err(e) => {
                    return Err(Error::Transport {
                        image: name.to_string(),
                        registry: host.to_string(),
                        detail: chain(&e),
                    });
                }
            };
            let n = b.len() as u64;
            if tx.send(Msg::Data(b)).await.is_err() {
                // the writer failed; its error is the one to report
                return Ok(());
            }
            since += n;
            if since >= 1 << 20 {
                opts.report(|p| p.bytes_done += since);
                since = 0;
            }
        }
        opts.report(|p| p.bytes_done += since);
        Ok(())
    }

    /// Unpacks into `layers/.tmp-…`; the caller commits after checking the diff id.
    fn unpack_to_tmp(&self, reader: impl Read, chain: &str) -> Result<(PathBuf, Unpacked)> {
        let tmp = self
            .inner
            .root
            .join("layers")
            .join(self.tmp_name(&format!(".tmp-{}", &digest_hex(chain).unwrap_or("x")[..12])));
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        match unpack_layer(reader, &tmp) {
            Ok(u) => Ok((tmp, u)),
            Err(source) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(Error::Unpack {
                    digest: chain.to_string(),
                    source,
                })
            }
        }
    }

    /// Unpacks a stored blob as the layer `chain`.
    pub(crate) async fn unpack_blob(
        &self,
        desc: Descriptor,
        diff: String,
        chain: String,
    ) -> Result<()> {
        let s = self.clone();
        let blob = self.blob_path(desc.digest().as_ref())?;
        let ch = chain.clone();
        let (tmp, u) = tokio::task::spawn_blocking(move || {
            let f = File::open(&blob).map_err(io_err("opening blob", &blob))?;
            s.unpack_to_tmp(f, &ch)
        })
        .await
        .expect("unpack task")?;
        self.commit_layer(&tmp, desc.digest().as_ref(), &diff, &chain, &u)
            .await
    }

    /// Makes an unpacked layer visible: diff id checked, synced, renamed to `layers/<chain>`.
    async fn commit_layer(
        &self,
        tmp: &Path,
        digest: &str,
        diff: &str,
        chain: &str,
        u: &Unpacked,
    ) -> Result<()> {
        if u.diff_id != diff {
            let _ = fs::remove_dir_all(tmp);
            return Err(Error::DiffIdMismatch {
                digest: digest.to_string(),
                expected: diff.to_string(),
                actual: u.diff_id.clone(),
            });
        }
        let (tmp, dest) = (tmp.to_path_buf(), self.layer_path(chain));
        tokio::task::spawn_blocking(move || {
            let res = (|| {
                let d = File::open(&tmp)?;
                nix::unistd::syncfs(&d)?;
                match fs::rename(&tmp, &dest) {
                    Ok(()) => {}
                    // another pull unpacked it first
                    Err(_) if dest.is_dir() => fs::remove_dir_all(&tmp)?,
                    Err(e) => return Err(e),
                }
                File::open(dest.parent().expect("layers dir"))?.sync_all()
            })();
            if res.is_err() {
                let _ = fs::remove_dir_all(&tmp);
            }
            res.map_err(io_err("committing layer", &dest))
        })
        .await
        .expect("commit task")
    }
}

/// The blob writer (a blocking thread): appends to `ingest` from `offset` (hashing the existing
/// prefix first), verifies size and digest, fsyncs and renames into `blob`.
fn write_blob(
    mut rx: tokio::sync::mpsc::Receiver<Msg>,
    mut utx: Option<std::sync::mpsc::SyncSender<Msg>>,
    ingest: &Path,
    blob: &Path,
    desc: &Descriptor,
    offset: u64,
) -> Result<SinkEnd> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(ingest)
        .map_err(io_err("opening", ingest))?;
    let f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        Error::Io {
            what: "locking",
            path: ingest.to_path_buf(),
            source: e.into(),
        }
    })?;
    f.set_len(offset).map_err(io_err("truncating", ingest))?;
    let mut hasher = Sha256::new();
    let mut pos = 0u64;
    {
        let mut buf = vec![0u8; 1 << 20];
        while pos < offset {
            let n = f
                .read_at(&mut buf[..((offset - pos) as usize).min(1 << 20)], pos)
                .map_err(io_err("reading", ingest))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
    }
    let fail = |e: Error| {
        // a write error (disk full, …) or bad content: the partial file is useless
        let _ = fs::remove_file(ingest);
        e
    };
    loop {
        match rx.blocking_recv() {
            Some(Msg::Data(b)) => {
                if pos + b.len() as u64 > desc.size() {
                    return Err(fail(Error::SizeMismatch {
                        digest: desc.digest().to_string(),
                        expected: desc.size(),
                        actual: pos + b.len() as u64,
                    }));
                }
                f.write_all_at(&b, pos)
                    .map_err(|e| fail(io_err("writing", ingest)(e)))?;
                hasher.update(&b);
                pos += b.len() as u64;
                if let Some(u) = &utx
                    && u.send(Msg::Data(b)).is_err()
                {
                    // the unpacker failed (its error is reported); keep downloading the blob
                    utx = None;
                }
            }
            Some(Msg::Restart) => {
                f.set_len(0)
                    .map_err(|e| fail(io_err("truncating", ingest)(e)))?;
                hasher = Sha256::new();
                pos = 0;
            }
            Some(Msg::End) => break,
            None => {
                let _ = f.sync_data();
                return Ok(SinkEnd::Interrupted(pos));
            }
        }
    }
    if pos != desc.size() {
        if pos < desc.size() {
            return Ok(SinkEnd::Interrupted(pos));
        }
        return Err(fail(Error::SizeMismatch {
            digest: desc.digest().to_string(),
            expected: desc.size(),
            actual: pos,
        }));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != desc.digest().to_string() {
        return Err(fail(Error::DigestMismatch {
            digest: desc.digest().to_string(),
            actual,
        }));
    }
    f.sync_all()
        .map_err(|e| fail(io_err("syncing", ingest)(e)))?;
    fs::rename(ingest, blob).map_err(|e| fail(io_err("committing blob", blob)(e)))?;
    if let Some(dir) = blob.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", dir))?;
    }
    if let Some(u) = utx {
        let _ = u.send(Msg::End);
    }
    Ok(SinkEnd::Complete)
}

//! Pulling an image from a registry into the store: manifest (index → host platform), config,
//! then all layers concurrently, each streamed to `ingest/` while it is hashed and, on a fresh
//! download, unpacked at the same time on another thread (download, SHA-256 and decompression
//! overlap). A blob becomes visible only after size and digest checked; an unpacked layer only after
//! its diff id checked. Each registry request is retried on transient faults (`super::retry`).
//! Runs in berthd and the CLI (async, with blocking threads for disk work).

mod layer;
mod space;
mod transfer;

pub(crate) use space::free_bytes;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

use super::manifest::{self, Descriptor, Document, Platform, digest_hex, parse_document};
use super::registry::{Credentials, Secret, chain, map_err};
use super::retry::RetryPolicy;
use super::unpack::{Unpacked, unpack_layer_with};
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
    /// Each layer of the manifest, bottom first (empty until the manifest is read).
    pub layers: Vec<LayerProgress>,
    /// Why the pull waits, while a failed request waits to be tried again ("registry
    /// 127.0.0.1:5000 answered 503, retry 3 of 5 in 4.0s").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// Where one layer of a pull is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerPhase {
    #[default]
    Waiting,
    Downloading,
    /// The blob was in the store already.
    Exists,
    Complete,
}

/// Progress of one layer (its digest is the compressed blob's).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LayerProgress {
    pub digest: String,
    pub size: u64,
    pub done: u64,
    pub phase: LayerPhase,
}

fn layer_of<'a>(layers: &'a mut [LayerProgress], digest: &str) -> Option<&'a mut LayerProgress> {
    layers.iter_mut().find(|l| l.digest == digest)
}

impl Progress {
    fn layer(&mut self, digest: &str) -> Option<&mut LayerProgress> {
        layer_of(&mut self.layers, digest)
    }

    /// `n` more bytes of the layer `digest` are in.
    pub(super) fn add(&mut self, digest: &str, n: u64) {
        self.bytes_done += n;
        if let Some(l) = self.layer(digest) {
            l.done += n;
            l.phase = LayerPhase::Downloading;
        }
    }

    /// The layer `digest` starts again from its first byte.
    pub(super) fn restart(&mut self, digest: &str) {
        if let Some(l) = layer_of(&mut self.layers, digest) {
            self.bytes_done = self.bytes_done.saturating_sub(l.done);
            l.done = 0;
        }
    }

    pub(super) fn set_phase(&mut self, digest: &str, phase: LayerPhase) {
        if let Some(l) = layer_of(&mut self.layers, digest) {
            l.phase = phase;
            if matches!(phase, LayerPhase::Exists | LayerPhase::Complete) {
                let rest = l.size.saturating_sub(l.done);
                l.done = l.size;
                self.bytes_done += rest;
            }
        }
    }
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
        )?;
        match &self.waiting {
            Some(w) => write!(f, " ({w})"),
            None => Ok(()),
        }
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
    /// Credentials for this pull alone, instead of those the registry configuration finds
    /// (the Docker API's `X-Registry-Auth`); never stored.
    pub credentials: Option<Secret>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: manifest::host_platform(),
            unpack: true,
            progress: None,
            credentials: None,
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
            // A failing mirror hands over to the next source at once, as Docker's does; the last
            // source gets the retries.
            let mut retry = self.inner.registry.retry.clone();
            if i + 1 < sources.len() {
                retry.attempts = 0;
            }
            match self.pull_from(host, oref, r, name, opts, &retry).await {
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
        retry: &RetryPolicy,
    ) -> Result<Image> {
        // oci-client keeps the credentials a client authenticated with for its later requests:
        // a request's own credentials get a client of their own, so no later pull inherits them.
        let client = match opts.credentials {
            Some(_) => self.inner.registry.client_for(host)?,
            None => self.client(host)?,
        };
        let (secret, from) = match &opts.credentials {
            Some(s) => (s.clone(), Credentials::Request),
            None => self
                .inner
                .registry
                .credentials(host, r.repository())
                .await
                .map_err(|source| Error::CredentialHelper {
                    image: name.to_string(),
                    source: Box::new(source),
                })?,
        };
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
        let token = self
            .with_retries(opts, retry, "authenticating", || async {
                client
                    .auth(oref, &auth, oci_client::RegistryOperation::Pull)
                    .await
                    .map_err(|e| map_err(name, host, "authenticating", e))
            })
            .await
            .map_err(says_source)?;
        let src = transfer::BlobSource {
            client: &client,
            http: self.inner.registry.http_for(name, host)?,
            oref,
            auth: &auth,
            image: name,
            host,
            scheme: if self.inner.registry.is_insecure(host) {
                "http"
            } else {
                "https"
            },
            authorization: tokio::sync::Mutex::new(transfer::BlobSource::header(token, &auth)),
            idle: self.inner.registry.retry.idle_timeout,
        };
        let (raw, digest) = self
            .with_retries(opts, retry, "manifest", || {
                self.fetch_manifest(&client, host, oref, name, &auth, r.digest())
            })
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
                    .with_retries(opts, retry, "manifest", || {
                        self.fetch_manifest(
                            &client,
                            host,
                            &mref,
                            name,
                            &auth,
                            Some(d.digest().as_ref()),
                        )
                    })
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
            let buf = self
                .with_retries(opts, retry, "config", || src.fetch_small(cd))
                .await?;
            self.put_blob(cd.digest().as_ref(), &buf)?;
        }
        self.put_blob(&digest, &raw)?;
        let img = self.load_image(&digest, name)?;
        self.check_space(img.manifest.layers())?;
        // Known before any download, as Docker tells them apart: layers already in the store.
        let present: Vec<String> = img
            .manifest
            .layers()
            .iter()
            .filter(|l| self.has_blob(l.digest().as_ref(), l.size()))
            .map(|l| l.digest().to_string())
            .collect();
        opts.report(|p| {
            p.phase = Phase::Fetching;
            p.layers_total = img.manifest.layers().len();
            p.bytes_total = img.size();
            p.layers = img
                .manifest
                .layers()
                .iter()
                .map(|l| LayerProgress {
                    digest: l.digest().to_string(),
                    size: l.size(),
                    ..Default::default()
                })
                .collect();
            for d in &present {
                p.set_phase(d, LayerPhase::Exists);
            }
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
            let src = &src;
            jobs.push(Box::pin(async move {
                self.with_retries(opts, retry, "layer", || {
                    self.fetch_layer(src, l, unpack.clone(), opts)
                })
                .await?;
                opts.report(|p| {
                    p.layers_done += 1;
                    if p.layer(l.digest().as_ref()).map(|l| l.phase) != Some(LayerPhase::Exists) {
                        p.set_phase(l.digest().as_ref(), LayerPhase::Complete);
                    }
                });
                Ok::<(), Error>(())
            }));
        }
        // every layer runs to its end (no cancelled half-done unpacks); the first error is reported
        let results: Vec<Result<()>> = stream::iter(jobs)
            .buffer_unordered(self.inner.registry.concurrency())
            .collect()
            .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>>>()
            .map_err(|e| self.no_space(e, img.manifest.layers()))?;
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
}

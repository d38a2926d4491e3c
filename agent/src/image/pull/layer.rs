//! One layer of a pull: downloaded to `ingest/` (resumed with a range request), hashed while it
//! arrives and, on a fresh download, unpacked at the same time on another thread; the blob becomes
//! visible only after its size and digest are checked, the unpacked layer only after its diff id.
//! Runs in berthd and the CLI (async, with blocking threads for disk work).

use super::*;

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
    fn inflight(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.inner.inflight.lock().expect("inflight lock");
        m.retain(|_, v| Arc::strong_count(v) > 1);
        m.entry(digest.to_string()).or_default().clone()
    }

    pub(super) async fn fetch_layer(
        &self,
        src: &transfer::BlobSource<'_>,
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
            opts.report(|p| p.set_phase(desc.digest().as_ref(), LayerPhase::Exists));
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
            let digest = desc.digest().to_string();
            let t = tokio::task::spawn_blocking(move || {
                s.unpack_to_tmp(
                    ChannelReader {
                        rx: urx,
                        cur: Bytes::new(),
                        done: false,
                    },
                    &digest,
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
        opts.report(|p| p.add(desc.digest().as_ref(), offset));
        // A whole blob kept (a crash between its last byte and the rename) needs no request: a
        // range from its end would be refused (416) on every try; the writer verifies it.
        let net = if offset == desc.size() {
            Ok(())
        } else {
            self.download(src, desc, offset, &tx, opts).await
        };
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

    /// Streams the blob from `offset` to the writer; a body that stalls or trickles below the
    /// policy's minimum rate is cut here (the caller keeps what arrived, for resuming).
    async fn download(
        &self,
        src: &transfer::BlobSource<'_>,
        desc: &Descriptor,
        offset: u64,
        tx: &tokio::sync::mpsc::Sender<Msg>,
        opts: &PullOptions,
    ) -> Result<()> {
        let digest = desc.digest().to_string();
        let resp = match src.get(&digest, offset).await? {
            transfer::Body::Partial(r) => r,
            transfer::Body::Full(r) => {
                if offset > 0 {
                    let _ = tx.send(Msg::Restart).await;
                    opts.report(|p| p.restart(&digest));
                }
                r
            }
        };
        let policy = &self.inner.registry.retry;
        let mut s = resp.bytes_stream();
        let mut since = 0u64;
        let (mut window_start, mut window_bytes) = (std::time::Instant::now(), 0u64);
        loop {
            // woken at least once a second to judge the rate while bytes trickle in
            let tick = policy.idle_timeout.min(std::time::Duration::from_secs(1));
            let idle_since = std::time::Instant::now();
            let chunk = loop {
                match tokio::time::timeout(tick, s.next()).await {
                    Ok(c) => break c,
                    Err(_) => {
                        let stall = crate::image::retry::stalled(
                            policy,
                            idle_since.elapsed(),
                            window_start.elapsed(),
                            window_bytes,
                        );
                        if let Some(detail) = stall {
                            return Err(src.transport(detail));
                        }
                    }
                }
            };
            let b = match chunk {
                None => break,
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(src.transport(chain(&e))),
            };
            let n = b.len() as u64;
            window_bytes += n;
            if let Some(detail) = crate::image::retry::stalled(
                policy,
                std::time::Duration::ZERO,
                window_start.elapsed(),
                window_bytes,
            ) {
                return Err(src.transport(detail));
            }
            if window_start.elapsed() >= policy.rate_window {
                (window_start, window_bytes) = (std::time::Instant::now(), 0);
            }
            // time spent waiting for a busy disk is not the registry's: left out of the window
            let blocked = std::time::Instant::now();
            if tx.send(Msg::Data(b)).await.is_err() {
                // the writer failed; its error is the one to report
                return Ok(());
            }
            window_start += blocked.elapsed();
            since += n;
            if since >= 1 << 20 {
                opts.report(|p| p.add(&digest, since));
                since = 0;
            }
        }
        opts.report(|p| p.add(&digest, since));
        Ok(())
    }

    /// Unpacks the blob `digest` into `layers/.tmp-…` within the store's limits, removing what
    /// it wrote on failure; the caller commits after checking the diff id.
    fn unpack_to_tmp(
        &self,
        reader: impl Read,
        digest: &str,
        chain: &str,
    ) -> Result<(PathBuf, Unpacked)> {
        let tmp = self
            .inner
            .root
            .join("layers")
            .join(self.tmp_name(&format!(".tmp-{}", &digest_hex(chain).unwrap_or("x")[..12])));
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        match unpack_layer_with(reader, &tmp, &self.inner.limits) {
            Ok(u) => Ok((tmp, u)),
            Err(source) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(Error::Unpack {
                    digest: digest.to_string(),
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
        let (ch, digest) = (chain.clone(), desc.digest().to_string());
        let (tmp, u) = tokio::task::spawn_blocking(move || {
            let f = File::open(&blob).map_err(io_err("opening blob", &blob))?;
            s.unpack_to_tmp(f, &digest, &ch)
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

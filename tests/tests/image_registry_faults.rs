//! Registry and disk faults during a pull, against a real registry (Debian's docker-registry)
//! behind the fault-injecting proxy: a cut, a stalled and a trickling transfer, a corrupted blob,
//! bursts of 5xx and 429 with and without `Retry-After`, and a store on a full filesystem. Each
//! pull succeeds after retries (or fails clearly once they are spent), the stored blobs match
//! their digests, nothing partial stays, and the progress says why the pull waits meanwhile.

use berth_agent::image::{Error, Image, Progress, PullOptions, RegistryConfig, RetryPolicy, Store};
use berth_tests::registry::{
    CutProxy, Kind, Layout, Registry, assert_intact, big_image, has_blob, random_bytes,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(2),
        min_rate: 0,
        rate_window: Duration::from_secs(2),
    }
}

fn open(host: &str, retry: RetryPolicy) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistryConfig {
        insecure: vec![host.to_string()],
        retry,
        ..Default::default()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    (dir, s)
}

/// Pulls `name`, collecting each distinct reason to wait that the progress showed meanwhile.
async fn pull_watching(s: &Store, name: &str) -> (Result<Image, Error>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
    let seen = tokio::spawn(async move {
        let mut seen: Vec<String> = Vec::new();
        while rx.changed().await.is_ok() {
            let w = rx.borrow().waiting.clone();
            if let Some(w) = w
                && !seen.contains(&w)
            {
                seen.push(w);
            }
        }
        seen
    });
    let opts = PullOptions {
        progress: Some(Arc::new(tx)),
        ..Default::default()
    };
    let res = s.pull(name, &opts).await;
    drop(opts);
    (res, seen.await.unwrap())
}

fn ingest_is_empty(root: &Path) -> bool {
    std::fs::read_dir(root.join("ingest"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

/// A registry with a `mb` MB layer image, behind a proxy that passes everything for now.
fn setup(tag: &str, mb: usize) -> (Registry, Layout, String, CutProxy) {
    let reg = Registry::start(Kind::Plain);
    let (l, big) = big_image(&reg, tag, mb);
    let proxy = CutProxy::start(reg.port, u64::MAX);
    (reg, l, big, proxy)
}

fn any(seen: &[String], what: &str) -> bool {
    seen.iter().any(|m| m.contains(what))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_fault_cut_connections_resume_with_range_requests() {
    let (_reg, _l, big, proxy) = setup("cut", 8);
    // every connection is cut after 3 MB: the blob arrives in pieces, each one resumed
    proxy.limit.store(3 << 20, Relaxed);
    let host = format!("127.0.0.1:{}", proxy.port);
    let (dir, s) = open(&host, policy());
    let name = format!("{host}/test/big:cut");
    let (res, seen) = pull_watching(&s, &name).await;
    let img = res.expect("pull through the cuts");
    assert!(any(&seen, "interrupted at"), "{seen:?}");
    assert!(any(&seen, "retry 1 of 4"), "{seen:?}");
    let moved = proxy.forwarded.load(Relaxed);
    assert!(
        moved < (8 << 20) + (512 << 10),
        "resumed, not restarted: {moved} bytes moved for an 8 MB blob"
    );
    assert!(has_blob(dir.path(), &big));
    assert!(s.layer_path(&img.chain_ids[1]).join("big").exists());
    assert!(ingest_is_empty(dir.path()));
    assert_eq!(assert_intact(dir.path()), vec![name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_fault_stalled_transfer_is_noticed_and_resumed() {
    let (_reg, _l, big, proxy) = setup("stall", 4);
    proxy.faults.stall_after.store(1 << 20, Relaxed);
    proxy.faults.stalls_left.store(1, Relaxed);
    let host = format!("127.0.0.1:{}", proxy.port);
    let (dir, s) = open(&host, policy());
    let name = format!("{host}/test/big:stall");
    let t = Instant::now();
    let (res, seen) = pull_watching(&s, &name).await;
    res.expect("pull after the stall");
    assert!(any(&seen, "stalled: no data for 2s"), "{seen:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "the stall is noticed after the idle timeout: {took:?}"
    );
    let moved = proxy.forwarded.load(Relaxed);
    assert!(moved < (4 << 20) + (512 << 10), "resumed: {moved} bytes");
    assert!(has_blob(dir.path(), &big));
    assert_eq!(assert_intact(dir.path()), vec![name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_fault_trickling_transfer_is_cut_below_the_minimum_rate() {
    let (_reg, _l, big, proxy) = setup("slow", 4);
    // 2 kB every 100 ms (about 20 kB/s): never idle for 2 s, far below 256 kB/s
    proxy.faults.trickle_after.store(1 << 20, Relaxed);
    proxy.faults.trickle_bytes.store(2000, Relaxed);
    proxy.faults.trickles_left.store(1, Relaxed);
    let host = format!("127.0.0.1:{}", proxy.port);
    let (dir, s) = open(
        &host,
        RetryPolicy {
            min_rate: 256 << 10,
            ..policy()
        },
    );
    let name = format!("{host}/test/big:slow");
    let (res, seen) = pull_watching(&s, &name).await;
    res.expect("pull after the trickle");
    assert!(any(&seen, "below the minimum of 262144 B/s"), "{seen:?}");
    assert!(!any(&seen, "no data for"), "{seen:?}");
    assert!(has_blob(dir.path(), &big));
    assert_eq!(assert_intact(dir.path()), vec![name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_fault_corrupted_blob_is_never_stored_and_fetched_again() {
    let (reg, _l, big, proxy) = setup("bad", 3);
    // one byte flipped inside the big blob (right length, wrong bytes)
    proxy.faults.corrupt_at.store((1 << 20) + 12345, Relaxed);
    proxy.faults.corrupts_left.store(1, Relaxed);
    let host = format!("127.0.0.1:{}", proxy.port);
    let (dir, s) = open(&host, policy());
    let name = format!("{host}/test/big:bad");
    let (res, seen) = pull_watching(&s, &name).await;
    res.expect("pull after the corrupt transfer");
    assert_eq!(
        proxy.faults.corrupts_left.load(Relaxed),
        0,
        "a byte was flipped"
    );
    assert!(any(&seen, "does not match its digest"), "{seen:?}");
    assert!(any(&seen, &big), "{seen:?}");
    assert!(has_blob(dir.path(), &big));
    assert!(ingest_is_empty(dir.path()));
    assert_eq!(assert_intact(dir.path()), vec![name.clone()]);

    // corrupt every time (wrong bytes of the right length in the registry's own storage): the
    // pull gives up, and nothing of the blob stays
    let data = reg.blob_data(&big);
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    std::fs::write(&data, random_bytes(len)).unwrap();
    let (dir, s) = open(
        &host,
        RetryPolicy {
            attempts: 2,
            ..policy()
        },
    );
    let (res, seen) = pull_watching(&s, &name).await;
    let e = res.expect_err("corrupt on every try");
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(any(&seen, "retry 2 of 2"), "{seen:?}");
    assert!(!has_blob(dir.path(), &big));
    assert!(ingest_is_empty(dir.path()));
    assert!(assert_intact(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_fault_5xx_and_429_bursts_are_retried_honouring_retry_after() {
    let (_reg, _l, big, proxy) = setup("5xx", 1);
    let host = format!("127.0.0.1:{}", proxy.port);
    let name = format!("{host}/test/big:5xx");
    // (path, status, how many, Retry-After, what the wait says)
    let cases: [(&str, u16, u64, Option<u64>, &str); 5] = [
        ("/manifests/", 503, 2, None, "answered 503, retry 2 of 4"),
        ("/blobs/", 502, 3, None, "answered 502, retry 3 of 4"),
        ("/blobs/", 500, 1, None, "answered 500, retry 1 of 4"),
        (
            "/blobs/",
            503,
            1,
            Some(1),
            "answered 503, retry 1 of 4 in 1.0s",
        ),
        (
            "/blobs/",
            429,
            2,
            Some(2),
            "answered 429 (too many requests), retry 2 of 4 in 2.0s",
        ),
    ];
    for (path, status, n, retry_after, says) in cases {
        proxy.faults.status_sent.lock().unwrap().clear();
        proxy.fail_requests(path, status, n, retry_after);
        let (dir, s) = open(&host, policy());
        let (res, seen) = pull_watching(&s, &name).await;
        res.unwrap_or_else(|e| panic!("{status} x{n} on {path}: {e}"));
        assert_eq!(proxy.faults.status_left.load(Relaxed), 0, "{status} sent");
        assert!(any(&seen, says), "{status}: {seen:?}");
        assert!(any(&seen, &format!("registry {host}")), "{seen:?}");
        if let Some(ra) = retry_after {
            let sent = proxy.faults.status_sent.lock().unwrap().clone();
            let done = Instant::now();
            // the retry after the last error came no sooner than the registry asked
            let last = *sent.last().expect("errors sent");
            assert!(
                done - last >= Duration::from_secs(ra),
                "{status}: retried {:?} after the answer asking for {ra}s",
                done - last
            );
            for w in sent.windows(2) {
                assert!(w[1] - w[0] >= Duration::from_secs(ra), "{status}: {sent:?}");
            }
        }
        assert!(has_blob(dir.path(), &big));
        assert_eq!(assert_intact(dir.path()), vec![name.clone()]);
    }

    // an error that does not go away: given up after the retries, with the registry's answer
    proxy.faults.status_sent.lock().unwrap().clear();
    proxy.fail_requests("/blobs/", 500, u64::MAX, None);
    let (dir, s) = open(&host, policy());
    let t = Instant::now();
    let (res, seen) = pull_watching(&s, &name).await;
    let e = res.expect_err("500 on every blob request");
    assert!(matches!(e, Error::Server { code: 500, .. }), "{e:?}");
    assert!(e.to_string().contains(&host), "{e}");
    assert!(any(&seen, "answered 500, retry 4 of 4"), "{seen:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(
        proxy.faults.status_sent.lock().unwrap().len(),
        5,
        "the config blob's request tried 1 + 4 times"
    );
    assert!(!has_blob(dir.path(), &big));
    assert!(assert_intact(dir.path()).is_empty());
    proxy.fail_requests("", 0, 0, None);

    // a registry asking for a longer wait than berth gives a pull: failed at once, clearly
    proxy.fail_requests("/blobs/", 429, 1, Some(3600));
    let (_dir, s) = open(&host, policy());
    let t = Instant::now();
    let (res, _) = pull_watching(&s, &name).await;
    let e = res.expect_err("Retry-After beyond the cap");
    assert!(matches!(e, Error::TooManyRequests { .. }), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_fault_whole_blob_left_in_ingest_by_a_crash_is_not_a_dead_end() {
    // berthd killed after the last byte was written and before the rename: the next pull must
    // not ask for the range after the end (416) forever
    let (reg, _l, big, _proxy) = setup("whole", 1);
    let name = format!("{}/test/big:whole", reg.host());
    let (done, s) = open(&reg.host(), RetryPolicy::none());
    s.pull(&name, &PullOptions::default())
        .await
        .expect("first pull");
    let hex = big.trim_start_matches("sha256:");
    let (dir, s) = open(&reg.host(), RetryPolicy::none());
    std::fs::create_dir_all(dir.path().join("ingest")).unwrap();
    std::fs::copy(
        done.path().join("blobs/sha256").join(hex),
        dir.path().join("ingest").join(hex),
    )
    .unwrap();
    s.pull(&name, &PullOptions::default())
        .await
        .expect("pull with the whole blob in ingest/");
    assert!(has_blob(dir.path(), &big));
    assert!(ingest_is_empty(dir.path()));
    assert_eq!(assert_intact(dir.path()), vec![name]);
}

struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn tmpfs(dir: &Path, size: &str, remount: bool) {
    let mut flags = nix::mount::MsFlags::empty();
    if remount {
        flags |= nix::mount::MsFlags::MS_REMOUNT;
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some(format!("size={size}").as_str()),
    )
    .expect("mount tmpfs");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: mounts a tmpfs"]
async fn image_fault_full_store_fails_clearly_leaves_nothing_and_pulls_once_freed() {
    let reg = Registry::start(Kind::Plain);
    // blobs that do not fit, and a blob that fits but unpacks to more than the disk holds (not
    // zeros: the unpacker writes those as holes)
    let (_l, big) = big_image(&reg, "full", 6);
    let z = Layout::new();
    z.image(
        "zeros",
        "amd64",
        &[vec![("zeros", b"berth\n".repeat(4 << 20))]],
    );
    reg.push(&z.path(), "zeros", "test/zeros:z", false);
    let dir = tempfile::tempdir().unwrap();
    tmpfs(dir.path(), "4m", false);
    let _m = Tmpfs(dir.path().to_path_buf());
    let s = Store::open(
        dir.path(),
        RegistryConfig {
            insecure: vec![reg.host()],
            retry: policy(),
            ..Default::default()
        },
    )
    .unwrap();
    let store = dir.path().display().to_string();
    let names = [
        format!("{}/test/big:full", reg.host()),
        format!("{}/test/zeros:z", reg.host()),
    ];
    for (name, during) in names.iter().zip([false, true]) {
        let (res, seen) = pull_watching(&s, name).await;
        let e = res.expect_err("disk full");
        let m = e.to_string();
        assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
        assert!(
            m.contains(&store) && m.contains("No space left on device"),
            "{m}"
        );
        assert!(m.contains("bytes free"), "{m}");
        assert_eq!(
            m.contains("checked before fetching"),
            !during,
            "{name}: found full before or during the transfer: {m}"
        );
        assert!(
            seen.is_empty(),
            "a full disk is not retried within the pull: {seen:?}"
        );
        assert!(!has_blob(dir.path(), &big));
        assert!(ingest_is_empty(dir.path()), "partial blob left");
        let layers: Vec<_> = std::fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            layers.len() <= 1,
            "only the small layer may be complete: {layers:?}"
        );
        assert!(assert_intact(dir.path()).is_empty());
    }
    // space freed: the same pulls succeed
    tmpfs(dir.path(), "96m", true);
    for name in &names {
        let img = s
            .pull(name, &PullOptions::default())
            .await
            .expect("pull once freed");
        assert!(s.layer_path(img.chain_ids.last().unwrap()).is_dir());
    }
    assert!(has_blob(dir.path(), &big));
    assert_eq!(assert_intact(dir.path()).len(), 2);
}

//! Image store against a real registry (Debian's docker-registry on loopback): pulls over plain
//! HTTP, TLS + basic auth and TLS + bearer tokens, platform choice, the store read by skopeo and
//! umoci, and fault cases that must each give a clear error and leave the store intact.

use berth_agent::image::{Error, Progress, PullOptions, RegistryConfig, RetryPolicy, Store};
use berth_tests::registry::{
    CutProxy, IDENTITY_TOKEN, Kind, Layout, PASS, Registry, USER, assert_intact, big_image,
    has_blob, random_bytes,
};
use std::process::Command;
use std::sync::Arc;

fn store(reg: &Registry, auth: Option<(&str, &str)>, with_ca: bool) -> (tempfile::TempDir, Store) {
    let dir = tempfile::Builder::new()
        .prefix("berth-store-")
        .tempdir()
        .expect("tempdir");
    let mut cfg = RegistryConfig::default();
    if reg.kind == Kind::Plain {
        cfg.insecure.push(reg.host());
    }
    if with_ca {
        cfg.certs_dirs.push(reg.certs_d());
    }
    if let Some((u, p)) = auth {
        cfg.auth_files.push(reg.auth_file(u, p));
    }
    // faults are to show here as the error they are, not to be retried away
    cfg.retry = RetryPolicy::none();
    let s = Store::open(dir.path(), cfg).expect("open store");
    (dir, s)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry, skopeo, umoci"]
async fn image_pull_plain_index_platform_and_layout_readable_by_skopeo_umoci() {
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    l.busybox("amd64");
    l.two_platform_index("multi", "amd64");
    reg.push(&l.path(), "multi", "test/multi:v1", true);
    let (dir, s) = store(&reg, None, false);
    let name = format!("{}/test/multi:v1", reg.host());
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let opts = PullOptions {
        progress: Some(Arc::new(tx)),
        ..Default::default()
    };
    let img = s.pull(&name, &opts).await.expect("pull");
    let p = rx.borrow().clone();
    assert_eq!((p.layers_done, p.layers_total), (1, 1));
    assert_eq!(p.bytes_done, p.bytes_total);
    assert_eq!(img.config.architecture().to_string(), "amd64");
    let lower = s.layer_path(&img.chain_ids[0]);
    assert_eq!(
        std::fs::read(lower.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );

    // the other platform on request
    let arm = PullOptions {
        platform: berth_agent::image::manifest::platform("linux", "arm64", None),
        ..Default::default()
    };
    let a = s
        .pull(&format!("{}/test/multi:v1", reg.host()), &arm)
        .await
        .expect("pull arm64");
    assert_eq!(
        std::fs::read_to_string(s.layer_path(&a.chain_ids[0]).join("etc/arch")).unwrap(),
        "arm64\n"
    );
    let names = assert_intact(dir.path());
    assert_eq!(
        names,
        vec![name.clone()],
        "one name, now pointing at the arm64 image"
    );

    // a present image is not fetched again: blobs keep their inodes
    let amd = s
        .pull(
            &format!("{}/test/multi:v1", reg.host()),
            &PullOptions::default(),
        )
        .await
        .unwrap();
    let blob = dir
        .path()
        .join("blobs/sha256")
        .join(amd.manifest.layers()[0].digest().digest());
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&blob).unwrap());
    s.pull(&name, &PullOptions::default()).await.unwrap();
    assert_eq!(
        ino,
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&blob).unwrap())
    );

    // Docker v2 schema 2 manifests (what Docker Hub mostly serves)
    reg.push_as(&l.path(), "amd64", "test/v2s2:v1", false, Some("v2s2"));
    let d = s
        .pull(
            &format!("{}/test/v2s2:v1", reg.host()),
            &PullOptions::default(),
        )
        .await
        .expect("docker v2 pull");
    assert_eq!(
        d.manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .as_deref(),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    assert_eq!(
        d.diff_ids, amd.diff_ids,
        "same layers whatever the manifest format"
    );
    assert!(s.layer_path(&d.chain_ids[0]).join("bin/busybox").exists());

    // skopeo and umoci read the store
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{name}", dir.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"].as_str(), Some(amd.digest.as_str()));
    let ls = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains(&name));
    let bundle = tempfile::tempdir().unwrap();
    let st = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{name}", dir.path().display()))
        .arg(bundle.path().join("b"))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(bundle.path().join("b/rootfs/bin/busybox").exists());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry with TLS and basic auth"]
async fn image_pull_tls_basic_auth_wrong_credentials_and_unknown_ca() {
    let reg = Registry::start(Kind::Basic);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "test/bb:v1", false);
    let name = format!("{}/test/bb:v1", reg.host());

    let (dir, s) = store(&reg, Some((USER, "wrong")), true);
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("wrong password");
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert!(assert_intact(dir.path()).is_empty());

    let (dir, s) = store(&reg, Some((USER, PASS)), false);
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("unknown CA");
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert!(
        e.to_string().contains("UnknownIssuer") || e.to_string().contains("certificate"),
        "{e}"
    );
    assert!(assert_intact(dir.path()).is_empty());

    let (dir, s) = store(&reg, Some((USER, PASS)), true);
    let img = s
        .pull(&name, &PullOptions::default())
        .await
        .expect("pull with credentials and CA");
    assert!(s.layer_path(&img.chain_ids[0]).join("bin/busybox").exists());
    assert_eq!(assert_intact(dir.path()), vec![name.clone()]);
    let e = s
        .pull(
            &format!("{}/test/missing:v1", reg.host()),
            &PullOptions::default(),
        )
        .await
        .expect_err("404");
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry with TLS and a bearer token server"]
async fn image_pull_bearer_token() {
    let reg = Registry::start(Kind::Token);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "test/bb:v1", false);
    let name = format!("{}/test/bb:v1", reg.host());
    let (dir, s) = store(&reg, Some((USER, "nope")), true);
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("wrong password");
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(assert_intact(dir.path()).is_empty());
    let (dir, s) = store(&reg, Some((USER, PASS)), true);
    s.pull(&name, &PullOptions::default())
        .await
        .expect("token pull");
    assert_eq!(assert_intact(dir.path()), vec![name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry with TLS and basic auth"]
async fn image_pull_credentials_from_credential_helper() {
    let reg = Registry::start(Kind::Basic);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "test/bb:v1", false);
    let name = format!("{}/test/bb:v1", reg.host());
    let good = format!("berth-good-{}", std::process::id());
    let bad = format!("berth-bad-{}", std::process::id());
    let bin = reg.cred_helper(&good, USER, PASS);
    reg.cred_helper(&bad, USER, "wrong");
    let store_with = |config: std::path::PathBuf| {
        let dir = tempfile::Builder::new()
            .prefix("berth-store-")
            .tempdir()
            .unwrap();
        let cfg = RegistryConfig {
            certs_dirs: vec![reg.certs_d()],
            auth_files: vec![config],
            credential_helper_dirs: vec![bin.clone()],
            ..Default::default()
        };
        let s = Store::open(dir.path(), cfg).unwrap();
        (dir, s)
    };

    // the registry's credHelpers entry wins over a credsStore that has wrong credentials
    let (dir, s) = store_with(reg.helper_config(&good, Some(&bad)));
    let img = s
        .pull(&name, &PullOptions::default())
        .await
        .expect("pull with credentials from the helper");
    assert!(s.layer_path(&img.chain_ids[0]).join("bin/busybox").exists());
    assert_eq!(assert_intact(dir.path()), vec![name.clone()]);
    let asked = std::fs::read_to_string(bin.join(format!("{good}.log"))).unwrap();
    assert_eq!(
        asked.lines().collect::<Vec<_>>(),
        vec![reg.host().as_str()],
        "the helper is asked once, about the registry's host:port"
    );
    assert!(!bin.join(format!("{bad}.log")).exists(), "credsStore asked");

    // wrong credentials from the helper: a 401 that names the helper
    let (dir, s) = store_with(reg.helper_config(&bad, None));
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("wrong credentials from the helper");
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("401") && msg.contains(&reg.host()), "{msg}");
    assert!(
        msg.contains(&format!("credentials from helper docker-credential-{bad}")),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong"),
        "the secret stays out of messages: {msg}"
    );
    assert!(assert_intact(dir.path()).is_empty());

    // a helper that is not installed: a clear error before any request
    let (_dir, s) = store_with(reg.helper_config("berth-absent", None));
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("helper not installed");
    assert!(matches!(e, Error::CredentialHelper { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("docker-credential-berth-absent for registry"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry with TLS and a bearer token server"]
async fn image_pull_identity_token_from_helper_and_config() {
    let reg = Registry::start(Kind::Token);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "test/bb:v1", false);
    let name = format!("{}/test/bb:v1", reg.host());
    let good = format!("berth-idtok-{}", std::process::id());
    let bad = format!("berth-badtok-{}", std::process::id());
    let bin = reg.cred_helper(&good, "<token>", IDENTITY_TOKEN);
    reg.cred_helper(&bad, "<token>", "not-the-token");
    let store_with = |config: std::path::PathBuf| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RegistryConfig {
            certs_dirs: vec![reg.certs_d()],
            auth_files: vec![config],
            credential_helper_dirs: vec![bin.clone()],
            ..Default::default()
        };
        let s = Store::open(dir.path(), cfg).unwrap();
        (dir, s)
    };

    // a helper's `<token>` answer is traded at the token server for a pull token
    let (dir, s) = store_with(reg.helper_config(&good, None));
    s.pull(&name, &PullOptions::default())
        .await
        .expect("pull with an identity token from the helper");
    assert_eq!(assert_intact(dir.path()), vec![name.clone()]);

    // so is config.json's `identitytoken`
    let cfg = reg.dir.path().join("config-identitytoken.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"auths": {reg.host(): {"identitytoken": IDENTITY_TOKEN}}}).to_string(),
    )
    .unwrap();
    let (dir, s) = store_with(cfg);
    s.pull(&name, &PullOptions::default())
        .await
        .expect("pull with an identity token from config.json");
    assert_eq!(assert_intact(dir.path()), vec![name.clone()]);

    // a refused identity token: 401, naming the token server and the helper
    let (dir, s) = store_with(reg.helper_config(&bad, None));
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("refused identity token");
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("refused the identity token"), "{msg}");
    assert!(msg.contains(&format!("docker-credential-{bad}")), "{msg}");
    assert!(
        !msg.contains("not-the-token"),
        "the secret stays out: {msg}"
    );
    assert!(assert_intact(dir.path()).is_empty());

    // a registry with basic auth only cannot take an identity token
    let basic = Registry::start(Kind::Basic);
    basic.push(&l.path(), "v1", "test/bb:v1", false);
    let bin2 = basic.cred_helper(&good, "<token>", IDENTITY_TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        dir.path(),
        RegistryConfig {
            certs_dirs: vec![basic.certs_d()],
            auth_files: vec![basic.helper_config(&good, None)],
            credential_helper_dirs: vec![bin2],
            ..Default::default()
        },
    )
    .unwrap();
    let e = s
        .pull(
            &format!("{}/test/bb:v1", basic.host()),
            &PullOptions::default(),
        )
        .await
        .expect_err("identity token on a basic-auth registry");
    assert!(
        e.to_string().contains("does not use token authentication"),
        "{e}"
    );
}

/// Unmounts on drop (a failed assertion must not leave the overlay behind).
struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry, overlayfs mounts"]
async fn image_pull_60_layers_mounts_as_overlay() {
    const N: usize = 60;
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    let names: Vec<String> = (0..N).map(|i| format!("layers/{i}")).collect();
    let layers: Vec<Vec<(&str, Vec<u8>)>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            vec![
                (n.as_str(), format!("layer {i}").into_bytes()),
                ("top", i.to_string().into_bytes()),
            ]
        })
        .collect();
    l.image("many", "amd64", &layers);
    reg.push(&l.path(), "many", "test/many:v1", false);
    let (dir, s) = store(&reg, None, false);
    let name = format!("{}/test/many:v1", reg.host());
    let img = s.pull(&name, &PullOptions::default()).await.expect("pull");
    assert_eq!(img.chain_ids.len(), N);

    let id = format!("many-{}", std::process::id());
    let p = s.prepare_rootfs(&id, &name).await.expect("prepare rootfs");
    let opts = berth_shim::rootfs::overlay_options(&p.rootfs).unwrap();
    assert!(
        opts.len() > 4096,
        "the lowerdir= option string ({} bytes) must not fit in mount(2)'s page for this test",
        opts.len()
    );
    let target = dir.path().join("merged");
    berth_shim::rootfs::mount_overlay(&p.rootfs, &target).expect("mount 60-layer overlay");
    let guard = Unmount(target.clone());
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(target.join(n)).unwrap(),
            format!("layer {i}"),
            "{n}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(target.join("top")).unwrap(),
        (N - 1).to_string(),
        "the topmost layer wins"
    );
    std::fs::write(target.join("new"), "x").unwrap();
    assert!(
        p.rootfs.upper.join("new").exists(),
        "writes go to the upper dir"
    );
    berth_shim::rootfs::unmount(&target).expect("unmount");
    drop(guard);
    assert!(!target.join("top").exists());

    // a missing layer among many: the error names it
    let mut bad = p.rootfs.clone();
    bad.lower.insert(N / 2, dir.path().join("no-such-layer"));
    let e = berth_shim::rootfs::mount_overlay(&bad, &target)
        .expect_err("missing lower dir")
        .to_string();
    let _guard = Unmount(target.clone());
    assert!(
        e.contains("lowerdir+") && e.contains("no-such-layer") && e.contains("61 layers"),
        "{e}"
    );
    assert!(e.contains("No such file"), "{e}");
    s.release_rootfs(&id).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_registry_killed_mid_blob_then_resumed() {
    use std::sync::atomic::Ordering;
    let mut reg = Registry::start(Kind::Plain);
    let (_l, big) = big_image(&reg, "k", 32);
    // the proxy stalls the transfer at 2 MB so the registry dies with the blob half sent
    let proxy = CutProxy::start(reg.port, 2 << 20);
    proxy.hold.store(true, Ordering::Relaxed);
    let host = format!("127.0.0.1:{}", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(
        dir.path(),
        RegistryConfig {
            insecure: vec![host.clone()],
            retry: RetryPolicy::none(),
            ..Default::default()
        },
    )
    .unwrap();
    let name = format!("{host}/test/big:k");
    let pull = tokio::spawn({
        let (s, name) = (s.clone(), name.clone());
        async move { s.pull(&name, &PullOptions::default()).await }
    });
    let t = std::time::Instant::now();
    while proxy.forwarded.load(Ordering::Relaxed) < 2 << 20 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "transfer never reached the stall point"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    reg.kill();
    proxy.limit.store(u64::MAX, Ordering::Relaxed);
    proxy.hold.store(false, Ordering::Relaxed);
    let e = pull.await.unwrap().expect_err("registry killed mid-blob");
    assert!(
        matches!(e, Error::Interrupted { .. } | Error::Transport { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains(&big) || e.to_string().contains(&host),
        "{e}"
    );
    assert!(!has_blob(dir.path(), &big));
    assert!(assert_intact(dir.path()).is_empty());
    let kept = std::fs::metadata(
        dir.path()
            .join("ingest")
            .join(big.trim_start_matches("sha256:")),
    )
    .map(|m| m.len())
    .unwrap_or(0);
    assert!(kept >= 2 << 20, "partial download kept ({kept} bytes)");

    reg.restart();
    let before = proxy.forwarded.load(Ordering::Relaxed);
    let img = s
        .pull(&name, &PullOptions::default())
        .await
        .expect("pull after the registry is back");
    let moved = proxy.forwarded.load(Ordering::Relaxed) - before;
    assert!(
        moved + kept < (33 << 20) + (1 << 20),
        "resumed: {moved} bytes moved, {kept} kept"
    );
    assert!(has_blob(dir.path(), &big));
    assert!(s.layer_path(&img.chain_ids[1]).join("big").exists());
    assert_eq!(assert_intact(dir.path()), vec![name]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_corrupt_blob_and_missing_blob_are_refused() {
    let reg = Registry::start(Kind::Plain);
    let (_l, big) = big_image(&reg, "c", 2);
    let data = reg.blob_data(&big);
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    std::fs::write(&data, random_bytes(len)).unwrap();
    let (dir, s) = store(&reg, None, false);
    let e = s
        .pull(
            &format!("{}/test/big:c", reg.host()),
            &PullOptions::default(),
        )
        .await
        .expect_err("corrupt blob");
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&big), "{e}");
    assert!(!has_blob(dir.path(), &big));
    assert!(assert_intact(dir.path()).is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .count(),
        0,
        "bad partial download kept"
    );

    std::fs::remove_dir_all(data.parent().unwrap()).unwrap();
    let e = s
        .pull(
            &format!("{}/test/big:c", reg.host()),
            &PullOptions::default(),
        )
        .await
        .expect_err("missing blob");
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(assert_intact(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_pull_cut_mid_blob_then_resumed() {
    let reg = Registry::start(Kind::Plain);
    let (_l, big) = big_image(&reg, "r", 8);
    let proxy = CutProxy::start(reg.port, 3 << 20);
    let host = format!("127.0.0.1:{}", proxy.port);
    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistryConfig {
        insecure: vec![host.clone()],
        retry: RetryPolicy::none(),
        ..Default::default()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    let name = format!("{host}/test/big:r");
    let e = s
        .pull(&name, &PullOptions::default())
        .await
        .expect_err("cut mid-blob");
    assert!(
        matches!(e, Error::Interrupted { .. } | Error::Transport { .. }),
        "{e}"
    );
    assert!(!has_blob(dir.path(), &big));
    assert!(assert_intact(dir.path()).is_empty());
    let partial = dir
        .path()
        .join("ingest")
        .join(big.trim_start_matches("sha256:"));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0, "partial download kept for resuming");

    proxy
        .limit
        .store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    let before = proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed);
    let img = s
        .pull(&name, &PullOptions::default())
        .await
        .expect("resumed pull");
    let moved = proxy.forwarded.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        moved < (8 << 20) + (1 << 20) - kept + (64 << 10),
        "resume fetched {moved} bytes although {kept} were kept"
    );
    assert!(has_blob(dir.path(), &big));
    assert!(s.layer_path(&img.chain_ids[1]).join("big").exists());
    assert_eq!(assert_intact(dir.path()), vec![name]);

    // the registry killed while a pull runs: clear error, store intact
    let mut reg = reg;
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = Store::open(
        dir2.path(),
        RegistryConfig {
            insecure: vec![reg.host()],
            retry: RetryPolicy::none(),
            ..Default::default()
        },
    )
    .unwrap();
    reg.kill();
    let e = s2
        .pull(
            &format!("{}/test/big:r", reg.host()),
            &PullOptions::default(),
        )
        .await
        .expect_err("registry down");
    assert!(matches!(e, Error::Transport { .. }), "{e}");
    assert!(assert_intact(dir2.path()).is_empty());
}

struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: mounts a tmpfs"]
async fn image_store_on_full_tmpfs_fails_cleanly() {
    let reg = Registry::start(Kind::Plain);
    let (_l, big) = big_image(&reg, "f", 6);
    let dir = tempfile::tempdir().unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        dir.path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4m"),
    )
    .expect("mount tmpfs");
    let _m = Tmpfs(dir.path().to_path_buf());
    let s = Store::open(
        dir.path(),
        RegistryConfig {
            insecure: vec![reg.host()],
            ..Default::default()
        },
    )
    .unwrap();
    let e = s
        .pull(
            &format!("{}/test/big:f", reg.host()),
            &PullOptions::default(),
        )
        .await
        .expect_err("disk full");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert!(!has_blob(dir.path(), &big));
    assert!(assert_intact(dir.path()).is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry, overlay dirs"]
async fn image_gc_keeps_what_containers_use_and_rootfs_lowers() {
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    l.busybox("a");
    l.image(
        "b",
        "amd64",
        &[
            vec![("etc/b", b"b".to_vec())],
            vec![("etc/c", b"c".to_vec())],
        ],
    );
    reg.push(&l.path(), "a", "test/a:1", false);
    reg.push(&l.path(), "b", "test/b:1", false);
    let (dir, s) = store(&reg, None, false);
    let (a, b) = (
        format!("{}/test/a:1", reg.host()),
        format!("{}/test/b:1", reg.host()),
    );
    s.pull(
        &a,
        &PullOptions {
            unpack: false,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let bi = s.pull(&b, &PullOptions::default()).await.unwrap();
    let p = s
        .prepare_rootfs("gc-test-ctr", &a)
        .await
        .expect("prepare unpacks what pull did not");
    assert_eq!(p.rootfs.lower.len(), 1);
    assert!(p.rootfs.lower[0].join("bin/busybox").exists());
    assert!(p.rootfs.upper.is_dir() && p.rootfs.work.is_dir());
    let pb = s.prepare_rootfs("gc-test-b", &b).await.unwrap();
    assert_eq!(
        pb.rootfs.lower,
        vec![
            s.layer_path(&bi.chain_ids[1]),
            s.layer_path(&bi.chain_ids[0])
        ],
        "topmost first"
    );
    s.release_rootfs("gc-test-b").unwrap();
    assert!(matches!(s.remove(&a, false), Err(Error::InUse { .. })));
    s.remove(&a, true).unwrap();
    s.remove(&b, false).unwrap();
    let r = s.gc(&[]).await.unwrap();
    assert_eq!(r.layers_removed, 2, "{r:?}");
    assert!(
        p.rootfs.lower[0].join("bin/busybox").exists(),
        "gc removed a layer a container uses"
    );
    assert!(!s.layer_path(&bi.chain_ids[0]).exists());
    assert_intact(dir.path());
    s.release_rootfs("gc-test-ctr").unwrap();
    let r = s.gc(&[]).await.unwrap();
    assert_eq!(r.layers_removed, 1);
    assert_eq!(
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: skopeo, umoci"]
async fn image_import_docker_and_oci_archives_once() {
    let l = Layout::new();
    l.busybox("v1");
    let t = tempfile::tempdir().unwrap();
    let (oa, da) = (t.path().join("o.tar"), t.path().join("d.tar"));
    for (dest, src) in [
        (
            format!("oci-archive:{}", oa.display()),
            format!("oci:{}:v1", l.path().display()),
        ),
        (
            format!("docker-archive:{}:example.com/imp/docker:v1", da.display()),
            format!("oci:{}:v1", l.path().display()),
        ),
    ] {
        let o = Command::new("skopeo")
            .args(["copy", "--quiet", &src, &dest])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), RegistryConfig::default()).unwrap();
    let d = s.import_archive(&da, None).await.expect("docker-archive");
    assert_eq!(d.name, "example.com/imp/docker:v1");
    s.unpack(&d).await.unwrap();
    assert!(s.layer_path(&d.chain_ids[0]).join("bin/busybox").exists());
    let o = s
        .import_archive(&oa, Some("imp/oci:v1"))
        .await
        .expect("oci-archive");
    assert_eq!(o.name, "docker.io/imp/oci:v1");
    assert_eq!(o.diff_ids, d.diff_ids, "same content, same layers");
    let rec = dir.path().join("imports");
    let n = std::fs::read_dir(&rec).unwrap().count();
    let again = s.import_archive(&da, None).await.unwrap();
    assert_eq!(again.digest, d.digest);
    assert_eq!(std::fs::read_dir(&rec).unwrap().count(), n, "imported once");
    let mut names = assert_intact(dir.path());
    names.sort();
    assert_eq!(
        names,
        vec![
            "docker.io/imp/oci:v1".to_string(),
            "example.com/imp/docker:v1".to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: loopback servers"]
async fn image_registry_status_errors_are_clear() {
    use berth_tests::registry::StatusServer;
    for (code, reason) in [
        (429u16, "Too Many Requests"),
        (403, "Forbidden"),
        (503, "Service Unavailable"),
        (500, "Internal Server Error"),
    ] {
        let srv = StatusServer::start(code, reason);
        let host = format!("127.0.0.1:{}", srv.port);
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            dir.path(),
            RegistryConfig {
                insecure: vec![host.clone()],
                retry: RetryPolicy::none(),
                ..Default::default()
            },
        )
        .unwrap();
        let e = s
            .pull(&format!("{host}/x/y:z"), &PullOptions::default())
            .await
            .expect_err("error status");
        let ok = match code {
            429 => matches!(e, Error::TooManyRequests { .. }),
            403 => matches!(e, Error::Denied { .. }),
            c => matches!(e, Error::Server { code, .. } if code == c),
        };
        assert!(ok, "{code}: {e:?}");
        assert!(e.to_string().contains(&code.to_string()), "{e}");
        assert!(e.to_string().contains(&host), "{e}");
        assert!(assert_intact(dir.path()).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real registry"]
async fn image_docker_hub_names_go_to_the_mirror() {
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "library/busybox:berth-mirror-test", false);
    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistryConfig {
        insecure: vec![reg.host()],
        mirrors: vec![reg.host()],
        ..Default::default()
    };
    let s = Store::open(dir.path(), cfg).unwrap();
    // two pulls of one image at once (two containers starting together) both succeed
    let o = PullOptions::default();
    let (img, img2) = tokio::join!(
        s.pull("busybox:berth-mirror-test", &o),
        s.pull("docker.io/library/busybox:berth-mirror-test", &o)
    );
    let img = img.expect("pull through the mirror");
    assert_eq!(img2.expect("concurrent pull").digest, img.digest);
    assert_eq!(img.name, "docker.io/library/busybox:berth-mirror-test");
    assert!(
        s.image("busybox:berth-mirror-test").unwrap().is_some(),
        "found by its short name"
    );
    assert_eq!(assert_intact(dir.path()), vec![img.name]);
}

#[test]
#[ignore = "needs root: real registry, the berth binary"]
fn image_cli_pull_images_prepare_rmi_gc() {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/berth");
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "cli/bb:v1", false);
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/cli/bb:v1", reg.host());
    let berth = |args: &[&str]| {
        let o = Command::new(&bin)
            .args(args)
            .arg("--root")
            .arg(dir.path())
            .arg("--insecure-registry")
            .arg(reg.host())
            .output()
            .expect("run berth");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, out, err) = berth(&["pull", &name]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&name), "{out}");
    assert!(err.contains("1/1 layers"), "progress printed: {err}");
    let (ok, out, _) = berth(&["images"]);
    assert!(ok && out.contains(&name), "{out}");
    let (ok, out, err) = berth(&["prepare", "cli-ctr", &name]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lower = v["rootfs"]["lower"][0].as_str().unwrap();
    assert!(std::path::Path::new(lower).join("bin/busybox").exists());
    assert_eq!(v["config"]["config"]["Cmd"][0].as_str(), Some("/bin/sh"));
    let (ok, _, err) = berth(&["rmi", &name]);
    assert!(
        !ok && err.contains("cli-ctr"),
        "rmi refuses while a container uses it: {err}"
    );
    let (ok, _, err) = berth(&["release", "cli-ctr"]);
    assert!(ok, "{err}");
    let (ok, _, err) = berth(&["rmi", &name]);
    assert!(ok, "{err}");
    let (ok, out, err) = berth(&["gc"]);
    assert!(
        ok && out.contains("removed 3 blobs and 1 layers"),
        "{out}{err}"
    );
    let (ok, _, err) = berth(&["pull", &format!("{}/cli/none:v1", reg.host())]);
    assert!(
        !ok && err.contains("not found") && err.contains("404"),
        "{err}"
    );
}

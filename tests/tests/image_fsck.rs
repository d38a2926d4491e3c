//! `berth fsck` on a store filled from a real registry (Debian's docker-registry on loopback) and
//! a berthd state directory beside it: a corrupt blob, a truncated record of a container's image,
//! leftovers of an interrupted write, unpack and import, and a container that no longer exists;
//! what fsck reports, repairs and leaves, its exit codes, and a pull after it.

use berth_tests::registry::{Kind, Layout, Registry};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn berth(args: &[&str], root: &Path) -> (i32, String) {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/berth");
    let o = Command::new(bin)
        .args(args)
        .env("BERTH_CONFIG", root.join("berthd.yaml"))
        .output()
        .expect("run berth");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn findings(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["object"].as_str().unwrap().to_owned(),
                f["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root: real registry, skopeo, the berth binary"]
fn image_fsck_repairs_a_corrupt_store_and_a_pull_after_it_works() {
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "fsck/bb:v1", false);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let run = dir.path().join("run");
    let specs = dir.path().join("specs");
    for d in [&root, &run.join("containers"), &specs] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(root.parent().unwrap().join("berthd.yaml"), "").unwrap();
    let (r, s) = (root.to_str().unwrap(), run.to_str().unwrap());
    let fsck_args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["fsck", "--state-dir", r, "--run-dir", s, "--spec-dir"]
            .map(str::to_owned)
            .to_vec();
        v.push(specs.display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let fsck = |extra: &[&'static str]| -> (i32, Value) {
        let a = fsck_args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, out) = berth(&a, dir.path());
        let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        (code, v)
    };
    let name = format!("{}/fsck/bb:v1", reg.host());
    let store = ["--root", r, "--insecure-registry"];
    let host = reg.host();
    let pull = |what: &str| {
        let mut a = vec!["pull", "-q", &name];
        a.extend(store);
        a.push(&host);
        let (code, out) = berth(&a, dir.path());
        assert_eq!(code, 0, "{what}: {out}");
    };
    pull("first pull");
    let prepare = |c: &str| {
        let mut a = vec!["prepare", c, &name];
        a.extend(store);
        a.push(&host);
        let (code, out) = berth(&a, dir.path());
        assert_eq!(code, 0, "{out}");
        std::fs::create_dir_all(run.join("containers").join(c).join("rootfs")).unwrap();
    };
    // `web` has a spec and berthd's record of what it started.
    prepare("web");
    let digest = {
        let (_, out) = berth(&["images", "--json", "--root", r], dir.path());
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0]["digest"].as_str().unwrap().to_owned()
    };
    std::fs::write(specs.join("web.yaml"), format!("image: {name}\n")).unwrap();
    std::fs::create_dir_all(root.join("agent")).unwrap();
    let web_record = format!(r#"{{"hash":"h","image_digest":"{digest}"}}"#);
    std::fs::write(root.join("agent/web.json"), &web_record).unwrap();
    let (code, v) = fsck(&["--json"]);
    assert_eq!((code, findings(&v)), (0, vec![]), "{v}");
    // `gone` has neither: its bundle and rootfs are leftovers.
    prepare("gone");
    // Damage: a layer blob flipped, web's image record truncated, temp files left behind.
    let layer = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(&layer).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&layer, data).unwrap();
    let rec = root.join("containers/web/image.json");
    let len = std::fs::metadata(&rec).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&rec)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    std::fs::write(root.join("agent/.tmp-web.json-1073741823-0"), "{\"ha").unwrap();
    std::fs::create_dir_all(root.join("layers/.tmp-abcdef-1073741823-1/etc")).unwrap();

    let layer_obj = format!(
        "blob sha256:{}",
        layer.file_name().unwrap().to_str().unwrap()
    );
    let expected: Vec<(String, String)> = [
        (layer_obj.as_str(), ""),
        ("layer .tmp-abcdef-1073741823-1", ""),
        (
            &*format!(
                "file {}",
                root.join("agent/.tmp-web.json-1073741823-0").display()
            ),
            "STATUS",
        ),
        ("bundle gone", ""),
        ("rootfs gone", ""),
        ("rootfs web", ""),
    ]
    .iter()
    .map(|(o, s)| (o.to_string(), s.to_string()))
    .collect();
    let with = |s: &str| -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(o, _)| (o.clone(), s.to_owned()))
            .collect()
    };
    // --dry-run says what it would do and does nothing.
    let (code, v) = fsck(&["--json", "--dry-run"]);
    assert_eq!((code, findings(&v)), (1, with("would_repair")), "{v}");
    assert_eq!(std::fs::metadata(&rec).unwrap().len(), len / 2);
    assert!(layer.exists());
    let (code, v) = fsck(&["--json"]);
    assert_eq!((code, findings(&v)), (1, with("repaired")), "{v}");
    let f = &v["findings"][0];
    assert!(
        f["problem"]
            .as_str()
            .unwrap()
            .contains("does not match its digest"),
        "{f}"
    );
    assert!(!layer.exists(), "the corrupt blob is gone");
    let repaired = std::fs::read(&rec).unwrap();
    let r2: Value = serde_json::from_slice(&repaired).unwrap();
    assert_eq!(r2["digest"], digest.as_str(), "{r2}");
    assert!(!run.join("containers/gone").exists());
    assert!(!root.join("containers/gone").exists());
    assert!(
        root.join("containers/web/upper").is_dir(),
        "web's rootfs kept"
    );
    // Clean now; the text report says so.
    let (code, v) = fsck(&["--json"]);
    assert_eq!((code, findings(&v)), (0, vec![]), "{v}");
    let a = fsck_args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out) = berth(&a, dir.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("clean"), "{out}");

    // A problem fsck cannot repair: web's record names no stored image. Exit code 2.
    std::fs::write(&rec, "{").unwrap();
    std::fs::write(
        root.join("agent/web.json"),
        r#"{"hash":"h","image_digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}"#,
    )
    .unwrap();
    let (code, v) = fsck(&["--json"]);
    assert_eq!(
        (code, findings(&v)),
        (2, vec![("rootfs web".into(), "not_repaired".into())]),
        "{v}"
    );
    std::fs::write(&rec, &repaired).unwrap();
    std::fs::write(root.join("agent/web.json"), &web_record).unwrap();

    // The pull fetches the removed blob again, and the store checks clean.
    pull("pull after fsck");
    assert!(layer.exists(), "the layer blob is fetched again");
    let (code, v) = fsck(&["--json"]);
    assert_eq!((code, findings(&v)), (0, vec![]), "{v}");
}

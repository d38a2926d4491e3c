//! The image commands of the `berth` CLI (the store used directly) against a real registry
//! (Debian's docker-registry on loopback): every one with `--json` prints JSON that parses and says
//! what happened.

use berth_tests::registry::{Kind, Layout, Registry};
use serde_json::Value;
use std::process::Command;

#[test]
#[ignore = "needs root: real registry, skopeo, the berth binary"]
fn image_cli_every_command_prints_json() {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/berth");
    let reg = Registry::start(Kind::Plain);
    let l = Layout::new();
    l.busybox("v1");
    reg.push(&l.path(), "v1", "cli/json:v1", false);
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/cli/json:v1", reg.host());
    let json = |args: &[&str]| -> Value {
        let o = Command::new(&bin)
            .args(args)
            .arg("--json")
            .arg("--root")
            .arg(dir.path())
            .arg("--insecure-registry")
            .arg(reg.host())
            .output()
            .expect("run berth");
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(o.status.success(), "berth {args:?} --json: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("berth {args:?} --json printed no JSON ({e}): {out}"))
    };

    let pulled = json(&["pull", &name]);
    assert_eq!(pulled["name"], name.as_str(), "{pulled}");
    let digest = pulled["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{pulled}");
    let images = json(&["images"]);
    assert_eq!(images.as_array().map(Vec::len), Some(1), "{images}");
    assert_eq!(images[0]["name"], name.as_str());
    assert_eq!(images[0]["digest"], digest.as_str());
    assert!(images[0]["size"].as_u64().unwrap() > 0, "{images}");
    let prepared = json(&["prepare", "cli-ctr", &name]);
    assert_eq!(prepared["digest"], digest.as_str(), "{prepared}");
    assert_eq!(json(&["release", "cli-ctr"])["released"], "cli-ctr");

    let t = tempfile::tempdir().unwrap();
    let archive = t.path().join("d.tar");
    let o = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", l.path().display()))
        .arg(format!(
            "docker-archive:{}:example.com/cli/imp:v1",
            archive.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let imported = json(&["import", archive.to_str().unwrap()]);
    assert_eq!(imported["name"], "example.com/cli/imp:v1", "{imported}");
    assert!(imported["digest"].as_str().unwrap().starts_with("sha256:"));

    let rmi = json(&["rmi", &name, "example.com/cli/imp:v1"]);
    assert_eq!(
        rmi,
        serde_json::json!({"untagged": [name, "example.com/cli/imp:v1"]})
    );
    let gc = json(&["gc"]);
    assert!(gc["blobs_removed"].as_u64().unwrap() > 0, "{gc}");
    assert!(gc["layers_removed"].as_u64().unwrap() > 0, "{gc}");
    assert!(gc["bytes_freed"].as_u64().unwrap() > 0, "{gc}");
    assert_eq!(json(&["images"]), serde_json::json!([]));
}

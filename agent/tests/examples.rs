//! Every example berth ships is a spec `berth check` accepts: the files under `examples/` and the
//! YAML blocks of README.md, judged by the real `berth` binary. And a spec it refuses is refused with
//! its file, line and column.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn berth_check(files: &[PathBuf]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("check")
        .args(files)
        .output()
        .expect("run berth check")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_file_passes_berth_check() {
    let mut files = Vec::new();
    yaml_files(&workspace().join("examples"), &mut files);
    assert!(files.len() >= 3, "examples found: {files:?}");
    let out = berth_check(&files);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "berth check refused an example:\n{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok")).count(),
        files.len()
    );
}

/// The ```yaml blocks of README.md, each written to the file its first comment names
/// (`# /etc/berth/containers/web.yaml`), else `example<N>.yaml`; a network file's example
/// (`# /etc/berth/networks/NAME.yaml`) is judged by the network file parser.
#[test]
fn every_readme_example_passes_berth_check() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut networks = 0;
    for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
        let text = block.split("```").next().unwrap();
        if let Some(n) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# /etc/berth/networks/"))
        {
            berth_agent::network::parse_file(std::path::Path::new(n), text)
                .unwrap_or_else(|e| panic!("a README network example is refused: {e}"));
            networks += 1;
            continue;
        }
        let name = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# /etc/berth/containers/"))
            .and_then(|l| l.split(':').next())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("example{i}.yaml"));
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        files.push(p);
    }
    assert!(!files.is_empty(), "no yaml example in README.md");
    assert_eq!(networks, 1, "the network file example of README.md");
    let out = berth_check(&files);
    assert!(
        out.status.success(),
        "berth check refused a README example:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real binary, as a user runs it: published ports are accepted on the bridge and refused,
/// at their line, where the container has no address of its own to forward them to.
#[test]
fn berth_check_judges_ports_by_network_mode_with_the_line() {
    let d = tempfile::tempdir().unwrap();
    let bridge = d.path().join("web.yaml");
    std::fs::write(
        &bridge,
        "image: busybox\nports: [\"8080:80\", \"127.0.0.1:5353:53/udp\"]\n",
    )
    .unwrap();
    let out = berth_check(std::slice::from_ref(&bridge));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let host = d.path().join("host.yaml");
    std::fs::write(
        &host,
        "image: busybox\nnetwork_mode: host\nports: [\"8080:80\"]\n",
    )
    .unwrap();
    let out = berth_check(std::slice::from_ref(&host));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:", host.display()))
            && stderr.contains("`ports:` needs `network_mode: bridge`"),
        "{stderr}"
    );

    let bad = d.path().join("bad.yaml");
    std::fs::write(&bad, "image: busybox\nports: [\"9002-9000:80\"]\n").unwrap();
    let out = berth_check(std::slice::from_ref(&bad));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:", bad.display())),
        "{stderr}"
    );
}

//! berthd links the agent-shim contract (`berth-proto`) and not the shim or the runtime: neither
//! `berth-shim`, `berth-runtime` nor libseccomp may appear among berth-agent's normal
//! dependencies. Reads `cargo tree` of the workspace (offline, from Cargo.lock).

use berth_tests::systemd::workspace_dir;
use std::process::Command;

#[test]
fn agent_links_neither_shim_nor_runtime() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_dir())
        .args([
            "tree",
            "-p",
            "berth-agent",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "--locked",
            "--offline",
        ])
        .output()
        .expect("running cargo tree");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"berth-proto"), "{text}");
    for banned in [
        "berth-shim",
        "berth-runtime",
        "libseccomp",
        "libseccomp-sys",
    ] {
        assert!(
            !crates.contains(&banned),
            "berth-agent depends on {banned}:\n{text}"
        );
    }
}

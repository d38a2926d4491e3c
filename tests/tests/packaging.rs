//! berth installed the way a person installs it (`scripts/install.sh` into the root of a real
//! systemd booted in private namespaces) and run by the shipped `berthd.service` with no flags:
//! it reaches `active` through READY=1, runs the containers of /etc/berth/containers, leaves them
//! running when it stops, and an upgrade (binaries replaced, berthd restarted) restarts only the
//! containers whose spec changed.

use anyhow::{Context, Result, bail};
use berth_tests::agent::{Agent, IMAGE};
use berth_tests::systemd::{target_dir, workspace_dir};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn sleeper(extra: &str) -> String {
    format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: none\nrestart: always\n{extra}"
    )
}

/// `scripts/install.sh` with the test's debug binaries into the namespace's root.
fn install(a: &Agent) -> Result<()> {
    let out = Command::new(workspace_dir().join("scripts/install.sh"))
        .env("DESTDIR", a.sd.root_path())
        .env("PREFIX", "/usr/local")
        .env("BIN_DIR", target_dir().join("debug"))
        .output()
        .context("running scripts/install.sh")?;
    if !out.status.success() {
        bail!("install.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn spec_path(a: &Agent, name: &str) -> PathBuf {
    a.sd.root_path()
        .join("etc/berth/containers")
        .join(format!("{name}.yaml"))
}

/// (MainPID, InvocationID) of a container's unit.
fn identity(a: &Agent, name: &str) -> (String, String) {
    (a.show(name, "MainPID"), a.show(name, "InvocationID"))
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, installs berth into it, runs containers"]
fn packaging_unit_runs_berthd_and_upgrade_keeps_containers() {
    let a = Agent::start("pkg-unit").unwrap();
    // /var/lib/berth on a real file system, as on a host: the namespace's root is an overlay,
    // which cannot hold the upper directories of the containers' overlays.
    let state = a.sd.share_dir().join("state");
    a.sd.exec_inside(&["mkdir", "-p", "/var/lib/berth"])
        .unwrap();
    let m =
        a.sd.exec_inside(&["mount", "--bind", "/srv/tb/state", "/var/lib/berth"])
            .unwrap();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    assert!(state.is_dir());

    install(&a).unwrap();
    let root = a.sd.root_path();
    for f in [
        "usr/local/bin/berthd",
        "usr/local/bin/berth-shim",
        "usr/local/lib/systemd/system/berthd.service",
        "usr/local/lib/tmpfiles.d/berth.conf",
        "etc/berth/berthd.yaml",
        "usr/local/share/man/man8/berthd.8",
        "usr/local/share/man/man1/berth-ps.1",
        "usr/local/share/bash-completion/completions/berth",
    ] {
        assert!(root.join(f).is_file(), "{f} not installed");
    }
    std::fs::write(spec_path(&a, "keep"), sleeper("")).unwrap();
    std::fs::write(spec_path(&a, "edit"), sleeper("")).unwrap();

    a.sd.systemctl(&["daemon-reload"]).unwrap();
    // `systemctl start` of a Type=notify unit returns once berthd sent READY=1 (its first pass).
    a.sd.systemctl(&["start", "berthd.service"]).unwrap();
    assert_eq!(a.show_unit("berthd.service", "ActiveState"), "active");
    assert_eq!(a.show_unit("berthd.service", "Type"), "notify");
    let exec = a.show_unit("berthd.service", "ExecStart");
    assert!(
        exec.contains("argv[]=/usr/local/bin/berthd ;"),
        "berthd runs with flags: {exec}"
    );
    assert!(a.show_unit("berthd.service", "WatchdogUSec") != "0");
    assert!(
        !a.show_unit("berthd.service", "StatusText").is_empty(),
        "berthd sent no STATUS="
    );
    a.wait(T, "both containers active", || {
        a.active("keep") && a.active("edit")
    })
    .unwrap();
    let keep0 = identity(&a, "keep");
    let edit0 = identity(&a, "edit");

    // Stopping berthd leaves the containers alone.
    a.sd.systemctl(&["stop", "berthd.service"]).unwrap();
    assert_eq!(a.show_unit("berthd.service", "ActiveState"), "inactive");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(identity(&a, "keep"), keep0, "stopping berthd touched keep");
    assert_eq!(identity(&a, "edit"), edit0, "stopping berthd touched edit");
    assert!(a.active("keep") && a.active("edit"));
    // /run/berth outlives berthd: the running containers' bundles and shim sockets are there.
    assert!(
        root.join("run/berth/containers/keep/shim.sock").exists(),
        "stopping berthd removed the running containers' bundles"
    );

    // An upgrade while berthd is down: new binaries (new files, renamed over the old ones) and
    // an edited spec. Only the edited container is restarted when berthd comes back.
    let ino = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(root.join(p)).unwrap().ino()
    };
    let berthd_ino = ino("usr/local/bin/berthd");
    install(&a).unwrap();
    assert_ne!(
        ino("usr/local/bin/berthd"),
        berthd_ino,
        "berthd not replaced"
    );
    std::fs::write(spec_path(&a, "edit"), sleeper("environment: {V: \"2\"}\n")).unwrap();
    a.sd.systemctl(&["daemon-reload"]).unwrap();
    a.sd.systemctl(&["start", "berthd.service"]).unwrap();
    a.wait(T, "edit replaced", || {
        a.active("edit") && identity(&a, "edit").1 != edit0.1
    })
    .unwrap();
    assert_eq!(identity(&a, "keep"), keep0, "the upgrade restarted keep");
    // The new berth reaches the container that the old one started, through its shim.
    let out =
        a.sd.exec_inside(&["/usr/local/bin/berth", "exec", "keep", "echo", "still here"])
            .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "still here",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edit1 = identity(&a, "edit");

    // A restart of berthd with nothing changed restarts no container.
    let berthd0 = a.show_unit("berthd.service", "InvocationID");
    a.sd.systemctl(&["restart", "berthd.service"]).unwrap();
    assert_eq!(a.show_unit("berthd.service", "ActiveState"), "active");
    assert_ne!(a.show_unit("berthd.service", "InvocationID"), berthd0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        identity(&a, "keep"),
        keep0,
        "restarting berthd restarted keep"
    );
    assert_eq!(
        identity(&a, "edit"),
        edit1,
        "restarting berthd restarted edit"
    );
    assert_eq!(a.starts("keep"), 1);

    // Removing a spec stops its container.
    std::fs::remove_file(spec_path(&a, "edit")).unwrap();
    a.wait(T, "edit's unit gone", || {
        a.show("edit", "LoadState") == "not-found"
    })
    .unwrap();
    assert!(a.active("keep"));
}

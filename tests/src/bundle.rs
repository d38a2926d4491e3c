//! Busybox OCI bundles and a driver for OCI runtime binaries (berth-runtime, and runc for
//! comparison), for the runtime integration tests (run in the test process, as root). Every
//! helper cleans up on drop: containers are force-deleted, their cgroups removed, temp dirs gone.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// The workspace's debug build of `bin`.
pub fn workspace_bin(bin: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debug")
        .join(bin)
}

/// A unique name for test `test` (test name + pid), usable as container id and cgroup name.
pub fn unique(test: &str) -> String {
    format!(
        "berth-test-{}-{}",
        test.replace('_', "-"),
        std::process::id()
    )
}

/// A bundle: `<dir>/rootfs` with busybox-static and its applets, `<dir>/config.json`.
pub struct Bundle {
    dir: tempfile::TempDir,
    /// The config, edited by the test and written by [`Bundle::save`].
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle whose config is what `runtime spec` writes (made with `spec_bin`),
    /// adjusted for tests: no terminal, `args`, and the given cgroupsPath.
    pub fn busybox(spec_bin: &Path, args: &[&str], cgroups_path: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir()
            .expect("tempdir");
        // Readable by the mapped root of user-namespace tests.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed (scripts/setup.sh)");
        std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
        let out = Command::new(spec_bin)
            .arg("spec")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        config["linux"]["cgroupsPath"] = json!(cgroups_path);
        let b = Bundle { dir, config };
        b.save();
        b
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes `config` to config.json.
    pub fn save(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// Sets `process.args` and saves.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self.save();
        self
    }
}

/// An OCI runtime binary with its own state root; containers created through it are
/// force-deleted (and their cgroups removed) on drop.
pub struct Runtime {
    /// The binary.
    pub bin: PathBuf,
    root: tempfile::TempDir,
    ids: std::cell::RefCell<Vec<String>>,
    cgroups: std::cell::RefCell<Vec<String>>,
}

impl Runtime {
    /// berth-runtime from the workspace build.
    pub fn berth() -> Runtime {
        Self::with_bin(workspace_bin("berth-runtime"))
    }

    /// Debian's runc.
    pub fn runc() -> Runtime {
        Self::with_bin(PathBuf::from("runc"))
    }

    fn with_bin(bin: PathBuf) -> Runtime {
        Runtime {
            bin,
            root: tempfile::Builder::new()
                .prefix("berth-rt-root-")
                .tempdir()
                .unwrap(),
            ids: Default::default(),
            cgroups: Default::default(),
        }
    }

    /// The state root (`--root`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Remembers `id` (and its cgroups path) for cleanup.
    pub fn track(&self, id: &str, cgroups_path: &str) {
        self.ids.borrow_mut().push(id.to_string());
        self.cgroups.borrow_mut().push(cgroups_path.to_string());
    }

    /// The command `bin --root ROOT args…` with piped output.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `bin --root ROOT args…` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running the runtime")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {}{}",
            self.bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that leaves a container process behind (`create`, `run -d`, `exec -d`):
    /// its stdio goes to files, not pipes the container would keep open. Asserts success.
    pub fn ok_detached(&self, args: &[&str]) {
        let err = tempfile::tempfile().unwrap();
        let status = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(err.try_clone().unwrap())
            .status()
            .expect("running the runtime");
        if !status.success() {
            use std::io::{Read, Seek};
            let mut e = String::new();
            let mut err = err;
            let _ = err.rewind();
            let _ = err.read_to_string(&mut e);
            panic!("{} {args:?} failed ({status}): {e}", self.bin.display());
        }
    }

    /// `state ID` parsed.
    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    /// Whether the state root holds nothing (no container left).
    pub fn root_is_empty(&self) -> bool {
        std::fs::read_dir(self.root.path())
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.run(&["delete", "--force", id]);
        }
        for cg in self.cgroups.borrow().iter() {
            for d in cgroup_dirs(cg) {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

/// Every existing directory of cgroup `path` (absolute, from each hierarchy's root).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let d = e.path().join(path.trim_start_matches('/'));
            if d.is_dir() {
                out.push(d);
            }
        }
    }
    let top = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    if top.is_dir() && !out.contains(&top) {
        out.push(top);
    }
    out
}

/// Mount points in this process's mount namespace under `prefix`.
pub fn mounts_under(prefix: &Path) -> Vec<String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = prefix.to_string_lossy().into_owned();
    mi.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&p))
        .map(str::to_string)
        .collect()
}

/// PIDs of processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) && pid != std::process::id() as i32 {
                out.push(pid);
            }
        }
    }
    out
}

/// Asserts that nothing of a container remains: state root empty, no cgroup directory, no
/// mount under the bundle, no process with `marker` in its command line.
pub fn assert_nothing_left(
    rt: &Runtime,
    bundle: &Bundle,
    cgroups_path: &str,
    marker: Option<&str>,
) {
    assert!(
        rt.root_is_empty(),
        "state left in {}: {:?}",
        rt.root().display(),
        std::fs::read_dir(rt.root()).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
    );
    assert_eq!(
        cgroup_dirs(cgroups_path),
        Vec::<PathBuf>::new(),
        "cgroup directories left"
    );
    assert_eq!(
        mounts_under(bundle.path()),
        Vec::<String>::new(),
        "mounts left"
    );
    if let Some(m) = marker {
        // Killed processes may take a moment to be reaped by their new parent.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while !pids_with(m).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(pids_with(m), Vec::<i32>::new(), "processes left");
    }
}

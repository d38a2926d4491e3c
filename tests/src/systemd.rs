//! A real systemd 252+ booted as PID 1 of private namespaces for one test (`TestSystemd`), isolated
//! from the host: private cgroup subtree, overlay root, private /run, /tmp, /dev and network. Runs
//! in the test process; the namespace set-up itself is `tests/scripts/sd-ns.sh`.
//!
//! What a test gets: the D-Bus address of the namespace's system bus ([`TestSystemd::address`]),
//! commands run inside ([`TestSystemd::exec_inside`]), the unit journal
//! ([`TestSystemd::journal`]), the namespace's root as seen from the host
//! ([`TestSystemd::root_path`]), and a host directory visible inside at `/srv/tb`
//! ([`TestSystemd::share_dir`]). Drop powers it off cleanly and removes its cgroups.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the namespace's state lives on the host.
pub const TB_BASE: &str = "/tmp/berth-tb";
/// The share directory's path inside the namespace.
pub const SHARE_INSIDE: &str = "/srv/tb";
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(20);

/// The workspace's root directory.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent")
        .to_path_buf()
}

/// A debug binary of the workspace (`target/debug/<name>`), visible inside the namespace too
/// (the namespace's root is an overlay over the host's).
pub fn bin_path(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// The cargo target directory (bind-mounted live into test systemds).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// Host dirs the namespace sees live at the same path: the workspace (scripts, examples, test
/// data) and the target dir when it lies elsewhere. Binding them also makes them reachable when
/// they sit under the host's /tmp, which the namespace replaces with its own.
fn live_dirs() -> String {
    let (ws, target) = (workspace_dir(), target_dir());
    if target.starts_with(&ws) {
        ws.display().to_string()
    } else {
        format!("{} {}", ws.display(), target.display())
    }
}

/// A booted systemd in its own namespaces. Names must be unique among concurrent tests.
pub struct TestSystemd {
    name: String,
    dir: PathBuf,
    launcher: Option<Child>,
    pid: u32,
}

impl TestSystemd {
    /// Boots systemd (hybrid cgroups, as the host) and waits until its system state is `running`
    /// or `degraded` and the system bus answers.
    pub fn boot(name: &str) -> Result<Self> {
        Self::boot_mode(name, "hybrid")
    }

    /// `mode`: `hybrid` (v1 hierarchies + cgroup2 at unified/) or `unified` (cgroup2 only; on a
    /// hybrid host its hierarchy has no controllers, which still shows cgroup placement).
    pub fn boot_mode(name: &str, mode: &str) -> Result<Self> {
        let name = sanitize(name);
        let dir = Path::new(TB_BASE).join(&name);
        let script = workspace_dir().join("tests/scripts/sd-ns.sh");
        let launcher = Command::new("bash")
            .arg(&script)
            .arg(&name)
            .arg(mode)
            .env("TB_BASE", TB_BASE)
            .env("TB_BIND", live_dirs())
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let mut me = TestSystemd {
            name,
            dir,
            launcher: Some(launcher),
            pid: 0,
        };
        me.wait_booted()?;
        Ok(me)
    }

    fn wait_booted(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let pid_file = self.dir.join("pid");
        while self.pid == 0 {
            if let Some(Ok(p)) = std::fs::read_to_string(&pid_file)
                .ok()
                .map(|s| s.trim().parse::<u32>())
            {
                self.pid = p;
                break;
            }
            self.check_launcher(t0)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            let out = Command::new("busctl")
                .arg(format!("--address={}", self.address()))
                .args([
                    "get-property",
                    "org.freedesktop.systemd1",
                    "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager",
                    "SystemState",
                ])
                .stderr(Stdio::null())
                .output()?;
            let s = String::from_utf8_lossy(&out.stdout);
            if s.contains("running") || s.contains("degraded") {
                return Ok(());
            }
            self.check_launcher(t0)?;
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn check_launcher(&mut self, t0: Instant) -> Result<()> {
        if let Some(l) = self.launcher.as_mut()
            && let Some(st) = l.try_wait()?
        {
            self.launcher = None;
            bail!(
                "test systemd {} exited during boot ({st}): {}",
                self.name,
                std::fs::read_to_string(self.dir.join("systemd.out")).unwrap_or_default()
            );
        }
        if t0.elapsed() > BOOT_TIMEOUT {
            bail!(
                "test systemd {} did not boot in {BOOT_TIMEOUT:?}",
                self.name
            );
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host PID of the namespace's systemd (PID 1 inside).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The D-Bus address of the namespace's system bus, usable from the host.
    pub fn address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.pid
        )
    }

    /// The namespace's `/`, as a host path.
    pub fn root_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid))
    }

    /// A host directory that is `/srv/tb` inside the namespace: put bundles here.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.join("share")
    }

    /// The inside path of a host path under [`Self::share_dir`].
    pub fn inside_path(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(self.share_dir()) {
            Ok(rel) => Path::new(SHARE_INSIDE).join(rel),
            Err(_) => host.to_path_buf(),
        }
    }

    /// Runs `argv` in all the namespace's namespaces (and its root), waits, returns its output.
    pub fn exec_inside(&self, argv: &[&str]) -> Result<Output> {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .arg("-a")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("nsenter {argv:?} into {}", self.name))
    }

    /// `systemctl ARGS` inside; returns stdout, errors on a non-zero exit.
    pub fn systemctl(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        let out = self.exec_inside(&argv)?;
        if !out.status.success() {
            bail!(
                "systemctl {args:?} in {}: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn machine_id(&self) -> Result<String> {
        Ok(
            std::fs::read_to_string(self.root_path().join("etc/machine-id"))?
                .trim()
                .to_owned(),
        )
    }

    /// The journal directory of the namespace's systemd, as a host path (for `journalctl -D`).
    pub fn journal_dir(&self) -> Result<PathBuf> {
        let mid = self.machine_id()?;
        let persistent = self.root_path().join("var/log/journal").join(&mid);
        if persistent.is_dir() {
            return Ok(persistent);
        }
        Ok(self.root_path().join("run/log/journal").join(mid))
    }

    /// The unit's journal entries (`journalctl -o json`), oldest first. journald flushes lazily:
    /// use [`Self::wait_journal`] to wait for a line.
    pub fn journal(&self, unit: &str) -> Result<Vec<serde_json::Value>> {
        let out = Command::new("journalctl")
            .arg("-D")
            .arg(self.journal_dir()?)
            .args(["--no-pager", "-o", "json", "-u", unit])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Waits until an entry of `unit` satisfies `pred`, returns it.
    pub fn wait_journal(
        &self,
        unit: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.journal(unit)?.into_iter().find(|e| pred(e)) {
                return Ok(e);
            }
            if t0.elapsed() > timeout {
                let msgs: Vec<String> = self
                    .journal(unit)?
                    .iter()
                    .map(|e| e["MESSAGE"].to_string())
                    .collect();
                bail!("no matching journal entry of {unit} in {timeout:?}; have: {msgs:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host path of a cgroup directory of the namespace, e.g. `("memory", "/system.slice/x")`.
    /// `controller` is a v1 hierarchy name (`memory`, `pids`, `systemd`) or `unified`.
    pub fn cgroup_path(&self, controller: &str, cgroup: &str) -> PathBuf {
        self.root_path()
            .join("sys/fs/cgroup")
            .join(controller)
            .join(cgroup.trim_start_matches('/'))
    }

    /// Powers off through D-Bus and waits for the launcher to clean up the cgroups.
    pub fn shutdown(&mut self) -> Result<()> {
        let Some(mut l) = self.launcher.take() else {
            return Ok(());
        };
        // Containers that ignore SIGTERM would hold the poweroff for their stop timeout.
        let _ = self.exec_inside(&["systemctl", "kill", "--signal=SIGKILL", "berth-*.service"]);
        let _ = Command::new("busctl")
            .arg(format!("--address={}", self.address()))
            .args([
                "call",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "StartUnit",
                "ss",
                "poweroff.target",
                "replace-irreversibly",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let t0 = Instant::now();
        loop {
            if l.try_wait()?.is_some() {
                return Ok(());
            }
            if t0.elapsed() > POWEROFF_TIMEOUT {
                // The launcher's trap SIGKILLs the namespace (--kill-child) and removes the cgroups.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(l.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                l.wait()?;
                bail!("test systemd {} did not power off in time", self.name);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for TestSystemd {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("{e:#}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A name usable for cgroups and hostnames: `[a-z0-9-]`, at most 40 characters, plus our pid.
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    s.push_str(&format!("-{}", std::process::id()));
    s
}

/// A busybox container bundle for berth-shim, in a test systemd's share directory (so the shim
/// inside sees it at `/srv/tb/<name>`): `rootfs/` (static busybox), `config.json` (from
/// `runc spec`, adjusted), `shim.json`.
pub struct ShimBundle {
    pub name: String,
    /// Host path.
    pub dir: PathBuf,
    /// Path inside the namespace.
    pub inside: PathBuf,
}

impl ShimBundle {
    /// `args`: the container's argv; `shim`: extra shim.json keys merged over the defaults.
    pub fn create(
        sd: &TestSystemd,
        name: &str,
        args: &[&str],
        shim: serde_json::Value,
    ) -> Result<Self> {
        Self::create_in(&sd.share_dir(), Path::new(SHARE_INSIDE), name, args, shim)
    }

    /// Like [`Self::create`], in `share` (host path) that a namespace sees at `inside`.
    pub fn create_in(
        share: &Path,
        inside: &Path,
        name: &str,
        args: &[&str],
        shim: serde_json::Value,
    ) -> Result<Self> {
        let dir = share.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("rootfs/bin");
        std::fs::create_dir_all(&bin)?;
        for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(dir.join("rootfs").join(d))?;
        }
        std::fs::copy("/bin/busybox", bin.join("busybox")).context("copying /bin/busybox")?;
        for applet in [
            "sh", "sleep", "cat", "echo", "ls", "true", "false", "kill", "ps", "head", "dd", "id",
            "env", "printf", "rm", "touch", "test", "mkdir", "hostname", "tail", "yes",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
        let st = Command::new("runc")
            .arg("spec")
            .arg("--bundle")
            .arg(&dir)
            .status()?;
        if !st.success() {
            bail!("runc spec failed for {}", dir.display());
        }
        let cfg_path = dir.join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
        let tty = shim.get("tty").and_then(|v| v.as_bool()).unwrap_or(false);
        cfg["process"]["terminal"] = serde_json::json!(tty);
        cfg["process"]["args"] = serde_json::json!(args);
        cfg["process"]["env"] = serde_json::json!(["PATH=/bin", "HOME=/root"]);
        cfg["root"]["readonly"] = serde_json::json!(false);
        // Docker sets no ambient capabilities (and `runc spec`'s ambient set without an
        // inheritable one cannot be raised; runc ignores that, berth-runtime refuses).
        if let Some(c) = cfg["process"]["capabilities"].as_object_mut() {
            c.remove("ambient");
        }
        cfg["hostname"] = serde_json::json!(name);
        // The cgroup the shim asks for anyway; a runc-compatible binary only knows config.json.
        cfg["linux"]["cgroupsPath"] =
            serde_json::json!(format!("/system.slice/berth-{name}.service/container"));
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
        let mut s = serde_json::json!({"name": name, "image": format!("test/busybox:{name}")});
        if let (Some(o), Some(extra)) = (s.as_object_mut(), shim.as_object()) {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        std::fs::write(dir.join("shim.json"), serde_json::to_vec_pretty(&s)?)?;
        Ok(ShimBundle {
            name: name.to_owned(),
            inside: inside.join(name),
            dir,
        })
    }

    /// berth-shim's argv for this bundle (absolute paths, as ExecStart needs). With
    /// `BERTH_TEST_RUNTIME_BINARY` set (e.g. `/usr/sbin/runc`), the shim drives that binary
    /// instead of the linked runtime library.
    pub fn shim_argv(&self) -> Vec<String> {
        let mut v = vec![
            bin_path("berth-shim").display().to_string(),
            "--bundle".into(),
            self.inside.display().to_string(),
            "--root".into(),
            "/run/berth/runtime".into(),
        ];
        if let Ok(b) = std::env::var("BERTH_TEST_RUNTIME_BINARY") {
            v.push("--runtime-binary".into());
            v.push(b);
        }
        v
    }

    pub fn unit(&self) -> String {
        format!("berth-{}.service", self.name)
    }

    /// The shim's control socket (host path).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("shim.sock")
    }
}

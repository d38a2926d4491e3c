//! berthd under a real systemd for the agent's end-to-end tests: boots a [`TestSystemd`], builds the
//! offline busybox image (examples/make-image.sh) into its share directory, runs berthd as a
//! `Type=notify` service of that systemd with its spec directory in the share directory (written
//! from the test, watched inside), and drives the `berth` CLI inside. Runs in the test process.

use crate::systemd::{TestSystemd, bin_path, workspace_dir};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The image every test spec uses, as seen inside the namespace.
pub const IMAGE: &str = "/srv/tb/busybox.tar";

pub struct Agent {
    pub sd: TestSystemd,
    /// Host path of the spec directory (`/srv/tb/specs` inside).
    pub specs: PathBuf,
}

impl Agent {
    /// Boots systemd, builds the image and starts berthd (returns after its first pass: READY=1).
    pub fn start(name: &str) -> Result<Agent> {
        let sd = TestSystemd::boot(name)?;
        let share = sd.share_dir();
        let specs = share.join("specs");
        std::fs::create_dir_all(&specs)?;
        std::fs::create_dir_all(share.join("state"))?;
        let out = Command::new(workspace_dir().join("examples/make-image.sh"))
            .arg(share.join("busybox.tar"))
            .output()?;
        if !out.status.success() {
            bail!("make-image.sh: {}", String::from_utf8_lossy(&out.stderr));
        }
        let a = Agent { sd, specs };
        Ok(a)
    }

    /// Starts berthd; with `wait`, returns once it is ready (its first full pass done).
    pub fn start_berthd(&self, wait: bool) -> Result<()> {
        self.start_berthd_with(wait, None)
    }

    /// [`Self::start_berthd`] with a berthd.yaml (its path inside the namespace).
    pub fn start_berthd_with(&self, wait: bool, config: Option<&str>) -> Result<()> {
        let berthd = bin_path("berthd");
        let shim = bin_path("berth-shim");
        let mut argv = vec![
            "systemd-run",
            "--unit=berthd",
            "-p",
            "Type=notify",
            "-p",
            "NotifyAccess=main",
            "-p",
            "TimeoutStartSec=120",
            "-E",
            "RUST_LOG=info,berth_agent::reconcile=debug",
        ];
        if !wait {
            argv.push("--no-block");
        }
        let (b, s) = (berthd.display().to_string(), shim.display().to_string());
        argv.extend([
            b.as_str(),
            "--spec-dir",
            "/srv/tb/specs",
            "--state-dir",
            "/srv/tb/state",
            "--shim",
            s.as_str(),
        ]);
        if let Some(c) = config {
            argv.extend(["--config", c]);
        }
        let out = self.sd.exec_inside(&argv)?;
        if !out.status.success() {
            bail!(
                "starting berthd: {}{}",
                String::from_utf8_lossy(&out.stderr),
                self.sd
                    .systemctl(&["status", "berthd", "--no-pager"])
                    .unwrap_or_default()
            );
        }
        Ok(())
    }

    /// SIGKILLs berthd (its containers' units are not its children and keep running).
    pub fn kill_berthd(&self) -> Result<()> {
        self.sd
            .systemctl(&["kill", "-s", "KILL", "berthd.service"])?;
        self.wait(Duration::from_secs(10), "berthd to die", || {
            let s = self.show_unit("berthd.service", "ActiveState");
            s == "failed" || s == "inactive" || s.is_empty()
        })?;
        let _ = self.sd.systemctl(&["reset-failed", "berthd.service"]);
        Ok(())
    }

    pub fn write(&self, name: &str, yaml: &str) {
        std::fs::write(self.specs.join(format!("{name}.yaml")), yaml).expect("writing spec");
    }

    pub fn rm(&self, name: &str) {
        std::fs::remove_file(self.specs.join(format!("{name}.yaml"))).expect("removing spec");
    }

    /// `berth ARGS` inside the namespace.
    pub fn berth(&self, args: &[&str]) -> Result<Output> {
        let b = bin_path("berth");
        let mut argv = vec![b.to_str().context("berth path")?];
        argv.extend_from_slice(args);
        self.sd.exec_inside(&argv)
    }

    /// `berth ps --json`, by name.
    pub fn ps(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let out = self.berth(&["ps", "--json"])?;
        if !out.status.success() {
            bail!("berth ps: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        Ok(v.into_iter()
            .filter_map(|s| Some((s["name"].as_str()?.to_owned(), s)))
            .collect())
    }

    pub fn phase(&self, name: &str) -> String {
        self.ps()
            .ok()
            .and_then(|m| {
                m.get(name)
                    .and_then(|s| s["phase"].as_str().map(str::to_owned))
            })
            .unwrap_or_default()
    }

    /// A property of a unit (`systemctl show -p`), empty when it cannot be read.
    pub fn show_unit(&self, unit: &str, prop: &str) -> String {
        self.sd
            .systemctl(&["show", "-p", prop, "--value", unit])
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }

    /// A property of a container's unit.
    pub fn show(&self, name: &str, prop: &str) -> String {
        self.show_unit(&format!("berth-{name}.service"), prop)
    }

    pub fn active(&self, name: &str) -> bool {
        self.show(name, "ActiveState") == "active"
    }

    pub fn wait(&self, timeout: Duration, what: &str, f: impl Fn() -> bool) -> Result<()> {
        let t0 = Instant::now();
        while !f() {
            if t0.elapsed() > timeout {
                let ps = self
                    .berth(&["ps"])
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                let log = self
                    .sd
                    .exec_inside(&[
                        "journalctl",
                        "--no-pager",
                        "-n",
                        "60",
                        "-u",
                        "berthd",
                        "-u",
                        "berth-*",
                    ])
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what}\nberth ps:\n{ps}\njournal:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// How many times systemd started the container's unit (its "Starting …" lines).
    pub fn starts(&self, name: &str) -> usize {
        self.sd
            .journal(&format!("berth-{name}.service"))
            .unwrap_or_default()
            .iter()
            .filter(|e| {
                e["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("Starting berth-"))
            })
            .count()
    }
}

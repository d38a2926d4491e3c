//! In-memory systemd and image store for the reconcile tests: they record every call, and the
//! systemd fake checks that no name is ever worked on twice at once.

use super::{Images, ImagesError, Observed, Progress, ResolvedImage, Units};
use crate::image;
use crate::spec::Spec;
use crate::spec::effective::ImageConfig;
use crate::systemd::{ActiveState, SystemdError, UnitSpec};
use berth_proto::OverlayRootfs;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct FakeUnits {
    pub units: Mutex<BTreeMap<String, Observed>>,
    pub calls: Mutex<Vec<String>>,
    pub busy: Mutex<HashSet<String>>,
    /// How long start takes (to catch overlapping passes).
    pub start_delay: Duration,
    /// Units whose start job "finishes" at once (a one-shot job): they vanish after start.
    pub oneshot: Mutex<HashSet<String>>,
    pub fail_list: Mutex<bool>,
    /// Errors the next starts return (last first), leaving no unit.
    pub failing_starts: Mutex<Vec<SystemdError>>,
}

impl FakeUnits {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    pub fn insert(&self, name: &str, hash: &str, state: &str) {
        self.units.lock().unwrap().insert(
            name.into(),
            Observed {
                name: name.into(),
                hash: Some(hash.into()),
                active_state: ActiveState::parse(state),
                sub_state: "running".into(),
                n_restarts: 0,
            },
        );
    }
    fn enter(&self, name: &str) {
        assert!(
            self.busy.lock().unwrap().insert(name.to_owned()),
            "{name} worked on twice at once"
        );
    }
    fn leave(&self, name: &str) {
        self.busy.lock().unwrap().remove(name);
    }
}

impl Units for FakeUnits {
    async fn get(&self, name: &str) -> Result<Option<Observed>, SystemdError> {
        Ok(self.units.lock().unwrap().get(name).cloned())
    }
    async fn list(&self) -> Result<Vec<String>, SystemdError> {
        if *self.fail_list.lock().unwrap() {
            return Err(SystemdError::Connect {
                target: "the system bus".into(),
                source: zbus::Error::Failure("bus down".into()),
            });
        }
        Ok(self.units.lock().unwrap().keys().cloned().collect())
    }
    async fn start(&self, unit: &UnitSpec) -> Result<(), SystemdError> {
        self.enter(&unit.name);
        self.calls
            .lock()
            .unwrap()
            .push(format!("start {}", unit.name));
        tokio::time::sleep(self.start_delay).await;
        if let Some(e) = self.failing_starts.lock().unwrap().pop() {
            self.leave(&unit.name);
            return Err(e);
        }
        if !self.oneshot.lock().unwrap().contains(&unit.name) {
            self.insert(&unit.name, &unit.spec_hash, "active");
        }
        self.leave(&unit.name);
        Ok(())
    }
    async fn stop(&self, name: &str, _timeout: Duration) -> Result<(), SystemdError> {
        self.enter(name);
        self.calls.lock().unwrap().push(format!("stop {name}"));
        self.units.lock().unwrap().remove(name);
        self.leave(name);
        Ok(())
    }
}

#[derive(Default)]
pub struct FakeImages {
    /// image reference → digest of what the store holds.
    pub present: Mutex<BTreeMap<String, String>>,
    /// image reference → digest a pull gets.
    pub registry: Mutex<BTreeMap<String, String>>,
    pub pulls: Mutex<Vec<String>>,
    pub failing_pulls: Mutex<u32>,
    pub root: PathBuf,
    pub released: Mutex<Vec<String>>,
}

fn config() -> ImageConfig {
    ImageConfig {
        cmd: Some(vec!["/bin/httpd".into(), "-f".into()]),
        ..Default::default()
    }
}

impl Images for FakeImages {
    /// Keyed by the image reference, or by the archive's path for an `image_file`.
    async fn lookup(&self, spec: &Spec) -> Result<Option<ResolvedImage>, ImagesError> {
        let r = match &spec.image_file {
            Some(p) => p.display().to_string(),
            None => spec.image.clone().unwrap_or_default(),
        };
        Ok(self.present.lock().unwrap().get(&r).map(|d| ResolvedImage {
            digest: d.clone(),
            config: config(),
        }))
    }
    async fn pull(&self, spec: &Spec, progress: Progress) -> Result<ResolvedImage, ImagesError> {
        let r = spec.image.clone().unwrap_or_default();
        self.pulls.lock().unwrap().push(r.clone());
        progress(50, None);
        {
            let mut f = self.failing_pulls.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(image::Error::Transport {
                    image: r,
                    registry: "registry.test".into(),
                    detail: "connection refused".into(),
                }
                .into());
            }
        }
        let d = self
            .registry
            .lock()
            .unwrap()
            .get(&r)
            .cloned()
            .ok_or_else(|| image::Error::NotFound {
                image: r.clone(),
                registry: "registry.test".into(),
                what: "manifest".into(),
            })?;
        self.present.lock().unwrap().insert(r, d.clone());
        Ok(ResolvedImage {
            digest: d,
            config: config(),
        })
    }
    async fn prepare(
        &self,
        name: &str,
        _spec: &Spec,
        _image: &ResolvedImage,
    ) -> Result<OverlayRootfs, ImagesError> {
        Ok(OverlayRootfs {
            lower: vec![self.root.join("layers/l0")],
            upper: self.root.join(name).join("upper"),
            work: self.root.join(name).join("work"),
        })
    }
    async fn release(&self, name: &str) -> Result<(), ImagesError> {
        self.released.lock().unwrap().push(name.into());
        Ok(())
    }
}

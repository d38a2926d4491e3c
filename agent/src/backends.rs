//! The real implementations of reconcile's [`Units`] and [`Images`] traits: systemd over D-Bus
//! (the `systemd` module's client) and the OCI image store. Runs in berthd.

use crate::image::{self, PullOptions, Store};
use crate::reconcile::{Images, ImagesError, Observed, Progress, ResolvedImage, Units};
use crate::spec::Spec;
use crate::spec::effective::ImageConfig;
use crate::systemd::{Systemd, SystemdError, UnitSpec, container_name, unit_name};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub struct SystemdUnits {
    pub systemd: Systemd,
}

impl Units for SystemdUnits {
    async fn get(&self, name: &str) -> Result<Option<Observed>, SystemdError> {
        let st = self.systemd.status(&unit_name(name)).await?;
        Ok(st
            .filter(|s| s.load_state != "not-found")
            .map(|s| Observed {
                name: name.to_owned(),
                hash: s.spec_hash().map(str::to_owned),
                active_state: s.active_state,
                sub_state: s.sub_state.clone(),
                n_restarts: s.n_restarts,
            }))
    }
    async fn list(&self) -> Result<Vec<String>, SystemdError> {
        let units = self.systemd.list_units().await?;
        Ok(units
            .iter()
            .filter(|u| u.load_state != "not-found")
            .filter_map(|u| container_name(&u.name).map(str::to_owned))
            .collect())
    }
    async fn start(&self, unit: &UnitSpec) -> Result<(), SystemdError> {
        self.systemd.start_unit(unit).await
    }
    async fn stop(&self, name: &str, timeout: Duration) -> Result<(), SystemdError> {
        let unit = unit_name(name);
        self.systemd.stop_unit(&unit, timeout).await?;
        // A container stopped by its signal leaves the unit `failed`, and a failed unit stays
        // loaded: forget it, so that "no unit" means no unit.
        let _ = self.systemd.reset_failed(&unit).await;
        Ok(())
    }
}

/// The image store, with `image_file` imports remembered by (path, size, mtime) so a resync does not
/// re-read every archive.
pub struct StoreImages {
    pub store: Store,
    imported: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
    /// One import at a time: 50 containers of one new archive import it once, the others then
    /// find it in `imported`.
    importing: tokio::sync::Mutex<()>,
}

impl StoreImages {
    pub fn new(store: Store) -> Self {
        StoreImages {
            store,
            imported: Mutex::new(HashMap::new()),
            importing: tokio::sync::Mutex::new(()),
        }
    }

    /// What a container inherits from the image, from the config the store parsed once.
    fn resolved(&self, img: &image::Image) -> Result<ResolvedImage, ImagesError> {
        Ok(ResolvedImage {
            digest: img.digest.clone(),
            config: ImageConfig::from_oci(&img.config, img.healthcheck.clone()),
        })
    }

    async fn import(&self, path: &std::path::Path) -> Result<ResolvedImage, ImagesError> {
        let md = std::fs::metadata(path).map_err(|source| image::Error::Io {
            what: "image_file",
            path: path.to_owned(),
            source,
        })?;
        let key = (md.len(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        let _one = self.importing.lock().await;
        let known = self
            .imported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned();
        if let Some((len, mtime, digest)) = known
            && (len, mtime) == key
            && let Ok(Some(img)) = self.store.image(&digest)
        {
            return self.resolved(&img);
        }
        let img = self.store.import_archive(path, None).await?;
        self.imported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), (key.0, key.1, img.digest.clone()));
        self.resolved(&img)
    }
}

impl Images for StoreImages {
    async fn lookup(&self, spec: &Spec) -> Result<Option<ResolvedImage>, ImagesError> {
        if let Some(p) = &spec.image_file {
            return self.import(p).await.map(Some);
        }
        let r = spec.image.as_deref().unwrap_or_default();
        match self.store.image(r)? {
            Some(img) => self.resolved(&img).map(Some),
            None => Ok(None),
        }
    }
    async fn pull(&self, spec: &Spec, progress: Progress) -> Result<ResolvedImage, ImagesError> {
        let r = spec.image.as_deref().unwrap_or_default();
        let (tx, mut rx) = tokio::sync::watch::channel(image::Progress::default());
        let fwd = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = rx.borrow().clone();
                let pc = (p.bytes_done * 100).checked_div(p.bytes_total);
                if pc.is_some() || p.waiting.is_some() {
                    progress(pc.unwrap_or(0).min(100) as u8, p.waiting.as_deref());
                }
            }
        });
        let opts = PullOptions {
            unpack: true,
            progress: Some(Arc::new(tx)),
            ..Default::default()
        };
        // Store::pull's future is not provably Send (a higher-ranked closure inside it), so it runs
        // on a blocking thread that drives it with this runtime's handle.
        let (store, r2, handle) = (
            self.store.clone(),
            r.to_owned(),
            tokio::runtime::Handle::current(),
        );
        let res = tokio::task::spawn_blocking(move || {
            let res = handle.block_on(store.pull(&r2, &opts));
            drop(opts);
            res
        })
        .await
        .map_err(|e| ImagesError::Task {
            image: r.to_owned(),
            detail: e.to_string(),
        })?;
        let _ = fwd.await;
        let img = res?;
        self.resolved(&img)
    }
    async fn prepare(
        &self,
        name: &str,
        _spec: &Spec,
        image: &ResolvedImage,
    ) -> Result<berth_proto::OverlayRootfs, ImagesError> {
        Ok(self.store.prepare_rootfs(name, &image.digest).await?.rootfs)
    }
    async fn release(&self, name: &str) -> Result<(), ImagesError> {
        Ok(self.store.release_rootfs(name)?)
    }
}

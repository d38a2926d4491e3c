//! `berth fsck`: checks the image store (every blob against its digest, every named image's
//! manifest, config and layers, imports, unpacked layers, partial downloads) and berthd's state
//! (records, held-stopped markers, bundles and root filesystems of containers that no longer
//! exist, temp files) and repairs what is safe to repair. Runs in the `berth` process.
//!
//! It may run while berthd runs: it holds the store's exclusive `gc.lock` throughout (pulls,
//! imports and rootfs preparations wait for it), and of berthd's state it removes only what
//! belongs to no container berthd can act on (no spec and no record) and is not mounted; a temp
//! file counts as left over only once the process writing it is gone (run it in berthd's PID
//! namespace).

mod decide;

pub use decide::{Finding, Inventory, Layout, Repair, decide};

use crate::config::Config;
use crate::image::{self, Store};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    #[error("image store {0}: {1}")]
    Store(PathBuf, #[source] image::Error),
}

/// What happened to a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Repaired,
    /// `--dry-run`: it would be repaired.
    WouldRepair,
    NotRepaired,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub object: String,
    pub problem: String,
    /// The repair done (or that would be done), or why there is none.
    pub action: String,
    pub status: Status,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    pub blobs: usize,
    pub images: usize,
    pub containers: usize,
    pub bundles: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checked: Checked,
    pub findings: Vec<Outcome>,
}

impl Report {
    /// 0 clean, 1 everything found was repaired (or would be, with `--dry-run`), 2 problems left.
    pub fn exit_code(&self) -> u8 {
        if self.findings.is_empty() {
            0
        } else if self
            .findings
            .iter()
            .any(|f| f.status == Status::NotRepaired)
        {
            2
        } else {
            1
        }
    }
}

/// Where fsck looks: the store and berthd's directories, from its settings.
#[derive(Debug, Clone)]
pub struct Paths {
    pub store: PathBuf,
    pub spec_dirs: Vec<PathBuf>,
    pub records: PathBuf,
    pub bundles: PathBuf,
    /// netavark's config dir with berth's network records, leases and locks.
    pub network: PathBuf,
    pub netns: PathBuf,
}

impl Paths {
    pub fn from_config(cfg: &Config) -> Paths {
        Paths {
            store: cfg.state_dir.clone(),
            spec_dirs: vec![cfg.spec_dir.clone(), cfg.api_spec_dir()],
            records: cfg.record_dir(),
            bundles: cfg.bundle_dir(),
            network: cfg.network_state_dir(),
            netns: cfg.netns_dir(),
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

/// Mount points, from this process's mountinfo (octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ").replace("\\134", "\\")))
        .collect()
}

/// berthd's side of the inventory (the store's is [`Store::facts`]).
fn state_inventory(p: &Paths, inv: &mut Inventory) {
    for d in &p.spec_dirs {
        for f in entries(d) {
            if let Some(n) = crate::spec::name_of(Path::new(&f)) {
                inv.specs.insert(n.to_owned());
            } else if f.starts_with(".tmp-") && crate::fsutil::is_orphan_temp(&f) {
                inv.temp_files.push(d.join(f));
            }
        }
    }
    for f in entries(&p.records) {
        if f.starts_with(".tmp-") {
            if crate::fsutil::is_orphan_temp(&f) {
                inv.temp_files.push(p.records.join(f));
            }
        } else if let Some(n) = f.strip_suffix(".json") {
            let rec = std::fs::read(p.records.join(&f))
                .ok()
                .and_then(|raw| serde_json::from_slice::<crate::reconcile::Record>(&raw).ok());
            inv.records
                .push((n.to_owned(), rec.map(|r| r.image_digest)));
        } else if let Some(n) = f.strip_suffix(".stopped") {
            inv.stopped.push(n.to_owned());
        }
    }
    let mut networked: std::collections::BTreeMap<String, Vec<&'static str>> = Default::default();
    for n in entries(&p.netns) {
        networked.entry(n).or_default().push("netns");
    }
    for f in entries(&p.network.join("containers")) {
        if let Some(n) = f.strip_suffix(".json") {
            networked
                .entry(n.to_owned())
                .or_default()
                .push("network record");
        }
    }
    for net in entries(&p.network.join("leases")) {
        let dir = p.network.join("leases").join(net);
        for addr in entries(&dir) {
            if let Ok(n) = std::fs::read_to_string(dir.join(addr)) {
                let n = n.trim();
                if crate::spec::is_valid_name(n) {
                    networked.entry(n.to_owned()).or_default().push("lease");
                }
            }
        }
    }
    inv.networked = networked.into_iter().collect();
    let mounts = mount_points();
    for n in entries(&p.bundles) {
        let rootfs = p.bundles.join(&n).join("rootfs");
        let mounted = mounts.iter().any(|m| m == &rootfs);
        inv.bundles.push((n, mounted));
    }
}

fn perform(store: &Store, r: &Repair) -> Result<(), String> {
    match r {
        Repair::Remove(p) => {
            let res = match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
                Ok(_) => std::fs::remove_file(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            };
            res.map_err(|e| format!("removing {}: {e}", p.display()))
        }
        Repair::DropName(n) => store.drop_name(n).map_err(|e| e.to_string()),
        Repair::WriteContainerRecord { id, image, digest } => store
            .write_container_record(id, image, digest)
            .map_err(|e| e.to_string()),
    }
}

/// Checks everything under `paths` and, unless `dry_run`, repairs what is safe to repair.
pub fn run(paths: &Paths, dry_run: bool) -> Result<Report, FsckError> {
    let err = |e| FsckError::Store(paths.store.clone(), e);
    let store = Store::open(&paths.store, image::RegistryConfig::default()).map_err(err)?;
    let _lock = store.lock_exclusive().map_err(err)?;
    let mut inv = Inventory {
        store: store.facts().map_err(err)?,
        ..Inventory::default()
    };
    state_inventory(paths, &mut inv);
    let layout = Layout {
        store: paths.store.clone(),
        records: paths.records.clone(),
        bundles: paths.bundles.clone(),
    };
    let findings = decide(&inv, &layout)
        .into_iter()
        .map(|f| {
            let (action, status) = match &f.repair {
                Err(why) => (why.clone(), Status::NotRepaired),
                Ok(r) if dry_run => (r.to_string(), Status::WouldRepair),
                Ok(r) => match perform(&store, r) {
                    Ok(()) => (r.to_string(), Status::Repaired),
                    Err(e) => (format!("{r} failed: {e}"), Status::NotRepaired),
                },
            };
            Outcome {
                object: f.object,
                problem: f.problem,
                action,
                status,
            }
        })
        .collect();
    Ok(Report {
        checked: Checked {
            blobs: inv.store.blobs.len(),
            images: inv.store.names.len(),
            containers: inv.records.len(),
            bundles: inv.bundles.len(),
        },
        findings,
    })
}

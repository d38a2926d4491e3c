//! `berth fsck`'s decisions: from an inventory of the store and of berthd's state, what is wrong and
//! which repair (if any) is safe. Pure; [`super::run`] gathers the inventory and performs the repairs.

use crate::image::check::{BlobState, Doc, StoreFacts};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Everything fsck looks at, as it is on disk.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub store: StoreFacts,
    /// Names with a spec file (`/etc/berth/containers` or API-made).
    pub specs: BTreeSet<String>,
    /// berthd's records (`agent/<name>.json`) → the image digest each names (`None`: unreadable).
    pub records: Vec<(String, Option<String>)>,
    /// Held-stopped markers (`agent/<name>.stopped`).
    pub stopped: Vec<String>,
    /// Bundles under the run directory, each with whether its rootfs is still mounted.
    pub bundles: Vec<(String, bool)>,
    /// `.tmp-*` files left by interrupted atomic writes in berthd's state directories.
    pub temp_files: Vec<PathBuf>,
    /// Containers with network state on the host (a netns, netavark's recorded options or an
    /// address lease), each with what it has.
    pub networked: Vec<(String, Vec<&'static str>)>,
}

/// Where the inventory's objects live, to name what a repair removes.
#[derive(Debug, Clone)]
pub struct Layout {
    pub store: PathBuf,
    pub records: PathBuf,
    pub bundles: PathBuf,
}

/// One repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// A file, or a directory tree.
    Remove(PathBuf),
    /// A name in the store's index.json.
    DropName(String),
    /// A container's record of the image it uses, in the store.
    WriteContainerRecord {
        id: String,
        image: String,
        digest: String,
    },
}

/// One thing wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub object: String,
    pub problem: String,
    /// `Err`: why it cannot be repaired here.
    pub repair: Result<Repair, String>,
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repair::Remove(p) => write!(f, "remove {}", p.display()),
            Repair::DropName(n) => write!(
                f,
                "drop the name {n} (the next pull or import fetches it again)"
            ),
            Repair::WriteContainerRecord { digest, .. } => {
                write!(f, "rewrite it from berthd's record ({digest})")
            }
        }
    }
}

fn finding(object: String, problem: impl Into<String>, repair: Repair) -> Finding {
    Finding {
        object,
        problem: problem.into(),
        repair: Ok(repair),
    }
}

/// Why the image stored under `digest` cannot start a container, if it cannot.
fn image_problem(inv: &Inventory, digest: &str) -> Option<String> {
    let blob = |d: &str| match inv.store.blobs.get(d) {
        Some(BlobState::Intact) => None,
        Some(BlobState::Mismatch(_)) => Some("corrupt"),
        Some(BlobState::Unreadable(_)) => Some("unreadable"),
        None => Some("missing"),
    };
    if let Some(p) = blob(digest) {
        return Some(format!("manifest {digest} {p}"));
    }
    match inv.store.docs.get(digest) {
        Some(Doc::Manifest {
            config,
            layers,
            chain_ids,
        }) => {
            if let Some(p) = blob(config) {
                return Some(format!("config {config} {p}"));
            }
            // A layer already unpacked needs no blob to run.
            layers.iter().enumerate().find_map(|(i, l)| {
                let unpacked = chain_ids
                    .get(i)
                    .and_then(|c| c.strip_prefix("sha256:"))
                    .is_some_and(|hex| inv.store.layer_dirs.iter().any(|d| d == hex));
                let p = blob(l)?;
                (!unpacked).then(|| format!("layer {l} {p} and not unpacked"))
            })
        }
        Some(Doc::Index { .. }) | None => None,
        Some(Doc::Invalid(e)) => Some(format!("manifest {digest} unparsable: {e}")),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The findings, store first, each with its repair.
pub fn decide(inv: &Inventory, at: &Layout) -> Vec<Finding> {
    let mut out = Vec::new();
    let st = &inv.store;
    let blob_path = |d: &str| {
        at.store
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    for (d, s) in &st.blobs {
        let problem = match s {
            BlobState::Intact => continue,
            BlobState::Mismatch(actual) => {
                format!("content does not match its digest (got {actual})")
            }
            BlobState::Unreadable(e) => format!("unreadable: {e}"),
        };
        out.push(finding(
            format!("blob {d}"),
            problem,
            Repair::Remove(blob_path(d)),
        ));
    }
    for (name, d) in &st.names {
        if let Some(p) = image_problem(inv, d) {
            out.push(finding(
                format!("image {name}"),
                p,
                Repair::DropName(name.clone()),
            ));
        }
    }
    for (f, d) in &st.imports {
        let problem = match d {
            None => Some("unreadable import record".to_owned()),
            Some(d) => image_problem(inv, d),
        };
        if let Some(p) = problem {
            out.push(finding(
                format!("import {f}"),
                p,
                Repair::Remove(at.store.join("imports").join(f)),
            ));
        }
    }
    for l in &st.layer_dirs {
        if l.starts_with(".tmp-") {
            out.push(finding(
                format!("layer {l}"),
                "partly unpacked layer left by an interrupted unpack",
                Repair::Remove(at.store.join("layers").join(l)),
            ));
        }
    }
    for (n, stored) in &st.ingest {
        let problem = if !is_hex64(n) {
            "work directory left by an interrupted import"
        } else if *stored {
            "download finished and stored: this partial copy is left over"
        } else {
            continue; // a partial download, kept for the next pull to resume
        };
        out.push(finding(
            format!("ingest {n}"),
            problem,
            Repair::Remove(at.store.join("ingest").join(n)),
        ));
    }
    for p in st.temp_files.iter().chain(&inv.temp_files) {
        out.push(finding(
            format!("file {}", p.display()),
            "temporary file left by an interrupted write",
            Repair::Remove(p.clone()),
        ));
    }
    out.extend(decide_state(inv, at));
    out
}

/// berthd's state: records, markers, bundles and the store's per-container directories.
fn decide_state(inv: &Inventory, at: &Layout) -> Vec<Finding> {
    let mut out = Vec::new();
    let record_of = |n: &str| inv.records.iter().find(|(r, _)| r == n).map(|(_, d)| d);
    // A name berthd may still act on: it has a spec, or a record of what berthd started.
    let known = |n: &str| inv.specs.contains(n) || record_of(n).is_some();
    let mounted = |n: &str| inv.bundles.iter().any(|(b, m)| b == n && *m);
    for (n, d) in &inv.records {
        if d.is_none() {
            out.push(finding(
                format!("record {n}"),
                "unreadable (berthd treats it as absent and goes by the unit)",
                Repair::Remove(at.records.join(format!("{n}.json"))),
            ));
        }
    }
    for n in &inv.stopped {
        if !known(n) {
            out.push(finding(
                format!("stop marker {n}"),
                "held-stopped marker of a container that no longer exists",
                Repair::Remove(at.records.join(format!("{n}.stopped"))),
            ));
        }
    }
    let orphan = |n: &str, what: &str, path: PathBuf| {
        let problem = format!("{what} of a container that no longer exists");
        if mounted(n) {
            Finding {
                object: format!("{what} {n}"),
                problem,
                repair: Err("its root filesystem is still mounted: a shim may still run it".into()),
            }
        } else {
            finding(format!("{what} {n}"), problem, Repair::Remove(path))
        }
    };
    for (n, _) in &inv.bundles {
        if !known(n) {
            out.push(orphan(n, "bundle", at.bundles.join(n)));
        }
    }
    for (n, what) in &inv.networked {
        if !known(n) {
            out.push(Finding {
                object: format!("network state {n}"),
                problem: format!("{} of a container that no longer exists", what.join(", ")),
                repair: Err(
                    "left to berthd's network sweep (a netavark teardown with the recorded \
                             options), which runs when berthd starts and after each removal"
                        .into(),
                ),
            });
        }
    }
    for (id, d) in &inv.store.containers {
        if !known(id) {
            out.push(orphan(id, "rootfs", at.store.join("containers").join(id)));
            continue;
        }
        if d.is_some() {
            continue;
        }
        let object = format!("rootfs {id}");
        let problem = "its record of the image it uses is missing or unreadable (gc would not keep that image)";
        let from_record = record_of(id)
            .cloned()
            .flatten()
            .filter(|d| inv.store.blobs.get(d) == Some(&BlobState::Intact));
        out.push(match from_record {
            Some(digest) => {
                let image = inv
                    .store
                    .names
                    .iter()
                    .find(|(_, nd)| *nd == digest)
                    .map_or_else(|| digest.clone(), |(n, _)| n.clone());
                finding(
                    object,
                    problem,
                    Repair::WriteContainerRecord {
                        id: id.clone(),
                        image,
                        digest,
                    },
                )
            }
            None => Finding {
                object,
                problem: problem.into(),
                repair: Err(
                    "berthd's record names no stored image; the container's next start rewrites it"
                        .into(),
                ),
            },
        });
    }
    out
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;

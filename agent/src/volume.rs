//! Named volumes as objects of their own: each is `<volumes>/<name>/_data` (what a spec's
//! `volumes: ["cache:/var/cache"]` mounts, made on first use) with an optional `volume.json`
//! beside it holding what the Docker API was given at creation (labels). Listing, creating and
//! removing, refusing to remove one a container's spec names. Runs in berthd.

use crate::api::{ErrorKind, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume name `{0}`: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    Name(String),
    #[error("no volume {0}")]
    NotFound(String),
    #[error("volume {name} is in use by {}", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error("volume {name}: {what} {path}: {source}")]
    Io {
        name: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `volume.json` keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// One volume as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// The host directory mounted into containers.
    pub mountpoint: PathBuf,
    /// RFC 3339, from the volume directory's modification time at creation.
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// Containers whose spec mounts it.
    pub users: Vec<String>,
}

/// The volumes under `dir` as berthd's store holds them.
pub struct Volumes<'a> {
    pub dir: &'a Path,
}

impl Volumes<'_> {
    fn io(
        name: &str,
        what: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> VolumeError {
        let (name, path) = (name.to_owned(), path.to_owned());
        move |source| VolumeError::Io {
            name,
            what,
            path,
            source,
        }
    }

    fn info(&self, name: &str, users: &BTreeMap<String, Vec<String>>) -> Option<VolumeInfo> {
        let root = self.dir.join(name);
        let meta = std::fs::metadata(&root).ok().filter(|m| m.is_dir())?;
        let labels = std::fs::read(root.join("volume.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .unwrap_or_default()
            .labels;
        let created = meta
            .created()
            .or_else(|_| meta.modified())
            .map(chrono::DateTime::<chrono::Utc>::from)
            .map_or_else(|_| String::new(), |t| t.to_rfc3339());
        Some(VolumeInfo {
            name: name.to_owned(),
            mountpoint: root.join("_data"),
            created,
            labels,
            users: users.get(name).cloned().unwrap_or_default(),
        })
    }

    /// Every volume; `users` maps a volume name to the containers whose spec mounts it.
    pub fn list(&self, users: &BTreeMap<String, Vec<String>>) -> Vec<VolumeInfo> {
        let Ok(rd) = std::fs::read_dir(self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| crate::spec::is_valid_name(n))
            .collect();
        names.sort();
        names.iter().filter_map(|n| self.info(n, users)).collect()
    }

    pub fn get(
        &self,
        name: &str,
        users: &BTreeMap<String, Vec<String>>,
    ) -> Result<VolumeInfo, VolumeError> {
        if !crate::spec::is_valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        self.info(name, users)
            .ok_or_else(|| VolumeError::NotFound(name.to_owned()))
    }

    /// Creates `name` (an existing one is kept as it is, as Docker does) with `labels`.
    pub fn create(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        users: &BTreeMap<String, Vec<String>>,
    ) -> Result<VolumeInfo, VolumeError> {
        if !crate::spec::is_valid_name(name) {
            return Err(VolumeError::Name(name.to_owned()));
        }
        let root = self.dir.join(name);
        if !root.join("_data").is_dir() {
            let data = root.join("_data");
            std::fs::create_dir_all(&data).map_err(Self::io(name, "creating", &data))?;
            let meta = serde_json::to_vec(&Meta {
                labels: labels.clone(),
            })
            .expect("labels serialise");
            let file = root.join("volume.json");
            crate::fsutil::write_atomic(&file, &meta).map_err(Self::io(name, "writing", &file))?;
        }
        self.get(name, users)
    }

    /// Removes `name` and its data; refused while a container's spec mounts it unless `force`.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        users: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), VolumeError> {
        let v = self.get(name, users)?;
        if !force && !v.users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                users: v.users,
            });
        }
        let root = self.dir.join(name);
        std::fs::remove_dir_all(&root).map_err(Self::io(name, "removing", &root))
    }
}

/// Which containers mount which named volume, from their specs.
pub fn users<'a>(
    specs: impl IntoIterator<Item = (&'a str, &'a crate::spec::Spec)>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (container, spec) in specs {
        for v in &spec.volumes {
            if let crate::spec::VolumeSource::Named(n) = &v.source {
                out.entry(n.clone()).or_default().push(container.to_owned());
            }
        }
    }
    out
}

/// berthd's answer to a volume request.
pub fn answer(
    dir: &Path,
    req: Request,
    users: &std::collections::BTreeMap<String, Vec<String>>,
) -> Response {
    let v = Volumes { dir };
    let r = match req {
        Request::VolumeCreate { name, labels } => v.create(&name, &labels, users).map(Response::ok),
        Request::VolumeRemove { name, force } => v
            .remove(&name, force, users)
            .map(|()| Response::ok(json!({"removed": name}))),
        _ => Ok(Response::ok(v.list(users))),
    };
    r.unwrap_or_else(|e| {
        let kind = match e {
            VolumeError::Name(_) => ErrorKind::Invalid,
            VolumeError::NotFound(_) => ErrorKind::NotFound,
            VolumeError::InUse { .. } => ErrorKind::Conflict,
            VolumeError::Io { .. } => ErrorKind::Internal,
        };
        Response::err(kind, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_and_refuse_removal_while_in_use() {
        let t = tempfile::tempdir().unwrap();
        let vols = Volumes { dir: t.path() };
        let labels = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        let none = BTreeMap::new();
        let v = vols.create("data", &labels, &none).unwrap();
        assert_eq!(v.mountpoint, t.path().join("data/_data"));
        assert!(v.mountpoint.is_dir());
        // A second create keeps the first one's labels, as Docker's does.
        let again = vols.create("data", &BTreeMap::new(), &none).unwrap();
        assert_eq!(again.labels, labels);
        assert!(vols.create("../x", &BTreeMap::new(), &none).is_err());

        let spec: crate::spec::Spec =
            serde_norway::from_str("image: x\nvolumes: [\"data:/data\", \"/srv:/srv\"]\n").unwrap();
        let users = users([("web", &spec)]);
        assert_eq!(users["data"], ["web"]);
        assert_eq!(vols.list(&users)[0].users, ["web"]);
        let e = vols.remove("data", false, &users).unwrap_err().to_string();
        assert!(e.contains("in use by web"), "{e}");
        vols.remove("data", true, &users).unwrap();
        assert!(vols.list(&none).is_empty());
        assert!(matches!(
            vols.remove("data", false, &none),
            Err(VolumeError::NotFound(_))
        ));
    }
}

//! The bundle's `config.json`: loading and checking it (in the runtime process, before anything
//! is created, so bad input leaves nothing behind) and the default spec `berth-runtime spec`
//! writes.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder,
    Spec,
};

/// Errors of loading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The bundle directory is not there.
    #[error("bundle {path}: {source}")]
    Bundle {
        /// The bundle path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// config.json could not be read.
    #[error("open {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// config.json is not valid JSON for the runtime spec.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The rootfs is missing or not a directory.
    #[error("invalid rootfs: stat {path}: {source}")]
    Rootfs {
        /// The rootfs path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A required field is missing or a value is out of range.
    #[error("invalid config.json: {0}")]
    Invalid(String),
}

/// A loaded bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed config.json.
    pub spec: Spec,
    /// The rootfs, absolute and canonical.
    pub rootfs: PathBuf,
}

/// Loads and checks `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Bundle, SpecError> {
    let dir = std::fs::canonicalize(bundle).map_err(|source| SpecError::Bundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    let data = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_slice(&data).map_err(|source| SpecError::Parse {
        path: path.clone(),
        source,
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("root is required".into()))?;
    let rootfs = dir.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs)
        .and_then(|p| {
            if p.is_dir() {
                Ok(p)
            } else {
                Err(std::io::Error::from_raw_os_error(libc::ENOTDIR))
            }
        })
        .map_err(|source| SpecError::Rootfs {
            path: rootfs.clone(),
            source,
        })?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| SpecError::Invalid("process is required".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::Invalid("args must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::Invalid(format!(
            "cwd {:?} is not an absolute path",
            process.cwd()
        )));
    }
    if spec.linux().is_none() {
        return Err(SpecError::Invalid("linux is required".into()));
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        if !m.destination().is_absolute() {
            return Err(SpecError::Invalid(format!(
                "mount destination {:?} is not an absolute path",
                m.destination()
            )));
        }
    }
    Ok(Bundle { dir, spec, rootfs })
}

/// Checks a container id as runc does: `[A-Za-z0-9][A-Za-z0-9_+.-]*`, at most 1024 bytes.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 1024
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_+.-".contains(c))
}

/// The spec `berth-runtime spec` writes: like runc's, a busybox-friendly `sh` with a terminal,
/// the pid, network, ipc, uts and mount namespaces, and all devices denied in the cgroup.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("berth".into()));
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(true));
    }
    if let Some(l) = spec.linux_mut() {
        let ns = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ]
        .into_iter()
        .map(|t| {
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .expect("namespace")
        })
        .collect::<Vec<_>>();
        l.set_namespaces(Some(ns));
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .expect("device rule");
        l.set_resources(Some(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_all])
                .build()
                .expect("resources"),
        ));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("a"));
        assert!(valid_id("web-1_x.y+z"));
        assert!(!valid_id(""));
        assert!(!valid_id("-a"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("../x"));
    }

    #[test]
    fn bad_bundles_get_clear_errors() {
        let t = tempfile::tempdir().unwrap();
        let e = load(&t.path().join("nope")).unwrap_err().to_string();
        assert!(
            e.starts_with("bundle ") && e.contains("No such file"),
            "{e}"
        );
        let e = load(t.path()).unwrap_err().to_string();
        assert!(e.starts_with("open ") && e.contains("config.json"), "{e}");
        std::fs::write(t.path().join("config.json"), "{broken").unwrap();
        assert!(matches!(load(t.path()), Err(SpecError::Parse { .. })));
        let spec = default_spec();
        std::fs::write(
            t.path().join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        let e = load(t.path()).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid rootfs: stat ")
                && e.ends_with("No such file or directory (os error 2)"),
            "{e}"
        );
        std::fs::create_dir(t.path().join("rootfs")).unwrap();
        let b = load(t.path()).unwrap();
        assert_eq!(
            b.rootfs,
            std::fs::canonicalize(t.path().join("rootfs")).unwrap()
        );
    }
}

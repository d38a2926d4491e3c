//! Which host files each container's spec names for what they hold (env files, a seccomp profile,
//! device nodes: [`crate::spec::effective::Inputs`]), kept up to date by every pass, so that berthd
//! can watch their directories and turn a change of such a file into a pass for the containers that
//! name it instead of waiting for the periodic resync. Runs in berthd.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub struct FileRefs {
    by_name: Mutex<BTreeMap<String, BTreeSet<PathBuf>>>,
    changed: Notify,
}

impl FileRefs {
    /// Records the files `name`'s spec names now (none: it has no valid spec).
    pub fn set(&self, name: &str, paths: BTreeSet<PathBuf>) {
        let mut m = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let old = if paths.is_empty() {
            m.remove(name)
        } else {
            m.insert(name.to_owned(), paths.clone())
        };
        if old.unwrap_or_default() != paths {
            self.changed.notify_one();
        }
    }

    /// The containers whose spec names `path`.
    pub fn names_for(&self, path: &Path) -> Vec<String> {
        self.by_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, ps)| ps.contains(path))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The files `name`'s spec names.
    pub fn paths_of(&self, name: &str) -> BTreeSet<PathBuf> {
        self.by_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The directories that hold a named file (what to watch).
    pub fn dirs(&self) -> BTreeSet<PathBuf> {
        self.by_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flatten()
            .filter_map(|p| p.parent().map(Path::to_owned))
            .collect()
    }

    /// Returns once the set of named files changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_dirs_follow_the_specs() {
        let f = FileRefs::default();
        let set = |ps: &[&str]| ps.iter().map(PathBuf::from).collect::<BTreeSet<_>>();
        f.set("web", set(&["/etc/berth/web.env", "/etc/seccomp/p.json"]));
        f.set("db", set(&["/etc/seccomp/p.json"]));
        // Told once about the change, whenever it looks.
        f.changed().await;
        assert_eq!(
            f.names_for(Path::new("/etc/seccomp//p.json")),
            vec!["db", "web"]
        );
        assert_eq!(
            f.dirs(),
            set(&["/etc/berth", "/etc/seccomp"]),
            "one watch per directory"
        );
        // The same set again is no change; dropping a file is.
        f.set("db", set(&["/etc/seccomp/p.json"]));
        let quiet = tokio::time::timeout(std::time::Duration::ZERO, f.changed()).await;
        assert!(quiet.is_err(), "an unchanged set woke the watcher");
        f.set("web", BTreeSet::new());
        f.changed().await;
        assert_eq!(
            f.names_for(Path::new("/etc/berth/web.env")),
            Vec::<String>::new()
        );
        assert_eq!(f.dirs(), set(&["/etc/seccomp"]));
    }
}

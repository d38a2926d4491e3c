//! Which desired containers join a container's network namespace (`network_mode:
//! container:<name>`), from the spec files, each parsed again only when it changed. Every start
//! asks (its joiners come back once it runs): parsing every spec file each time made N starts cost
//! N² parses. Runs in berthd.

use super::FileStamp;
use crate::spec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The target each spec file names in `network_mode: container:`, by path, with the file's stamp
/// when it was read.
#[derive(Default)]
pub struct JoinIndex(Mutex<HashMap<PathBuf, (FileStamp, Option<String>)>>);

impl JoinIndex {
    /// The names, sorted, whose spec file (`path_of(name)`, among the files in `dirs`) joins
    /// `target`'s namespace.
    pub fn joiners(
        &self,
        dirs: &[&Path],
        path_of: impl Fn(&str) -> Option<PathBuf>,
        target: &str,
    ) -> Vec<String> {
        let mut names: Vec<String> = dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.filter_map(|e| e.ok()))
            .filter_map(|e| spec::name_of(&e.path()).map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Files gone since are forgotten.
        cache.retain(|p, _| p.exists());
        names
            .into_iter()
            .filter(|n| {
                let Some(p) = path_of(n) else {
                    return false;
                };
                let Ok(md) = std::fs::metadata(&p) else {
                    return false;
                };
                let stamp = FileStamp::of(&md);
                let joined = match cache.get(&p) {
                    Some((s, t)) if *s == stamp => t.clone(),
                    _ => {
                        let t = spec::load(&p)
                            .spec
                            .ok()
                            .and_then(|s| s.network_mode.container().map(str::to_owned));
                        cache.insert(p, (stamp, t.clone()));
                        t
                    }
                };
                joined.as_deref() == Some(target)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_parsed_again_only_once_it_changed() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let path_of = |n: &str| Some(dir.join(format!("{n}.yaml"))).filter(|p| p.exists());
        let img = "image: busybox\ncommand: [sleep, \"1\"]\n";
        std::fs::write(dir.join("db.yaml"), img).unwrap();
        let joiner = dir.join("app.yaml");
        std::fs::write(&joiner, format!("{img}network_mode: \"container:db\"\n")).unwrap();
        let idx = JoinIndex::default();
        assert_eq!(idx.joiners(&[dir], path_of, "db"), vec!["app".to_owned()]);
        assert!(idx.joiners(&[dir], path_of, "app").is_empty());
        // An unchanged file is answered from the index: a planted answer shows it was not read.
        idx.0.lock().unwrap().get_mut(&joiner).unwrap().1 = Some("planted".into());
        assert_eq!(
            idx.joiners(&[dir], path_of, "planted"),
            vec!["app".to_owned()]
        );
        // Rewritten, it is read again.
        std::fs::write(&joiner, format!("{img}network_mode: none\n")).unwrap();
        assert!(idx.joiners(&[dir], path_of, "planted").is_empty());
        assert!(idx.joiners(&[dir], path_of, "db").is_empty());
        std::fs::remove_file(&joiner).unwrap();
        idx.joiners(&[dir], path_of, "db");
        assert!(
            !idx.0.lock().unwrap().contains_key(&joiner),
            "a removed file stays indexed"
        );
    }
}

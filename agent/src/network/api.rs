//! Networks declared and removed through the Docker API: one file each in berthd's state dir, in
//! the network file format, judged with every other declaration. Networks declared in
//! berthd.yaml or in the network directory are read-only here (a conflict naming the file),
//! as containers declared in files are. Runs in berthd.

use super::Sources;
use crate::api::{ErrorKind, Request, Response};
use crate::spec::{NetworkMode, Spec};
use serde_json::json;
use std::path::Path;

/// Docker's predefined networks: berth's default bridge and the host and none modes.
pub const PREDEFINED: &[&str] = &["bridge", "host", "none"];

/// The containers whose spec joins `network`.
pub fn users(network: &str, specs: &[(String, Spec)]) -> Vec<String> {
    specs
        .iter()
        .filter(|(_, s)| {
            s.network_mode == NetworkMode::Bridge && s.networks.0.contains_key(network)
        })
        .map(|(n, _)| n.clone())
        .collect()
}

/// Answers `NetworkCreate` and `NetworkRemove`.
pub fn handle(sources: &Sources, req: Request, specs: &[(String, Spec)]) -> Response {
    match req {
        Request::NetworkCreate { name, yaml } => create(sources, &name, &yaml),
        Request::NetworkRemove { name } => remove(sources, &name, specs),
        other => Response::err(
            ErrorKind::Internal,
            format!("not a network request: {other:?}"),
        ),
    }
}

fn create(sources: &Sources, name: &str, yaml: &str) -> Response {
    if !crate::spec::is_valid_name(name) {
        return Response::err(
            ErrorKind::Invalid,
            format!("invalid network name `{name}`: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        );
    }
    let declared = sources.load();
    if PREDEFINED.contains(&name) || name == declared.default.name {
        return Response::err(
            ErrorKind::Conflict,
            format!("network with name {name} already exists (it is predefined)"),
        );
    }
    if let Some(files) = declared.sources.get(name) {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Response::err(
            ErrorKind::Conflict,
            format!(
                "network with name {name} already exists (declared in {})",
                files.join(", ")
            ),
        );
    }
    let path = sources.api_dir.join(format!("{name}.yaml"));
    if let Err(e) = super::parse_file(&path, yaml) {
        return Response::err(ErrorKind::Invalid, e);
    }
    if let Err(e) = std::fs::create_dir_all(&sources.api_dir)
        .and_then(|()| crate::fsutil::write_atomic(&path, yaml.as_bytes()))
    {
        return Response::err(
            ErrorKind::Internal,
            format!("writing {}: {e}", path.display()),
        );
    }
    // Judged with the others (an overlapping subnet): a network that cannot be used is not made.
    let now = sources.load();
    if let Some(problems) = now.problems.get(name) {
        let _ = std::fs::remove_file(&path);
        return Response::err(ErrorKind::Invalid, problems.join("; "));
    }
    match now.networks.get(name) {
        Some(n) => Response::ok(json!({"created": name, "subnet": n.subnet, "gateway": n.gateway})),
        None => Response::err(
            ErrorKind::Internal,
            format!("network {name} vanished after its creation"),
        ),
    }
}

fn remove(sources: &Sources, name: &str, specs: &[(String, Spec)]) -> Response {
    let declared = sources.load();
    if PREDEFINED.contains(&name) || name == declared.default.name {
        return Response::err(
            ErrorKind::Conflict,
            format!("{name} is a pre-defined network and cannot be removed"),
        );
    }
    let Some(files) = declared.sources.get(name) else {
        return Response::err(ErrorKind::NotFound, format!("network {name} not found"));
    };
    if let Some(f) = files.iter().find(|f| !in_dir(f, &sources.api_dir)) {
        return Response::err(
            ErrorKind::Conflict,
            format!(
                "network {name} is declared in {} and is read-only through the Docker API; edit that file",
                f.display()
            ),
        );
    }
    let users = users(name, specs);
    if !users.is_empty() {
        return Response::err(
            ErrorKind::Conflict,
            format!(
                "error while removing network: network {name} has active endpoints ({})",
                users.join(", ")
            ),
        );
    }
    for f in files {
        if let Err(e) = std::fs::remove_file(f) {
            return Response::err(
                ErrorKind::Internal,
                format!("removing {}: {e}", f.display()),
            );
        }
    }
    Response::ok(json!({"removed": name}))
}

fn in_dir(file: &Path, dir: &Path) -> bool {
    file.parent() == Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(t: &Path) -> Sources {
        let cfg = crate::config::Config {
            state_dir: t.join("state"),
            spec_dir: t.join("etc/containers"),
            ..Default::default()
        };
        Sources::from_config(&t.join("berthd.yaml"), &cfg)
    }

    #[test]
    fn api_networks_are_made_judged_and_removed_but_files_are_read_only() {
        let t = tempfile::tempdir().unwrap();
        let src = sources(t.path());
        std::fs::create_dir_all(&src.dir).unwrap();
        std::fs::write(src.dir.join("etcnet.yaml"), "subnet: 10.90.1.0/24\n").unwrap();
        let create = |name: &str, yaml: &str| {
            handle(
                &src,
                Request::NetworkCreate {
                    name: name.into(),
                    yaml: yaml.into(),
                },
                &[],
            )
        };
        assert!(matches!(
            create("n1", "subnet: 10.90.2.0/24\nlabels: {a: b}\n"),
            Response::Ok { .. }
        ));
        assert_eq!(src.load().networks["n1"].labels["a"], "b");
        // Taken names and overlapping subnets are refused, and nothing is left behind.
        for (name, yaml, kind) in [
            ("n1", "{}", ErrorKind::Conflict),
            ("etcnet", "{}", ErrorKind::Conflict),
            ("bridge", "{}", ErrorKind::Conflict),
            ("n2", "subnet: 10.90.2.0/25\n", ErrorKind::Invalid),
            ("n3", "bogus: 1\n", ErrorKind::Invalid),
        ] {
            match create(name, yaml) {
                Response::Error { kind: k, error } => assert_eq!(k, kind, "{name}: {error}"),
                ok => panic!("{name}: {ok:?}"),
            }
        }
        assert!(!src.api_dir.join("n2.yaml").exists());

        let spec: Spec = serde_norway::from_str("image: x\nnetworks: [n1]\n").unwrap();
        let specs = vec![("web".to_owned(), spec)];
        let rm = |name: &str, specs: &[(String, Spec)]| {
            handle(&src, Request::NetworkRemove { name: name.into() }, specs)
        };
        match rm("n1", &specs) {
            Response::Error { kind, error } => {
                assert_eq!(kind, ErrorKind::Conflict);
                assert!(error.contains("web"), "{error}");
            }
            ok => panic!("{ok:?}"),
        }
        match rm("etcnet", &[]) {
            Response::Error { kind, error } => {
                assert_eq!(kind, ErrorKind::Conflict);
                assert!(error.contains("etcnet.yaml"), "{error}");
            }
            ok => panic!("{ok:?}"),
        }
        assert!(matches!(rm("n1", &[]), Response::Ok { .. }));
        assert!(matches!(
            rm("n1", &[]),
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            }
        ));
    }
}

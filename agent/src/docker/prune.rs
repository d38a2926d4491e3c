//! Disk use and clean-up: `GET /system/df`, `POST /containers/prune` (ended containers made
//! through the API; never those declared in berthd's spec directory) and `POST /images/prune`
//! (with `dangling=false`, images no container uses; then the store's garbage collection, whose
//! freed bytes are `SpaceReclaimed`). Both prunes take Docker's `until` and `label` filters.
//! Runs in berthd.

use super::containers::{ListQuery, container_id, docker_state, parse_filters};
use super::events::parse_nanos;
use super::{DockerError, Shared, call};
use crate::api::{ErrorKind, Request};
use crate::reconcile::status::ContainerStatus;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Deserialize)]
pub struct PruneQuery {
    #[serde(default)]
    filters: Option<String>,
}

/// A prune's filters: `until` (a Unix time, as the CLI sends it) and `label`/`label!`;
/// `dangling` for images.
#[derive(Debug, Default, PartialEq)]
pub struct Prune {
    until: Option<i64>,
    labels: Vec<String>,
    not_labels: Vec<String>,
    /// Only images without a name (what `docker image prune` asks without `-a`).
    pub dangling: bool,
}

pub fn parse_prune(raw: Option<&str>, images: bool) -> Result<Prune, DockerError> {
    let f = parse_filters(raw)?;
    let mut p = Prune {
        dangling: images,
        ..Prune::default()
    };
    for (k, v) in f {
        match k.as_str() {
            "until" => {
                for t in &v {
                    let secs = match chrono::DateTime::parse_from_rfc3339(t) {
                        Ok(d) => d.timestamp(),
                        Err(_) => parse_nanos(t)? / 1_000_000_000,
                    };
                    p.until = Some(secs);
                }
            }
            "label" => p.labels = v,
            "label!" => p.not_labels = v,
            "dangling" if images => {
                p.dangling = v.iter().any(|x| matches!(x.as_str(), "1" | "true"));
            }
            other => {
                return Err(DockerError::BadRequest(format!(
                    "invalid filter '{other}' (berth prunes by until and label{})",
                    if images { ", dangling" } else { "" }
                )));
            }
        }
    }
    Ok(p)
}

impl Prune {
    /// Whether an object created at `created` (Unix seconds) with `labels` is pruned.
    pub fn selects(&self, created: i64, labels: &BTreeMap<String, String>) -> bool {
        let has = |v: &String| match v.split_once('=') {
            Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
            None => labels.contains_key(v),
        };
        self.until.is_none_or(|u| created < u)
            && self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
    }
}

/// Bytes of the files under `dir` (not following links): a container's writable layer.
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
        .map(|(p, m)| if m.is_dir() { dir_size(&p) } else { m.len() })
        .sum()
}

/// The size of `name`'s writable layer (its overlay's upper directory), 0 when it has none.
async fn size_rw(b: &Shared, name: &str) -> u64 {
    let Ok(i) = call(b, Request::Inspect { name: name.into() }).await else {
        return 0;
    };
    let Some(upper) = i["shim_config"]["rootfs"]["upper"]
        .as_str()
        .map(std::path::PathBuf::from)
    else {
        return 0;
    };
    tokio::task::spawn_blocking(move || dir_size(&upper))
        .await
        .unwrap_or(0)
}

async fn statuses(b: &Shared) -> Result<Vec<ContainerStatus>, DockerError> {
    serde_json::from_value(call(b, Request::Ps).await?)
        .map_err(|e| DockerError::Internal(format!("container list: {e}")))
}

/// `GET /system/df`.
pub async fn df(State(b): State<Shared>) -> Result<Json<Value>, DockerError> {
    let all: ListQuery = serde_json::from_value(json!({"all": "1"}))
        .map_err(|e| DockerError::Internal(e.to_string()))?;
    let containers = super::containers::list(State(b.clone()), Query(all))
        .await?
        .0;
    let mut images = super::images::list(State(b.clone())).await?.0;
    let layers: u64 = images.iter().filter_map(|i| i["Size"].as_u64()).sum();
    for i in &mut images {
        let n = containers
            .iter()
            .filter(|c| c["ImageID"] == i["Id"])
            .count();
        i["Containers"] = json!(n);
    }
    let mut sized = Vec::new();
    for mut c in containers {
        let name = c["Names"][0]
            .as_str()
            .unwrap_or("/")
            .trim_start_matches('/');
        let rw = size_rw(&b, name).await;
        let image = images
            .iter()
            .find(|i| i["Id"] == c["ImageID"])
            .and_then(|i| i["Size"].as_u64())
            .unwrap_or(0);
        c["SizeRw"] = json!(rw);
        c["SizeRootFs"] = json!(rw + image);
        sized.push(c);
    }
    let containers = sized;
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": containers,
        "Volumes": [],
        "BuildCache": [],
    })))
}

/// `POST /containers/prune`.
pub async fn containers(
    State(b): State<Shared>,
    Query(q): Query<PruneQuery>,
) -> Result<Json<Value>, DockerError> {
    let p = parse_prune(q.filters.as_deref(), false)?;
    let info = call(&b, Request::Info).await?;
    let etc = info["spec_dir"].as_str().unwrap_or_default().to_owned();
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for st in statuses(&b).await? {
        let declared = st
            .spec_file
            .as_deref()
            .is_some_and(|f| !etc.is_empty() && std::path::Path::new(f).starts_with(&etc));
        if declared || !matches!(docker_state(&st.phase), "exited" | "dead") {
            continue;
        }
        let inspect = call(
            &b,
            Request::Inspect {
                name: st.name.clone(),
            },
        )
        .await?;
        let labels = serde_json::from_value(inspect["spec"]["labels"].clone()).unwrap_or_default();
        let created = inspect["bundle"]
            .as_str()
            .and_then(|d| std::fs::metadata(std::path::Path::new(d).join("config.json")).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        if !p.selects(created, &labels) {
            continue;
        }
        let rw = size_rw(&b, &st.name).await;
        match call(
            &b,
            Request::Delete {
                name: st.name.clone(),
            },
        )
        .await
        {
            Ok(_) => {
                deleted.push(st.name);
                reclaimed += rw;
            }
            Err(DockerError::Backend {
                kind: ErrorKind::NotFound | ErrorKind::Conflict,
                ..
            }) => {}
            Err(e) => return Err(e),
        }
    }
    // Answered once they are gone, as Docker does.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        let left = statuses(&b).await?;
        if !left.iter().any(|s| deleted.contains(&s.name)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: Vec<String> = deleted.iter().map(|n| container_id(n)).collect();
    Ok(Json(
        json!({"ContainersDeleted": ids, "SpaceReclaimed": reclaimed}),
    ))
}

/// `POST /images/prune`.
pub async fn images(
    State(b): State<Shared>,
    Query(q): Query<PruneQuery>,
) -> Result<Json<Value>, DockerError> {
    let p = parse_prune(q.filters.as_deref(), true)?;
    let mut deleted = Vec::new();
    // Every image in berth's store has a name: none is dangling; unused ones go with `-a`.
    if !p.dangling {
        let used: Vec<String> = statuses(&b)
            .await?
            .into_iter()
            .filter_map(|s| s.image_digest)
            .collect();
        let rows = call(&b, Request::Images).await?;
        for r in rows.as_array().into_iter().flatten() {
            let (Some(name), Some(digest)) = (r["name"].as_str(), r["digest"].as_str()) else {
                continue;
            };
            if used.iter().any(|u| u == digest) {
                continue;
            }
            let created = r["created"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0, |d| d.timestamp());
            let labels = if p.labels.is_empty() && p.not_labels.is_empty() {
                BTreeMap::new()
            } else {
                let i = call(&b, Request::Image { image: name.into() }).await?;
                serde_json::from_value(i["config"]["config"]["Labels"].clone()).unwrap_or_default()
            };
            if !p.selects(created, &labels) {
                continue;
            }
            match call(
                &b,
                Request::Rmi {
                    image: name.into(),
                    force: false,
                },
            )
            .await
            {
                Ok(_) => {
                    deleted.push(json!({"Untagged": super::images::familiar(name)}));
                    deleted.push(json!({"Deleted": digest}));
                }
                // A container prepared from it (berth's own record): in use after all.
                Err(DockerError::Backend {
                    kind: ErrorKind::Conflict | ErrorKind::NotFound,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let gc = call(&b, Request::Gc).await?;
    Ok(Json(json!({
        "ImagesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": gc["bytes_freed"].as_u64().unwrap_or(0),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_layer_size() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), [0u8; 1000]).unwrap();
        std::fs::write(d.path().join("g"), [0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("l")).unwrap();
        assert_eq!(dir_size(d.path()), 1024 + 4);
        assert_eq!(dir_size(&d.path().join("missing")), 0);
    }

    #[test]
    fn prune_filters() {
        let p = parse_prune(
            Some(r#"{"until":["1700000000"],"label":["keep=no"]}"#),
            false,
        )
        .unwrap();
        let l = BTreeMap::from([("keep".to_owned(), "no".to_owned())]);
        assert!(p.selects(1_600_000_000, &l));
        assert!(!p.selects(1_800_000_000, &l));
        assert!(!p.selects(1_600_000_000, &BTreeMap::new()));
        let p = parse_prune(Some(r#"{"label!":["keep"]}"#), false).unwrap();
        assert!(p.selects(0, &BTreeMap::new()));
        assert!(!p.selects(0, &BTreeMap::from([("keep".into(), "x".into())])));
        assert!(parse_prune(Some(r#"{"dangling":["true"]}"#), false).is_err());
        assert!(parse_prune(None, true).unwrap().dangling);
        assert!(
            !parse_prune(Some(r#"{"dangling":["false"]}"#), true)
                .unwrap()
                .dangling
        );
        let p = parse_prune(Some(r#"{"until":["2023-11-14T22:13:20Z"]}"#), true).unwrap();
        assert_eq!(p.until, Some(1_700_000_000));
    }
}

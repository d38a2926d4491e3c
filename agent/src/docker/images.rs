//! Images as Docker shows them, from berth's store: list, inspect, history, tag and remove.
//! Runs in berthd.

use super::{DockerError, Shared, call};
use crate::api::{ErrorKind, Request};
use crate::image::ImageRef;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// A row of berthd's image list.
#[derive(Debug, Deserialize)]
pub(super) struct Stored {
    pub(super) name: String,
    pub(super) digest: String,
    size: u64,
    #[serde(default)]
    created: Option<String>,
}

/// A normalised name as Docker shows it: Docker Hub's host and `library/` left out.
pub(super) fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// `reference` as Docker names it in messages (`busybox` is `busybox:latest`).
pub(super) fn shown(reference: &str) -> String {
    ImageRef::parse(reference).map_or_else(
        |_| reference.to_owned(),
        |r| familiar(&r.to_string()).to_owned(),
    )
}

/// Docker's summary of one stored image: its manifest digest stands in for the image ID.
fn summary(s: &Stored) -> Value {
    let tags: Vec<&str> = if s.name.is_empty() {
        vec![]
    } else {
        vec![familiar(&s.name)]
    };
    // The one reference grammar: `host:5000/x` has a port, not a tag.
    let repo = crate::image::reference::ImageRef::parse(&s.name)
        .map(|r| familiar(&r.name()).to_owned())
        .unwrap_or_else(|_| s.name.clone());
    json!({
        "Id": s.digest,
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": if s.name.is_empty() { vec![] } else { vec![format!("{repo}@{}", s.digest)] },
        "Created": s.created.as_deref().and_then(chrono_secs).unwrap_or(0),
        "Size": s.size,
        "SharedSize": -1,
        "VirtualSize": s.size,
        "Labels": {},
        "Containers": -1,
    })
}

/// `GET /images/json`.
pub async fn list(State(b): State<Shared>) -> Result<Json<Vec<Value>>, DockerError> {
    let rows: Vec<Stored> = serde_json::from_value(call(&b, Request::Images).await?)
        .map_err(|e| DockerError::Internal(format!("image list: {e}")))?;
    Ok(Json(rows.iter().map(summary).collect()))
}

async fn rows(b: &Shared) -> Result<Vec<Stored>, DockerError> {
    serde_json::from_value(call(b, Request::Images).await?)
        .map_err(|e| DockerError::Internal(format!("image list: {e}")))
}

/// The stored name (or, for an ID, the manifest digest) `wanted` refers to: a reference in the
/// one grammar (`busybox` is `docker.io/library/busybox:latest`), or a prefix of an image ID.
fn resolve<'a>(rows: &'a [Stored], wanted: &str) -> Option<&'a Stored> {
    if let Ok(r) = ImageRef::parse(wanted) {
        let n = r.to_string();
        if let Some(s) = rows.iter().find(|s| s.name == n) {
            return Some(s);
        }
    }
    let hex = wanted.strip_prefix("sha256:").unwrap_or(wanted);
    if hex.is_empty() || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    rows.iter().find(|s| {
        s.digest
            .strip_prefix("sha256:")
            .is_some_and(|d| d.starts_with(hex))
    })
}

pub(super) async fn find(b: &Shared, wanted: &str) -> Result<Stored, DockerError> {
    let mut all = rows(b).await?;
    match resolve(&all, wanted) {
        Some(s) => {
            let i = all
                .iter()
                .position(|x| std::ptr::eq(x, s))
                .expect("found in rows");
            Ok(all.swap_remove(i))
        }
        None => Err(DockerError::NoSuchImage(wanted.to_owned())),
    }
}

/// The stored image's config as berthd answers `image`.
async fn config(b: &Shared, s: &Stored) -> Result<Value, DockerError> {
    let key = if s.name.is_empty() {
        &s.digest
    } else {
        &s.name
    };
    call(b, Request::Image { image: key.clone() }).await
}

/// Docker's `Created` (RFC 3339) from the config's `created`, or the epoch.
fn created(cfg: &Value) -> Value {
    cfg["created"]
        .as_str()
        .map_or(json!("1970-01-01T00:00:00Z"), |c| json!(c))
}

/// Docker's inspect document of a stored image.
fn inspect_doc(s: &Stored, img: &Value) -> Value {
    let cfg = &img["config"];
    let c = &cfg["config"];
    let mut doc = summary(s);
    let doc_map = doc.as_object_mut().expect("summary is an object");
    for k in ["ParentId", "SharedSize", "Containers", "Labels"] {
        doc_map.remove(k);
    }
    doc_map.insert("Parent".into(), json!(""));
    doc_map.insert("Comment".into(), json!(""));
    doc_map.insert("Created".into(), created(cfg));
    doc_map.insert("Architecture".into(), cfg["architecture"].clone());
    doc_map.insert("Os".into(), cfg["os"].clone());
    doc_map.insert(
        "Author".into(),
        cfg.get("author").cloned().unwrap_or(json!("")),
    );
    doc_map.insert(
        "Config".into(),
        json!({
            "Cmd": c["Cmd"], "Entrypoint": c["Entrypoint"], "Env": c["Env"],
            "WorkingDir": c.get("WorkingDir").cloned().unwrap_or(json!("")),
            "User": c.get("User").cloned().unwrap_or(json!("")),
            "ExposedPorts": c["ExposedPorts"], "Labels": c["Labels"],
            "Volumes": c["Volumes"], "StopSignal": c.get("StopSignal").cloned().unwrap_or(json!("")),
        }),
    );
    doc_map.insert(
        "RootFS".into(),
        json!({"Type": "layers", "Layers": cfg["rootfs"]["diff_ids"]}),
    );
    doc_map.insert(
        "Metadata".into(),
        json!({"LastTagTime": "0001-01-01T00:00:00Z"}),
    );
    doc
}

/// Docker's history of an image, newest first, from its config's `history`.
fn history_doc(s: &Stored, img: &Value) -> Value {
    let cfg = &img["config"];
    let entries = cfg["history"].as_array().cloned().unwrap_or_default();
    let n = entries.len();
    let rows: Vec<Value> = entries
        .iter()
        .enumerate()
        .rev()
        .map(|(i, h)| {
            let created = h["created"]
                .as_str()
                .and_then(chrono_secs)
                .unwrap_or(0);
            json!({
                "Id": if i + 1 == n { s.digest.as_str() } else { "<missing>" },
                "Created": created,
                "CreatedBy": h.get("created_by").cloned().unwrap_or(json!("")),
                "Tags": if i + 1 == n && !s.name.is_empty() { json!([familiar(&s.name)]) } else { json!(null) },
                "Size": 0,
                "Comment": h.get("comment").cloned().unwrap_or(json!("")),
            })
        })
        .collect();
    json!(rows)
}

/// Seconds since the epoch of an RFC 3339 time.
fn chrono_secs(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp())
}

/// `GET /images/{name}/json` and `GET /images/{name}/history` (names hold slashes).
pub async fn get(
    State(b): State<Shared>,
    Path(path): Path<String>,
) -> Result<Response, DockerError> {
    let (name, what) = path.rsplit_once('/').ok_or(DockerError::PageNotFound)?;
    if what == "get" {
        return super::image_archive::save(&b, vec![name.to_owned()]).await;
    }
    let s = find(&b, name).await?;
    let img = config(&b, &s).await?;
    match what {
        "json" => Ok(Json(inspect_doc(&s, &img)).into_response()),
        "history" => Ok(Json(history_doc(&s, &img)).into_response()),
        _ => Err(DockerError::PageNotFound),
    }
}

#[derive(Debug, Deserialize)]
pub struct TagQuery {
    #[serde(default)]
    repo: String,
    #[serde(default)]
    tag: String,
}

/// `POST /images/{name}/tag?repo=…&tag=…`: 201.
pub async fn post(
    State(b): State<Shared>,
    Path(path): Path<String>,
    Query(q): Query<TagQuery>,
) -> Result<StatusCode, DockerError> {
    let name = path.strip_suffix("/tag").ok_or(DockerError::PageNotFound)?;
    let s = find(&b, name).await?;
    if q.repo.is_empty() {
        return Err(DockerError::BadRequest(
            "repository name must have at least one component".into(),
        ));
    }
    let target = super::pull::reference(
        &q.repo,
        Some(if q.tag.is_empty() { "latest" } else { &q.tag }),
    );
    let source = if s.name.is_empty() { s.digest } else { s.name };
    call(
        &b,
        Request::Tag {
            image: source,
            name: target,
        },
    )
    .await?;
    Ok(StatusCode::CREATED)
}

#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    force: Option<String>,
}

/// An image ID as Docker shortens it: 12 hex digits.
fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// What Docker answers for removing `removed` names of an image whose other names are `left`.
fn removal_doc(removed: &[&Stored], left: usize) -> Value {
    let mut out: Vec<Value> = removed
        .iter()
        .filter(|s| !s.name.is_empty())
        .map(|s| json!({"Untagged": familiar(&s.name)}))
        .collect();
    if left == 0
        && let Some(s) = removed.first()
    {
        out.push(json!({"Deleted": s.digest}));
    }
    json!(out)
}

/// `DELETE /images/{name}?force=…`.
pub async fn remove(
    State(b): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Response, DockerError> {
    let force = q.force.as_deref().is_some_and(|f| f == "1" || f == "true");
    let all = rows(&b).await?;
    let s = resolve(&all, &name).ok_or_else(|| DockerError::NoSuchImage(name.clone()))?;
    // By name: that name goes. By ID: every name of the image goes.
    let by_name = ImageRef::parse(&name).is_ok_and(|r| r.to_string() == s.name);
    let key = if by_name {
        s.name.clone()
    } else {
        s.digest.clone()
    };
    let removed: Vec<&Stored> = all
        .iter()
        .filter(|x| {
            if by_name {
                x.name == s.name
            } else {
                x.digest == s.digest
            }
        })
        .collect();
    let left = all.iter().filter(|x| x.digest == s.digest).count() - removed.len();
    // Docker removes an image by ID only when one name holds it, unless forced.
    if !by_name && !force && removed.len() > 1 {
        return Err(DockerError::Conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            short_id(&s.digest)
        )));
    }
    call(&b, Request::Rmi { image: key, force })
        .await
        .map_err(|e| match e {
            DockerError::Backend { kind: ErrorKind::Conflict, message } => {
                DockerError::Conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container is using its referenced image {}: {message}",
                    short_id(&s.digest)
                ))
            }
            DockerError::Backend { kind: ErrorKind::NotFound, .. } => DockerError::NoSuchImage(name.clone()),
            e => e,
        })?;
    Ok(Json(removal_doc(&removed, left)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_digests() {
        let s = Stored {
            name: "registry.local:5000/busybox:1.36".into(),
            digest: "sha256:ab".into(),
            size: 10,
            created: Some("2024-01-02T03:04:05Z".into()),
        };
        let v = summary(&s);
        assert_eq!(v["RepoTags"][0], "registry.local:5000/busybox:1.36");
        assert_eq!(v["Created"], 1704164645);
        assert_eq!(v["RepoDigests"][0], "registry.local:5000/busybox@sha256:ab");
        let hub = summary(&Stored {
            name: "docker.io/library/busybox:1.36".into(),
            digest: "sha256:ef".into(),
            size: 1,
            created: None,
        });
        assert_eq!(hub["RepoTags"][0], "busybox:1.36");
        assert_eq!(hub["RepoDigests"][0], "busybox@sha256:ef");
        let v = summary(&Stored {
            name: String::new(),
            digest: "sha256:cd".into(),
            size: 1,
            created: None,
        });
        assert_eq!(v["RepoTags"], json!([]));
    }

    fn row(name: &str, digest: &str) -> Stored {
        Stored {
            name: name.into(),
            digest: digest.into(),
            size: 1,
            created: None,
        }
    }

    #[test]
    fn names_resolve_by_short_form_and_id_prefix() {
        let rows = vec![
            row("docker.io/library/busybox:latest", "sha256:abcdef01"),
            row("r.local:5000/app:1", "sha256:12345678"),
        ];
        assert_eq!(resolve(&rows, "busybox").unwrap().digest, "sha256:abcdef01");
        assert_eq!(
            resolve(&rows, "busybox:latest").unwrap().digest,
            "sha256:abcdef01"
        );
        assert_eq!(
            resolve(&rows, "r.local:5000/app:1").unwrap().digest,
            "sha256:12345678"
        );
        assert_eq!(resolve(&rows, "1234").unwrap().name, "r.local:5000/app:1");
        assert_eq!(
            resolve(&rows, "sha256:abcd").unwrap().name,
            "docker.io/library/busybox:latest"
        );
        assert!(resolve(&rows, "busybox:1.36").is_none());
        assert!(resolve(&rows, "r.local:5000/app").is_none());
        assert!(resolve(&rows, "9999").is_none());
    }

    #[test]
    fn inspect_from_the_config() {
        let s = row("docker.io/library/busybox:latest", "sha256:ab");
        let img = json!({"config": {
            "created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/w", "ExposedPorts": {"80/tcp": {}}},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:d1"]},
            "history": [{"created": "2024-01-02T03:04:05Z", "created_by": "ADD x /"}],
        }});
        let d = inspect_doc(&s, &img);
        assert_eq!(d["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(d["Config"]["WorkingDir"], "/w");
        assert_eq!(d["Config"]["User"], "");
        assert_eq!(d["Config"]["ExposedPorts"]["80/tcp"], json!({}));
        assert_eq!(d["Architecture"], "amd64");
        assert_eq!(d["Created"], "2024-01-02T03:04:05Z");
        assert_eq!(d["RepoTags"][0], "busybox:latest");
        assert_eq!(d["RootFS"]["Layers"][0], "sha256:d1");
        let h = history_doc(&s, &img);
        assert_eq!(h[0]["Created"], 1704164645);
        assert_eq!(h[0]["CreatedBy"], "ADD x /");
    }

    #[test]
    fn removal_answers() {
        let a = row("docker.io/library/busybox:latest", "sha256:ab");
        let v = removal_doc(&[&a], 0);
        assert_eq!(
            v,
            json!([{"Untagged": "busybox:latest"}, {"Deleted": "sha256:ab"}])
        );
        assert_eq!(
            removal_doc(&[&a], 1),
            json!([{"Untagged": "busybox:latest"}])
        );
    }
}

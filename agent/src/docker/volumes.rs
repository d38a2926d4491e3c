//! Volumes as Docker shows them: berth's named volumes (`<state>/volumes/<name>/_data`, what a
//! spec's `volumes: ["data:/data"]` and `docker run -v data:/data` mount), created, listed,
//! inspected, removed and pruned through berthd's volume requests. Only Docker's `local` driver
//! without options exists here. Runs in berthd.

use super::containers::{container_id, parse_filters};
use super::{DockerError, Shared, call};
use crate::api::{ErrorKind, Request};
use crate::volume::VolumeInfo;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Docker's Volume object.
fn doc(v: &VolumeInfo) -> Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": v.mountpoint,
        "CreatedAt": v.created,
        "Labels": v.labels,
        "Scope": "local",
        "Options": {},
    })
}

async fn all(b: &Shared) -> Result<Vec<VolumeInfo>, DockerError> {
    serde_json::from_value(call(b, Request::Volumes).await?)
        .map_err(|e| DockerError::Internal(format!("volume list: {e}")))
}

/// Docker's message for a missing volume.
fn no_such(name: &str, e: DockerError) -> DockerError {
    match e {
        DockerError::Backend {
            kind: ErrorKind::NotFound,
            ..
        } => DockerError::Backend {
            kind: ErrorKind::NotFound,
            message: format!("get {name}: no such volume"),
        },
        e => e,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    /// Swarm cluster volumes: refused when set.
    #[serde(default)]
    cluster_volume_spec: Option<Value>,
}

/// A name for a volume created without one, as Docker makes them (64 hex digits).
fn anonymous_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    container_id(&format!("volume-{nanos}-{}", std::process::id()))
}

/// Whether `name` is one Docker would have made up: such volumes are what a plain prune removes.
fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|c| c.is_ascii_hexdigit())
}

/// What a create request asks that berth cannot do.
fn refused(body: &CreateBody) -> Option<String> {
    if !matches!(body.driver.as_str(), "" | "local") {
        return Some(format!(
            "volume driver {} is not supported by berth: only local volumes (directories under berthd's state dir) exist",
            body.driver
        ));
    }
    if let Some(k) = body.driver_opts.iter().flatten().map(|(k, _)| k).next() {
        return Some(format!(
            "volume option {k} is not supported by berth: local volumes take no options"
        ));
    }
    body.cluster_volume_spec
        .as_ref()
        .filter(|v| !v.is_null())
        .map(|_| "cluster volumes are not supported by berth".to_owned())
}

/// `POST /volumes/create`: 201 with the volume.
pub async fn create(
    State(b): State<Shared>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    if let Some(m) = refused(&body) {
        return Err(DockerError::BadRequest(m));
    }
    let name = if body.name.is_empty() {
        anonymous_name()
    } else {
        body.name.clone()
    };
    let v = call(
        &b,
        Request::VolumeCreate {
            name,
            labels: body.labels.unwrap_or_default(),
        },
    )
    .await?;
    let v: VolumeInfo =
        serde_json::from_value(v).map_err(|e| DockerError::Internal(format!("volume: {e}")))?;
    Ok((StatusCode::CREATED, Json(doc(&v))))
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    filters: Option<String>,
}

/// Whether `v` passes Docker's volume filters (`name`, `label`, `dangling`, `driver`).
fn matches(filters: &BTreeMap<String, Vec<String>>, v: &VolumeInfo) -> Result<bool, DockerError> {
    for (key, values) in filters {
        let any = |pred: &dyn Fn(&str) -> bool| values.iter().any(|x| pred(x));
        let ok = match key.as_str() {
            "name" => any(&|x| v.name.contains(x)),
            "driver" => any(&|x| x == "local"),
            "dangling" => any(&|x| matches!(x, "true" | "1") == v.users.is_empty()),
            "label" => any(&|x| match x.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|l| l == val),
                None => v.labels.contains_key(x),
            }),
            // `all` is prune's: every unused volume, not only anonymous ones.
            "all" => true,
            other => {
                return Err(DockerError::BadRequest(format!(
                    "invalid filter '{other}' (berth filters volumes on name, label, dangling and driver)"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `GET /volumes`.
pub async fn list(
    State(b): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, DockerError> {
    let filters = parse_filters(q.filters.as_deref())?;
    let mut out = Vec::new();
    for v in all(&b).await? {
        if matches(&filters, &v)? {
            out.push(doc(&v));
        }
    }
    Ok(Json(json!({"Volumes": out, "Warnings": []})))
}

/// `GET /volumes/{name}`.
pub async fn inspect(
    State(b): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, DockerError> {
    all(&b)
        .await?
        .iter()
        .find(|v| v.name == name)
        .map(|v| Json(doc(v)))
        .ok_or_else(|| DockerError::Backend {
            kind: ErrorKind::NotFound,
            message: format!("get {name}: no such volume"),
        })
}

#[derive(Debug, Default, Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    force: Option<String>,
}

/// `DELETE /volumes/{name}`: 204; 409 while a container's spec mounts it, unless forced.
pub async fn remove(
    State(b): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, DockerError> {
    let force = matches!(q.force.as_deref(), Some("1" | "true"));
    call(
        &b,
        Request::VolumeRemove {
            name: name.clone(),
            force,
        },
    )
    .await
    .map_err(|e| match e {
        DockerError::Backend {
            kind: ErrorKind::Conflict,
            message,
        } => DockerError::Conflict(format!("remove {name}: volume is in use - {message}")),
        e => no_such(&name, e),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune`: unused anonymous volumes, or with the `all` filter every unused one
/// (Docker's rule since API 1.42); `label` filters narrow it.
pub async fn prune(
    State(b): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, DockerError> {
    let filters = parse_filters(q.filters.as_deref())?;
    let every = filters
        .get("all")
        .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")));
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for v in all(&b).await? {
        if !v.users.is_empty() || !(every || is_anonymous(&v.name)) || !matches(&filters, &v)? {
            continue;
        }
        let size = dir_size(&v.mountpoint);
        call(
            &b,
            Request::VolumeRemove {
                name: v.name.clone(),
                force: false,
            },
        )
        .await?;
        reclaimed += size;
        deleted.push(v.name);
    }
    Ok(Json(
        json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed}),
    ))
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
        .map(|(p, m)| if m.is_dir() { dir_size(&p) } else { m.len() })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, users: &[&str]) -> VolumeInfo {
        VolumeInfo {
            name: name.into(),
            mountpoint: "/v".into(),
            created: String::new(),
            labels: BTreeMap::from([("team".into(), "a".into())]),
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    #[test]
    fn only_local_volumes_without_options() {
        let b = |v: Value| serde_json::from_value::<CreateBody>(v).unwrap();
        assert!(
            refused(&b(
                json!({"Name": "x", "Driver": "local", "DriverOpts": {}})
            ))
            .is_none()
        );
        let e = refused(&b(json!({"Name": "x", "Driver": "nfs"}))).unwrap();
        assert!(e.contains("nfs"), "{e}");
        let e = refused(&b(json!({"DriverOpts": {"type": "tmpfs"}}))).unwrap();
        assert!(e.contains("type"), "{e}");
    }

    #[test]
    fn filters_and_anonymous_names() {
        let f = |s: &str| parse_filters(Some(s)).unwrap();
        assert!(matches(&f(r#"{"label":["team=a"]}"#), &vol("x", &[])).unwrap());
        assert!(!matches(&f(r#"{"label":["team=b"]}"#), &vol("x", &[])).unwrap());
        assert!(matches(&f(r#"{"dangling":["true"]}"#), &vol("x", &[])).unwrap());
        assert!(!matches(&f(r#"{"dangling":["true"]}"#), &vol("x", &["web"])).unwrap());
        assert!(matches(&f(r#"{"bogus":["1"]}"#), &vol("x", &[])).is_err());
        assert!(is_anonymous(&anonymous_name()));
        assert!(!is_anonymous("data"));
    }
}

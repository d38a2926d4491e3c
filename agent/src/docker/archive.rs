//! `docker cp` and `docker export` over the API: `HEAD|GET|PUT /containers/{id}/archive?path=`
//! and `GET /containers/{id}/export`, for running and stopped containers alike (see
//! [`super::copy`] for how the root is reached). A path under one of the container's bind mounts
//! or named volumes is served from the mount's host directory, as the container sees it.
//! Runs in berthd; the file work on blocking threads.

use super::copy::{self, CopyError, Root};
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_proto::OverlayRootfs;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

impl From<CopyError> for DockerError {
    fn from(e: CopyError) -> DockerError {
        match e {
            CopyError::NotFound(_) => DockerError::Backend {
                kind: crate::api::ErrorKind::NotFound,
                message: e.to_string(),
            },
            CopyError::NotADirectory(_) | CopyError::Extract(_) => {
                DockerError::BadRequest(e.to_string())
            }
            e => DockerError::Internal(e.to_string()),
        }
    }
}

/// Where the container's files are, as berthd knows it.
struct Place {
    name: String,
    bundle: PathBuf,
    running: bool,
    overlay: Option<OverlayRootfs>,
    /// Bind mounts (named volumes are bind mounts of their directories): destination, source.
    binds: Vec<(String, PathBuf)>,
    /// Destinations of the read-only ones.
    read_only_binds: Vec<String>,
    /// The spec's `read_only: true`.
    read_only_root: bool,
}

async fn place(b: &Shared, id: &str) -> Result<Place, DockerError> {
    let name = super::lifecycle::find(b, id).await?;
    let i = call(b, Request::Inspect { name: name.clone() }).await?;
    let running = matches!(i["status"]["phase"].as_str(), Some("running" | "starting"));
    let mut overlay = serde_json::from_value(i["shim_config"]["rootfs"].clone()).ok();
    if overlay.is_none() && !running {
        // Created, never started (`docker create` then `docker cp`): its layers made ready now,
        // its upper dir the one its first start will use.
        let r = call(b, Request::Rootfs { name: name.clone() }).await?;
        overlay = Some(
            serde_json::from_value(r)
                .map_err(|e| DockerError::Internal(format!("rootfs of {name}: {e}")))?,
        );
    }
    Ok(Place {
        bundle: PathBuf::from(i["bundle"].as_str().unwrap_or_default()),
        binds: binds(&i["oci_config"]["mounts"]),
        read_only_binds: read_only(&i["oci_config"]["mounts"]),
        read_only_root: i["spec"]["read_only"].as_bool().unwrap_or(false),
        name,
        running,
        overlay,
    })
}

/// The bind mounts of an OCI config whose source is a host directory.
fn binds(mounts: &Value) -> Vec<(String, PathBuf)> {
    mounts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["type"] == "bind"
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
        })
        .filter_map(|m| {
            Some((
                m["destination"].as_str()?.to_owned(),
                PathBuf::from(m["source"].as_str()?),
            ))
        })
        .filter(|(_, s)| s.is_dir())
        .collect()
}

/// The destinations of the read-only mounts of an OCI config.
fn read_only(mounts: &Value) -> Vec<String> {
    mounts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == "ro"))
        })
        .filter_map(|m| Some(m["destination"].as_str()?.trim_end_matches('/').to_owned()))
        .collect()
}

/// The bind mount `path` is under (the deepest), and the path inside its source.
fn under_bind<'a>(binds: &'a [(String, PathBuf)], path: &str) -> Option<(&'a PathBuf, String)> {
    binds
        .iter()
        .filter_map(|(dest, src)| {
            let d = dest.trim_end_matches('/');
            let rest = path.strip_prefix(d)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| (d.len(), src, rest.to_owned()))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, src, rest)| {
            (
                src,
                if rest.is_empty() {
                    "/".to_owned()
                } else {
                    rest
                },
            )
        })
}

/// The container's root for one copy, and the path to use inside it (a bind mount's source
/// serves a path under the mount).
fn open_root(p: &Place, path: &str, writable: bool) -> Result<(Root, String), DockerError> {
    let bind = under_bind(&p.binds, path);
    if writable {
        // As Docker refuses: the container could not write there either.
        let deepest = p
            .binds
            .iter()
            .map(|(d, _)| d.trim_end_matches('/'))
            .filter(|d| {
                path.strip_prefix(d)
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'))
            });
        let deepest = deepest.max_by_key(|d| d.len());
        if deepest.is_some_and(|d| p.read_only_binds.iter().any(|r| r == d)) {
            return Err(DockerError::BadRequest(format!(
                "mounted volume is marked read-only: cannot copy into {path} of container {}",
                p.name
            )));
        }
        if bind.is_none() && p.read_only_root {
            return Err(DockerError::BadRequest(format!(
                "container rootfs is marked read-only: cannot copy into {path} of container {}",
                p.name
            )));
        }
    }
    if let Some((src, rest)) = bind {
        // A path that is the mount point itself keeps its name (`/data` is `data`).
        let rest = if rest == "/" && !path.ends_with('/') {
            "/.".to_owned()
        } else {
            rest
        };
        return Ok((Root::bind(src.clone()), rest));
    }
    if Root::is_mounted(&p.bundle) {
        return Ok((Root::running(&p.bundle), path.to_owned()));
    }
    if p.running {
        return Err(DockerError::Conflict(format!(
            "the root filesystem of running container {} is not visible to berthd (is berthd in another mount namespace?)",
            p.name
        )));
    }
    let o = p.overlay.as_ref().ok_or_else(|| {
        DockerError::Conflict(format!(
            "container {} has no root filesystem yet: it has never been started",
            p.name
        ))
    })?;
    Ok((
        Root::mount_stopped(&p.bundle, o, writable)?,
        path.to_owned(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ArchiveQuery {
    path: String,
    #[serde(default, rename = "noOverwriteDirNonDir")]
    no_overwrite_dir_non_dir: Option<String>,
    #[serde(default, rename = "copyUIDGID")]
    copy_uid_gid: Option<String>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true" | "True"))
}

/// What the archive of `path` is named: its last component (`/` for the root).
fn base_name(path: &str) -> String {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    let t = t.strip_suffix("/.").unwrap_or(t);
    t.rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("/")
        .to_owned()
}

/// A blocking writer whose bytes become a response body.
struct ChunkWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tar written by `write` on a blocking thread, streamed as the response body.
fn tar_body(
    write: impl FnOnce(&mut tar::Builder<std::io::BufWriter<ChunkWriter>>) -> Result<(), CopyError>
    + Send
    + 'static,
) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let err_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let mut t = tar::Builder::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            ChunkWriter(tx),
        ));
        t.mode(tar::HeaderMode::Complete);
        let r = write(&mut t)
            .and_then(|()| t.into_inner().map_err(CopyError::Write))
            .and_then(|mut w| std::io::Write::flush(&mut w).map_err(CopyError::Write));
        if let Err(e) = r {
            // A body cannot turn into an error status any more: the stream breaks instead.
            tracing::warn!("docker api: archive: {e}");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b, rx))
    }))
}

/// `HEAD|GET /containers/{id}/archive?path=`: the path's stat in a header, and for GET its tar.
pub async fn get(
    State(b): State<Shared>,
    method: Method,
    Path(id): Path<String>,
    Query(q): Query<ArchiveQuery>,
) -> Result<Response, DockerError> {
    if !q.path.starts_with('/') {
        return Err(DockerError::BadRequest(format!(
            "path {} is not absolute",
            q.path
        )));
    }
    let p = place(&b, &id).await?;
    let (root, inner) = open_root(&p, &q.path, false)?;
    let name = base_name(&q.path);
    let stat = {
        let r = copy::resolve(&root.dir, &inner)?;
        let st = r.stat(&q.path)?;
        copy::path_stat(&name, &st, r.link_target().as_deref())
    };
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(stat.to_string());
    let mut headers = HeaderMap::new();
    headers.insert(
        "X-Docker-Container-Path-Stat",
        HeaderValue::from_str(&encoded).map_err(|e| DockerError::Internal(e.to_string()))?,
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    if method == Method::HEAD {
        return Ok((StatusCode::OK, headers).into_response());
    }
    let path = q.path.clone();
    let body = tar_body(move |t| {
        let r = copy::resolve(&root.dir, &inner)?;
        match &r.name {
            Some(n) => copy::write_tree(t, &r.dir, n, std::path::Path::new(&name)),
            None => {
                let label = if path.ends_with("/.") {
                    "."
                } else {
                    name.as_str()
                };
                copy::write_tree(
                    t,
                    &r.dir,
                    std::ffi::OsStr::new("."),
                    std::path::Path::new(label),
                )
            }
        }?;
        drop(root);
        Ok(())
    });
    Ok((StatusCode::OK, headers, body).into_response())
}

/// A blocking reader of a request body.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, axum::Error>>,
    cur: Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// `PUT /containers/{id}/archive?path=`: the tar extracted into the directory `path`.
pub async fn put(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<ArchiveQuery>,
    body: Body,
) -> Result<StatusCode, DockerError> {
    if !q.path.starts_with('/') {
        return Err(DockerError::BadRequest(format!(
            "path {} is not absolute",
            q.path
        )));
    }
    let p = place(&b, &id).await?;
    let keep_kinds = truthy(q.no_overwrite_dir_non_dir.as_deref());
    // Without copyUIDGID, Docker makes the copies the container's root's.
    let owner = (!truthy(q.copy_uid_gid.as_deref())).then_some((0, 0));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let path = q.path.clone();
    let work = tokio::task::spawn_blocking(move || {
        let (root, inner) = open_root(&p, &path, true)?;
        let dir = copy::resolve(&root.dir, &inner)?.open_dir(&path)?;
        let reader = ChunkReader {
            rx,
            cur: Bytes::new(),
        };
        copy::extract(reader, &dir, keep_kinds, owner)?;
        drop(dir);
        drop(root);
        Ok::<_, DockerError>(())
    });
    let mut data = body.into_data_stream();
    while let Some(chunk) = data.next().await {
        if tx.send(chunk).await.is_err() {
            // The extraction failed (a path not found): the client still writes its tar, and an
            // answer sent before the body is read makes it fail on a broken pipe instead of
            // showing the error. Read the rest, up to a bound, so that it gets the answer.
            drain(&mut data, DRAIN_LIMIT).await;
            break;
        }
    }
    drop(tx);
    work.await
        .map_err(|e| DockerError::Internal(format!("extracting into {}: {e}", q.path)))??;
    Ok(StatusCode::OK)
}

/// The most of a failed copy's body read (and dropped) so that its client sees the answer.
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads and drops `data` until it ends or `limit` bytes went by.
async fn drain(data: &mut axum::body::BodyDataStream, limit: usize) {
    let mut seen = 0;
    while seen < limit {
        match data.next().await {
            Some(Ok(c)) => seen += c.len(),
            _ => return,
        }
    }
}

/// `GET /containers/{id}/export`: the container's whole root filesystem as a tar.
pub async fn export(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, DockerError> {
    let p = place(&b, &id).await?;
    let (root, _) = open_root(&p, "/", false)?;
    let body = tar_body(move |t| {
        let r = copy::resolve(&root.dir, "/")?;
        copy::write_children(t, &r.dir, std::path::Path::new(""))?;
        drop(root);
        Ok(())
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bind_mounts() {
        assert_eq!(base_name("/etc/hostname"), "hostname");
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/etc/."), "etc");
        assert_eq!(base_name("/"), "/");
        let m = serde_json::json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/", "options": ["rbind"]},
            {"destination": "/data/deep", "type": "none", "source": "/tmp", "options": ["bind"]},
        ]);
        let b = binds(&m);
        assert_eq!(b.len(), 2);
        assert_eq!(
            under_bind(&b, "/data/x"),
            Some((&PathBuf::from("/"), "/x".to_owned()))
        );
        assert_eq!(
            under_bind(&b, "/data/deep/y"),
            Some((&PathBuf::from("/tmp"), "/y".to_owned()))
        );
        assert_eq!(
            under_bind(&b, "/data"),
            Some((&PathBuf::from("/"), "/".to_owned()))
        );
        assert_eq!(under_bind(&b, "/database"), None);
        assert_eq!(under_bind(&b, "/etc"), None);
    }
}

//! `docker save` and `docker load`: `GET /images/{name}/get` and `GET /images/get?names=` answer
//! a docker-archive of stored images (berthd writes it to a file in its state dir, streamed and
//! then removed); `POST /images/load` takes a docker-archive or oci-archive into the store with
//! berth's own import and answers Docker's JSON stream (`Loaded image: …`). Runs in berthd.

use super::images::{familiar, find};
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt as _;

/// A file in berthd's state dir for one transfer, removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn spool(b: &Shared, what: &str) -> Result<Spool, DockerError> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let info = call(b, Request::Info).await?;
    let dir = info["state_dir"]
        .as_str()
        .ok_or_else(|| DockerError::Internal("berthd named no state dir".into()))?;
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Spool(PathBuf::from(dir).join(format!(
        "docker-{what}-{}-{n}.tar",
        std::process::id()
    ))))
}

/// The docker-archive of `names` (each a name or an image ID prefix), as the response.
pub async fn save(b: &Shared, names: Vec<String>) -> Result<Response, DockerError> {
    let mut keys = Vec::new();
    for n in &names {
        let s = find(b, n).await?;
        keys.push(if s.name.is_empty() { s.digest } else { s.name });
    }
    let file = spool(b, "save").await?;
    call(
        b,
        Request::ImageSave {
            images: keys,
            path: file.0.display().to_string(),
        },
    )
    .await?;
    let f = tokio::fs::File::open(&file.0)
        .await
        .map_err(|e| DockerError::Internal(format!("opening {}: {e}", file.0.display())))?;
    // The spool goes once the body is sent (the open file keeps the data until then).
    drop(file);
    let body = Body::from_stream(file_stream(f));
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], body).into_response())
}

/// `GET /images/get?names=a&names=b`.
pub async fn save_many(
    State(b): State<Shared>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, DockerError> {
    let names: Vec<String> = pairs
        .into_iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v)
        .collect();
    if names.is_empty() {
        return Err(DockerError::BadRequest("no image names given".into()));
    }
    save(&b, names).await
}

#[derive(Debug, Default, Deserialize)]
pub struct LoadQuery {
    #[serde(default)]
    quiet: Option<String>,
}

/// `POST /images/load`: the archive in the body, imported; Docker's JSON lines.
pub async fn load(
    State(b): State<Shared>,
    Query(q): Query<LoadQuery>,
    body: Body,
) -> Result<Response, DockerError> {
    let _ = q.quiet;
    let file = spool(&b, "load").await?;
    let io =
        |e: std::io::Error| DockerError::Internal(format!("writing {}: {e}", file.0.display()));
    let mut f = tokio::fs::File::create(&file.0).await.map_err(io)?;
    let mut data = body.into_data_stream();
    while let Some(chunk) = data.next().await {
        let chunk: Bytes =
            chunk.map_err(|e| DockerError::BadRequest(format!("reading the archive: {e}")))?;
        f.write_all(&chunk).await.map_err(io)?;
    }
    f.flush().await.map_err(io)?;
    drop(f);
    let loaded = call(
        &b,
        Request::ImageLoad {
            path: file.0.display().to_string(),
        },
    )
    .await?;
    let name = loaded["name"].as_str().unwrap_or_default();
    let line = json!({"stream": format!("Loaded image: {}\n", familiar(name))});
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        format!("{line}\n"),
    )
        .into_response())
}

/// A file as a stream of chunks.
fn file_stream(
    f: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    use tokio::io::AsyncReadExt as _;
    futures_util::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

//! `POST /images/create` (docker pull): a pull through berthd's store, answered as Docker's JSON
//! progress stream (one object per line) that the `docker` CLI renders; `X-Registry-Auth` gives
//! the credentials of this pull alone. Runs in berthd.

use super::images::shown;
use super::{DockerError, Shared, call};
use crate::api::{Request, Response};
use crate::image::{ImageRef, LayerPhase, Progress, Secret};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Debug, Deserialize)]
pub struct CreateQuery {
    #[serde(rename = "fromImage", default)]
    from_image: Option<String>,
    #[serde(rename = "fromSrc", default)]
    from_src: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

/// The reference `fromImage` and `tag` name together (`tag` is a tag or a digest).
pub fn reference(from_image: &str, tag: Option<&str>) -> String {
    match tag.filter(|t| !t.is_empty()) {
        Some(t) if t.contains(':') => format!("{from_image}@{t}"),
        Some(t) => format!("{from_image}:{t}"),
        None => from_image.to_owned(),
    }
}

/// Docker's `AuthConfig`, as the CLI sends it base64url-encoded in `X-Registry-Auth`.
#[derive(Debug, Default, Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

/// The credentials an `X-Registry-Auth` header carries; `None` when it carries none (the CLI
/// sends `{}` before any login), so that the store's configured credentials apply.
pub fn decode_auth(header: &str) -> Result<Option<Secret>, DockerError> {
    use oci_client::secrets::RegistryAuth;
    let bad = |e: String| DockerError::BadRequest(format!("invalid X-Registry-Auth header: {e}"));
    let h = header.trim();
    if h.is_empty() {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(h)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h.trim_end_matches('='))
        })
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(h))
        .map_err(|e| bad(e.to_string()))?;
    let a: AuthConfig = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    if !a.identitytoken.is_empty() {
        return Ok(Some(Secret::IdentityToken(a.identitytoken)));
    }
    if !a.username.is_empty() {
        return Ok(Some(Secret::Auth(RegistryAuth::Basic(
            a.username, a.password,
        ))));
    }
    if !a.auth.is_empty() {
        let pair = base64::engine::general_purpose::STANDARD
            .decode(&a.auth)
            .map_err(|e| bad(format!("auth: {e}")))?;
        let pair = String::from_utf8(pair).map_err(|e| bad(format!("auth: {e}")))?;
        let (u, p) = pair
            .split_once(':')
            .ok_or_else(|| bad("auth is not user:password".into()))?;
        return Ok(Some(Secret::Auth(RegistryAuth::Basic(u.into(), p.into()))));
    }
    Ok(None)
}

/// Docker's short layer id: the first 12 hex digits of the blob digest.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// Turns successive progress snapshots of one pull into Docker's progress lines: each layer
/// announced once, its downloaded bytes while they grow, and its end.
#[derive(Debug, Default)]
pub struct Lines {
    shown: HashMap<String, (LayerPhase, u64)>,
}

impl Lines {
    pub fn step(&mut self, p: &Progress) -> Vec<Value> {
        let mut out = Vec::new();
        for l in &p.layers {
            let id = short(&l.digest);
            let line = |status: &str, detail: Value| json!({"status": status, "progressDetail": detail, "id": id});
            let before = self.shown.get(&l.digest).copied();
            if before.is_none() && l.phase != LayerPhase::Exists {
                out.push(line("Pulling fs layer", json!({})));
            }
            if before == Some((l.phase, l.done)) {
                continue;
            }
            match l.phase {
                LayerPhase::Waiting => {}
                LayerPhase::Exists => out.push(line("Already exists", json!({}))),
                LayerPhase::Downloading => out.push(line(
                    "Downloading",
                    json!({"current": l.done, "total": l.size}),
                )),
                LayerPhase::Complete => {
                    out.push(line("Download complete", json!({})));
                    out.push(line("Pull complete", json!({})));
                }
            }
            self.shown.insert(l.digest.clone(), (l.phase, l.done));
        }
        out
    }
}

/// Docker's in-stream error, which the CLI prints before exiting 1.
pub fn error_line(message: &str) -> Value {
    json!({"errorDetail": {"message": message}, "error": message})
}

/// The closing lines of a pull that stored `digest` under `shown` (the familiar name).
pub fn done_lines(shown: &str, digest: &str, newer: bool) -> Vec<Value> {
    let what = if newer {
        "Downloaded newer image for"
    } else {
        "Image is up to date for"
    };
    vec![
        json!({"status": format!("Digest: {digest}")}),
        json!({"status": format!("Status: {what} {shown}")}),
    ]
}

fn bytes(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// `POST /images/create`.
pub async fn create(
    State(b): State<Shared>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
) -> Result<axum::response::Response, DockerError> {
    if q.from_src.is_some() {
        return Err(DockerError::NotSupported(
            "importing a root filesystem (fromSrc) is not supported by berth: pull the image or load an OCI archive with an image_file spec".into(),
        ));
    }
    let from = q
        .from_image
        .filter(|f| !f.is_empty())
        .ok_or_else(|| DockerError::BadRequest("fromImage or fromSrc is required".into()))?;
    let wanted = reference(&from, q.tag.as_deref());
    let r = ImageRef::parse(&wanted).map_err(|e| DockerError::BadRequest(e.to_string()))?;
    let credentials = match headers.get("x-registry-auth") {
        Some(h) => decode_auth(h.to_str().map_err(|e| {
            DockerError::BadRequest(format!("invalid X-Registry-Auth header: {e}"))
        })?)?,
        None => None,
    };
    let name = r.to_string();
    let before = call(
        &b,
        Request::Image {
            image: name.clone(),
        },
    )
    .await
    .ok()
    .and_then(|v| v["digest"].as_str().map(str::to_owned));
    let shown = shown(&name);
    let first = json!({
        "status": format!("Pulling from {}", r.repository()),
        "id": r.tag().or(r.digest()).unwrap_or("latest"),
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let _ = tx.send(bytes(&first)).await;
        let (ptx, mut prx) = tokio::sync::watch::channel(Progress::default());
        let task = {
            let (b, name) = (b.clone(), name.clone());
            tokio::spawn(async move { b.pull(name, credentials, ptx).await })
        };
        let mut lines = Lines::default();
        while prx.changed().await.is_ok() {
            let p = prx.borrow_and_update().clone();
            for l in lines.step(&p) {
                if tx.send(bytes(&l)).await.is_err() {
                    return;
                }
            }
        }
        let end = match task.await {
            Ok(Response::Ok { ok }) => {
                let digest = ok["digest"].as_str().unwrap_or_default().to_owned();
                let newer = before.as_deref() != Some(digest.as_str());
                done_lines(&shown, &digest, newer)
            }
            Ok(Response::Error { error, .. }) => vec![error_line(&error)],
            Err(e) => vec![error_line(&format!("pulling {name}: {e}"))],
        };
        for l in end {
            let _ = tx.send(bytes(&l)).await;
        }
    });
    Ok(super::json_stream(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::LayerProgress;
    use oci_client::secrets::RegistryAuth;

    fn enc(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE.encode(s)
    }

    #[test]
    fn auth_header_decoding() {
        let basic = decode_auth(&enc(
            r#"{"username":"u","password":"p?>","serveraddress":"r:5000"}"#,
        ))
        .unwrap();
        assert_eq!(
            basic,
            Some(Secret::Auth(RegistryAuth::Basic("u".into(), "p?>".into())))
        );
        let token = decode_auth(&enc(r#"{"identitytoken":"t"}"#)).unwrap();
        assert_eq!(token, Some(Secret::IdentityToken("t".into())));
        let unpadded = enc(r#"{"username":"a","password":"b"}"#);
        assert!(
            decode_auth(unpadded.trim_end_matches('='))
                .unwrap()
                .is_some()
        );
        let pair = enc(r#"{"auth":"dTpw"}"#);
        assert_eq!(
            decode_auth(&pair).unwrap(),
            Some(Secret::Auth(RegistryAuth::Basic("u".into(), "p".into())))
        );
        assert_eq!(decode_auth(&enc("{}")).unwrap(), None);
        assert_eq!(decode_auth("").unwrap(), None);
        assert!(decode_auth("!!not base64").is_err());
        assert!(decode_auth(&enc("[1]")).is_err());
    }

    #[test]
    fn references_from_query() {
        assert_eq!(reference("busybox", Some("1.36")), "busybox:1.36");
        assert_eq!(
            reference("r:5000/x", Some("sha256:ab")),
            "r:5000/x@sha256:ab"
        );
        assert_eq!(reference("busybox:1.36", Some("")), "busybox:1.36");
    }

    fn layer(d: &str, size: u64, done: u64, phase: LayerPhase) -> LayerProgress {
        LayerProgress {
            digest: d.into(),
            size,
            done,
            phase,
        }
    }

    #[test]
    fn progress_lines() {
        let a = "sha256:aaaaaaaaaaaaaaaaaaaa";
        let b = "sha256:bbbbbbbbbbbbbbbbbbbb";
        let mut lines = Lines::default();
        let mut p = Progress {
            layers: vec![
                layer(a, 10, 0, LayerPhase::Waiting),
                layer(b, 5, 5, LayerPhase::Exists),
            ],
            ..Default::default()
        };
        let out = lines.step(&p);
        assert_eq!(
            out[0],
            json!({"status": "Pulling fs layer", "progressDetail": {}, "id": "aaaaaaaaaaaa"})
        );
        assert_eq!(out[1]["status"], "Already exists");
        assert_eq!(out.len(), 2);
        p.layers[0] = layer(a, 10, 4, LayerPhase::Downloading);
        let out = lines.step(&p);
        assert_eq!(
            out,
            vec![
                json!({"status": "Downloading", "progressDetail": {"current": 4, "total": 10}, "id": "aaaaaaaaaaaa"})
            ]
        );
        // nothing new, nothing said
        assert!(lines.step(&p).is_empty());
        p.layers[0] = layer(a, 10, 10, LayerPhase::Complete);
        let out: Vec<_> = lines.step(&p).iter().map(|l| l["status"].clone()).collect();
        assert_eq!(
            out,
            vec![json!("Download complete"), json!("Pull complete")]
        );
    }

    #[test]
    fn closing_lines() {
        let l = done_lines("busybox:latest", "sha256:ab", true);
        assert_eq!(l[0]["status"], "Digest: sha256:ab");
        assert_eq!(
            l[1]["status"],
            "Status: Downloaded newer image for busybox:latest"
        );
        let l = done_lines("busybox:latest", "sha256:ab", false);
        assert_eq!(
            l[1]["status"],
            "Status: Image is up to date for busybox:latest"
        );
        assert_eq!(error_line("no")["errorDetail"]["message"], "no");
    }
}

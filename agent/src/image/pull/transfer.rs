//! Blob requests that berth makes itself rather than through oci-client, so that a failed answer
//! keeps its status and `Retry-After`: ranged GETs of `/v2/<repo>/blobs/<digest>` with the pull's
//! credentials, and the retry loop every registry request of a pull runs in. Runs in berthd and
//! the CLI (async).

use super::*;
use crate::image::registry::{Answer, status_error};
use crate::image::retry::{self, RetryPolicy, Verdict};
use oci_client::secrets::RegistryAuth;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_RANGE, HeaderValue, RANGE, RETRY_AFTER};
use std::time::Duration;

/// Where a pull's blobs come from: one registry (or mirror), one repository, one set of
/// credentials.
pub(super) struct BlobSource<'a> {
    pub(super) client: &'a oci_client::Client,
    pub(super) http: reqwest::Client,
    pub(super) oref: &'a oci_client::Reference,
    pub(super) auth: &'a RegistryAuth,
    pub(super) image: &'a str,
    pub(super) host: &'a str,
    pub(super) scheme: &'static str,
    /// The `Authorization` header, renewed when the registry answers 401 (an expired token).
    pub(super) authorization: tokio::sync::Mutex<Option<HeaderValue>>,
    pub(super) idle: Duration,
}

/// A blob's body, from its first byte or from the offset asked for.
pub(super) enum Body {
    Full(reqwest::Response),
    Partial(reqwest::Response),
}

impl BlobSource<'_> {
    /// The header for what `client.auth` left: a bearer token, else basic credentials.
    pub(super) fn header(token: Option<String>, auth: &RegistryAuth) -> Option<HeaderValue> {
        let v = match (token, auth) {
            (Some(t), _) => format!("Bearer {t}"),
            (None, RegistryAuth::Basic(u, p)) => {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                format!("Basic {b}")
            }
            _ => return None,
        };
        let mut h = HeaderValue::from_str(&v).ok()?;
        h.set_sensitive(true);
        Some(h)
    }

    fn url(&self, digest: &str) -> String {
        let ns = self
            .oref
            .namespace()
            .map(|n| format!("?ns={n}"))
            .unwrap_or_default();
        format!(
            "{}://{}/v2/{}/blobs/{digest}{ns}",
            self.scheme,
            self.oref.resolve_registry(),
            self.oref.repository()
        )
    }

    pub(super) fn transport(&self, detail: String) -> Error {
        Error::Transport {
            image: self.image.to_string(),
            registry: self.host.to_string(),
            detail,
        }
    }

    /// GETs the blob from `offset` on (the registry may answer with all of it instead).
    pub(super) async fn get(&self, digest: &str, offset: u64) -> Result<Body> {
        let mut renewed = false;
        loop {
            let mut req = self.http.get(self.url(digest));
            if let Some(h) = self.authorization.lock().await.clone() {
                req = req.header(AUTHORIZATION, h);
            }
            if offset > 0 {
                req = req.header(RANGE, format!("bytes={offset}-"));
            }
            let res = match tokio::time::timeout(self.idle, req.send()).await {
                Err(_) => {
                    return Err(self.transport(format!(
                        "stalled: no answer for {}s",
                        self.idle.as_secs_f64()
                    )));
                }
                Ok(Err(e)) => return Err(self.transport(chain(&e))),
                Ok(Ok(r)) => r,
            };
            match res.status() {
                StatusCode::OK => return Ok(Body::Full(res)),
                StatusCode::PARTIAL_CONTENT => {
                    let from = format!("bytes {offset}-");
                    let ok = res
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with(&from));
                    if !ok {
                        return Err(self.transport(format!(
                            "blob {digest}: the registry answered a range other than {from}"
                        )));
                    }
                    return Ok(Body::Partial(res));
                }
                // a token that expired during a long pull: renewed once
                StatusCode::UNAUTHORIZED if !renewed => {
                    renewed = true;
                    let token = self
                        .client
                        .auth(self.oref, self.auth, oci_client::RegistryOperation::Pull)
                        .await
                        .map_err(|e| map_err(self.image, self.host, "authenticating", e))?;
                    *self.authorization.lock().await = Self::header(token, self.auth);
                }
                _ => return Err(self.status_error(digest, res).await),
            }
        }
    }

    /// The error for an unsuccessful answer, with its `Retry-After`.
    async fn status_error(&self, digest: &str, res: reqwest::Response) -> Error {
        let code = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, std::time::SystemTime::now()));
        let url = res.url().to_string();
        let body = tokio::time::timeout(self.idle, res.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text: String = String::from_utf8_lossy(&body)
            .trim()
            .chars()
            .take(200)
            .collect();
        status_error(
            Answer {
                code,
                url,
                message: text,
                retry_after,
            },
            self.image.to_string(),
            self.host.to_string(),
            format!("blob {digest}"),
        )
    }

    /// A small blob (a config) in memory, checked against its descriptor.
    pub(super) async fn fetch_small(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let digest = desc.digest().to_string();
        let res = match self.get(&digest, 0).await? {
            Body::Full(r) | Body::Partial(r) => r,
        };
        let mut buf = Vec::with_capacity(desc.size() as usize);
        let mut s = res.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(self.idle, s.next()).await {
                Err(_) => {
                    return Err(self.transport(format!(
                        "blob {digest}: stalled: no data for {}s",
                        self.idle.as_secs_f64()
                    )));
                }
                Ok(None) => break,
                Ok(Some(c)) => c.map_err(|e| self.transport(chain(&e)))?,
            };
            if (buf.len() + chunk.len()) as u64 > desc.size() {
                return Err(Error::SizeMismatch {
                    digest,
                    expected: desc.size(),
                    actual: (buf.len() + chunk.len()) as u64,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() as u64 != desc.size() {
            return Err(Error::SizeMismatch {
                digest,
                expected: desc.size(),
                actual: buf.len() as u64,
            });
        }
        let actual = manifest::sha256_digest(&buf);
        if actual != digest {
            return Err(Error::DigestMismatch { digest, actual });
        }
        Ok(buf)
    }
}

impl Store {
    /// Runs one registry request (`f`) until it succeeds or [`retry::decide`] gives up; while it
    /// waits, the pull's progress says why and when it tries again.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        opts: &PullOptions,
        policy: &RetryPolicy,
        what: &str,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut retries = 0;
        let mut shown: Option<String> = None;
        let clear = |shown: &Option<String>| {
            if let Some(m) = shown {
                opts.report(|p| {
                    if p.waiting.as_ref() == Some(m) {
                        p.waiting = None;
                    }
                });
            }
        };
        loop {
            match f().await {
                Ok(v) => {
                    clear(&shown);
                    return Ok(v);
                }
                Err(e) => match retry::decide(policy, retry::fault(&e), retries, retry::jitter()) {
                    Verdict::GiveUp => {
                        clear(&shown);
                        return Err(e);
                    }
                    Verdict::Retry { after } => {
                        retries += 1;
                        let m = retry::waiting_message(&e, retries, policy, after);
                        tracing::warn!(what, "{m}");
                        opts.report(|p| p.waiting = Some(m.clone()));
                        shown = Some(m);
                        tokio::time::sleep(after).await;
                    }
                },
            }
        }
    }
}

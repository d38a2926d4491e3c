//! API version negotiation as Docker does it: paths with or without a `/vX.Y` prefix, versions
//! outside what berth speaks refused with Docker's messages, and the headers every response
//! carries (`Api-Version`, which the CLI reads from `/_ping`). Runs in berthd.

use super::DockerError;
use axum::extract::Request;
use axum::http::{HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The newest API version berth answers (Docker Engine 28.x).
pub const API_VERSION: &str = "1.50";
/// The oldest one it accepts (Docker's own minimum).
pub const MIN_API_VERSION: &str = "1.24";

/// `major.minor`, compared numerically (`1.9` < `1.24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

/// Splits `/v1.45/containers/json` into the version and `/containers/json`; a path without a
/// version is answered at [`API_VERSION`], as Docker does.
pub fn split(path: &str) -> Result<(Option<ApiVersion>, &str), DockerError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let (v, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // `/version` and `/volumes` start with `/v` too: only a number is a version.
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok((None, path));
    }
    let requested = ApiVersion::parse(v).ok_or_else(|| DockerError::BadVersion {
        requested: v.to_owned(),
    })?;
    let min = ApiVersion::parse(MIN_API_VERSION).expect("a valid constant");
    let max = ApiVersion::parse(API_VERSION).expect("a valid constant");
    if requested < min {
        return Err(DockerError::VersionTooOld {
            requested: v.to_owned(),
        });
    }
    if requested > max {
        return Err(DockerError::VersionTooNew {
            requested: v.to_owned(),
        });
    }
    Ok((Some(requested), if tail.is_empty() { "/" } else { tail }))
}

/// The middleware in front of the router: strips the version, refuses unknown ones, and sets the
/// headers Docker sets on every answer.
pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let t0 = std::time::Instant::now();
    let mut resp = match split(&path) {
        Err(e) => e.into_response(),
        Ok((None, _)) => next.run(req).await,
        Ok((Some(_), rest)) => {
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            match format!("{rest}{query}").parse::<Uri>() {
                Ok(uri) => {
                    *req.uri_mut() = uri;
                    next.run(req).await
                }
                Err(_) => DockerError::BadRequest(format!("invalid path {path}")).into_response(),
            }
        }
    };
    // Changes are worth a line in the journal; reads only when debugging.
    let ms = t0.elapsed().as_millis();
    let status = resp.status().as_u16();
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        tracing::debug!(%method, %path, status, ms, "docker api");
    } else {
        tracing::info!(%method, %path, status, ms, "docker api");
    }
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_and_plain_paths() {
        assert_eq!(
            split("/v1.50/containers/json").unwrap(),
            (Some(ApiVersion(1, 50)), "/containers/json")
        );
        assert_eq!(
            split("/v1.24/_ping").unwrap(),
            (Some(ApiVersion(1, 24)), "/_ping")
        );
        assert_eq!(
            split("/containers/json").unwrap(),
            (None, "/containers/json")
        );
        // Not versions: endpoints that begin with `v`.
        assert_eq!(split("/version").unwrap(), (None, "/version"));
        assert_eq!(split("/volumes").unwrap(), (None, "/volumes"));
        assert_eq!(split("/v1.41/version").unwrap().1, "/version");
    }

    #[test]
    fn versions_outside_the_range_get_dockers_messages() {
        let e = split("/v1.51/info").unwrap_err().to_string();
        assert_eq!(
            e,
            "client version 1.51 is too new. Maximum supported API version is 1.50"
        );
        let e = split("/v1.12/info").unwrap_err().to_string();
        assert!(e.starts_with("client version 1.12 is too old."), "{e}");
        assert!(split("/v1.x/info").is_err());
        // 1.9 is older than 1.24, not newer (numeric, not string, order).
        assert!(matches!(
            split("/v1.9/info"),
            Err(DockerError::VersionTooOld { .. })
        ));
    }
}

//! Registry settings and access for the image store: insecure (plain HTTP) registries, docker.io
//! mirrors, extra CAs from `certs.d/<host>/ca.crt`, credentials from Docker's config.json and
//! containers' auth.json, and the mapping of registry failures to clear errors. Runs in berthd and
//! the CLI (async).

use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::Error;

/// Registry settings (a part of berthd's configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) reached over plain HTTP; all others need TLS.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Mirrors (`host[:port]`) tried in order before docker.io.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Directories holding `<host[:port]>/*.crt` extra CA certificates (Docker's certs.d layout).
    #[serde(default)]
    pub certs_dirs: Vec<PathBuf>,
    /// Credential files in Docker `config.json` / containers `auth.json` format, first match wins.
    #[serde(default)]
    pub auth_files: Vec<PathBuf>,
    /// Layers fetched at once per image (default 4).
    #[serde(default)]
    pub max_concurrent_downloads: Option<usize>,
}

impl RegistryConfig {
    /// The usual places of Docker's, Podman's and berth's own settings.
    pub fn with_default_paths() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let mut auth_files = Vec::new();
        if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
            auth_files.push(PathBuf::from(p));
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
            auth_files.push(PathBuf::from(d).join("containers/auth.json"));
        }
        auth_files.push("/run/containers/0/auth.json".into());
        if let Some(h) = &home {
            auth_files.push(h.join(".config/containers/auth.json"));
        }
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            auth_files.push(PathBuf::from(d).join("config.json"));
        }
        if let Some(h) = &home {
            auth_files.push(h.join(".docker/config.json"));
        }
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: Vec::new(),
            certs_dirs: vec![
                "/etc/berth/certs.d".into(),
                "/etc/docker/certs.d".into(),
                "/etc/containers/certs.d".into(),
            ],
            auth_files,
            max_concurrent_downloads: None,
        }
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.max_concurrent_downloads.unwrap_or(4).clamp(1, 64)
    }

    /// Builds an oci-client for one registry host with that host's protocol and CAs.
    pub(crate) fn client_for(&self, host: &str) -> Result<oci_client::Client, Error> {
        let mut extra = Vec::new();
        for dir in &self.certs_dirs {
            let d = dir.join(host);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "crt") {
                    let data = std::fs::read(&p).map_err(|source| Error::Io {
                        what: "reading CA certificate",
                        path: p.clone(),
                        source,
                    })?;
                    extra.push(Certificate {
                        encoding: CertificateEncoding::Pem,
                        data,
                    });
                }
            }
        }
        let protocol = if self.insecure.iter().any(|h| h == host) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let cfg = ClientConfig {
            protocol,
            extra_root_certificates: extra,
            platform_resolver: None,
            max_concurrent_download: self.concurrency(),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        Ok(oci_client::Client::new(cfg))
    }

    /// Credentials for `host` (and `repository`, for per-repository auth.json keys).
    pub fn credentials(&self, host: &str, repository: &str) -> RegistryAuth {
        for f in &self.auth_files {
            let Ok(data) = std::fs::read(f) else { continue };
            let Ok(file) = serde_json::from_slice::<AuthFile>(&data) else {
                tracing::warn!(path = %f.display(), "ignoring unreadable credentials file");
                continue;
            };
            if let Some(a) = file.lookup(host, repository) {
                return a;
            }
        }
        RegistryAuth::Anonymous
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Normalises an auth-file key: scheme and Docker Hub's legacy `/v1/` URL removed.
fn auth_key(k: &str) -> String {
    let k = k
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        k => k.to_string(),
    }
}

impl AuthFile {
    /// The most specific key wins: `host/ns/repo`, then `host/ns`, then `host`.
    fn lookup(&self, host: &str, repository: &str) -> Option<RegistryAuth> {
        let mut best: Option<(usize, &AuthEntry)> = None;
        let full = format!("{host}/{repository}");
        for (k, v) in &self.auths {
            let k = auth_key(k);
            let matches =
                k == host || (full.starts_with(&k) && full.as_bytes().get(k.len()) == Some(&b'/'));
            if matches && best.is_none_or(|(l, _)| k.len() > l) {
                best = Some((k.len(), v));
            }
        }
        let e = best?.1;
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Some(RegistryAuth::Basic(u.clone(), p.clone()));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(e.auth.as_deref()?.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some(RegistryAuth::Basic(u.to_string(), p.to_string()))
    }
}

/// The error and its causes on one line (reqwest/rustls put the useful part deep in the chain).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Maps an oci-client failure to a clear error naming the image and registry.
pub(crate) fn map_err(image: &str, registry: &str, what: &str, e: OciDistributionError) -> Error {
    let image = image.to_string();
    let registry = registry.to_string();
    let what = what.to_string();
    match e {
        OciDistributionError::AuthenticationFailure(d) => Error::Unauthorized {
            image,
            registry,
            detail: d,
        },
        OciDistributionError::UnauthorizedError { url } => Error::Unauthorized {
            image,
            registry,
            detail: url,
        },
        OciDistributionError::ImageManifestNotFoundError(d) => Error::NotFound {
            image,
            registry,
            what: format!("{what} ({d})"),
        },
        OciDistributionError::ServerError { code, url, message } => match code {
            401 => Error::Unauthorized {
                image,
                registry,
                detail: url,
            },
            403 => Error::Denied {
                image,
                registry,
                detail: message,
            },
            404 => Error::NotFound {
                image,
                registry,
                what,
            },
            429 => Error::TooManyRequests { image, registry },
            code => Error::Server {
                image,
                registry,
                code,
                message: format!("{url}: {}", message.trim()),
            },
        },
        OciDistributionError::RegistryError { envelope, url } => {
            let msg = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            match envelope.errors.first().map(|e| &e.code) {
                Some(OciErrorCode::Unauthorized) => Error::Unauthorized {
                    image,
                    registry,
                    detail: msg,
                },
                Some(OciErrorCode::Denied) => Error::Denied {
                    image,
                    registry,
                    detail: msg,
                },
                Some(OciErrorCode::Toomanyrequests) => Error::TooManyRequests { image, registry },
                Some(
                    OciErrorCode::BlobUnknown
                    | OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::ManifestBlobUnknown,
                ) => Error::NotFound {
                    image,
                    registry,
                    what: format!("{what} ({msg})"),
                },
                _ => Error::Registry {
                    image,
                    registry,
                    detail: format!("{url}: {msg}"),
                },
            }
        }
        OciDistributionError::RequestError(r) => Error::Transport {
            image,
            registry,
            detail: chain(&r),
        },
        other => Error::Registry {
            image,
            registry,
            detail: format!("{what}: {}", chain(&other)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_files_docker_and_containers_formats() {
        let f: AuthFile = serde_json::from_str(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},
                "ghcr.io":{"auth":"Z2g6Z2hwdw=="},
                "ghcr.io/org":{"username":"org","password":"orgpw"},
                "localhost:5000":{"auth":"bm9jb2xvbg=="}
            }}"#,
        )
        .unwrap();
        let basic = |u: &str, p: &str| Some(RegistryAuth::Basic(u.into(), p.into()));
        let eq =
            |a: Option<RegistryAuth>, b: Option<RegistryAuth>| format!("{a:?}") == format!("{b:?}");
        assert!(eq(
            f.lookup("docker.io", "library/x"),
            basic("hub", "hubpw")
        ));
        assert!(eq(f.lookup("ghcr.io", "other/x"), basic("gh", "ghpw")));
        assert!(eq(f.lookup("ghcr.io", "org/x"), basic("org", "orgpw")));
        assert!(eq(
            f.lookup("ghcr.io", "organisation/x"),
            basic("gh", "ghpw")
        ));
        // "nocolon" has no user:password separator
        assert!(f.lookup("localhost:5000", "x").is_none());
        assert!(f.lookup("quay.io", "x").is_none());
    }
}

//! Registry settings and access for the image store: insecure (plain HTTP) registries, docker.io
//! mirrors, extra CAs from `certs.d/<host>/ca.crt`, credentials from Docker's config.json and
//! containers' auth.json (inline, or through `credHelpers` / `credsStore` credential helpers;
//! identity tokens traded at the registry's token server), and the mapping of registry failures
//! to clear errors. Runs in berthd and the CLI (async).

use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

use super::Error;

mod login;
use super::credhelper::{self, HelperError};
use super::retry::RetryPolicy;
pub use login::{LoginError, login_host};

const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));

/// Credentials found for a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Usable by oci-client as they are (basic auth).
    Auth(RegistryAuth),
    /// An OAuth2 refresh token (Docker's "identity token"), to trade at the registry's token
    /// server for a pull token first.
    IdentityToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Auth(a) => a.fmt(f),
            Secret::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// `(realm, service)` of the Bearer challenge in a `WWW-Authenticate` header.
fn bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    http_auth::parser::ChallengeParser::new(header)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|c| {
            let get = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some((get("realm")?, get("service")))
        })
}

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
    /// Directories searched for `docker-credential-<name>` helpers before $PATH.
    #[serde(default)]
    pub credential_helper_dirs: Vec<PathBuf>,
    /// Layers fetched at once per image (default 4).
    #[serde(default)]
    pub max_concurrent_downloads: Option<usize>,
    /// Timeouts and retries of registry requests (berthd.yaml `registries.retry`).
    #[serde(skip)]
    pub retry: RetryPolicy,
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
            credential_helper_dirs: Vec::new(),
            max_concurrent_downloads: None,
            retry: RetryPolicy::default(),
        }
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.max_concurrent_downloads.unwrap_or(4).clamp(1, 64)
    }

    /// Builds an oci-client for one registry host with that host's protocol and CAs.
    pub(crate) fn client_for(&self, host: &str) -> Result<oci_client::Client, Error> {
        let cfg = ClientConfig {
            protocol: if self.is_insecure(host) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: self.extra_cas(host)?,
            platform_resolver: None,
            max_concurrent_download: self.concurrency(),
            connect_timeout: Some(self.retry.connect_timeout),
            read_timeout: Some(self.retry.idle_timeout),
            user_agent: USER_AGENT,
            ..Default::default()
        };
        Ok(oci_client::Client::new(cfg))
    }

    pub(crate) fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// The extra CA certificates for `host` (`<certs dir>/<host>/*.crt`).
    fn extra_cas(&self, host: &str) -> Result<Vec<Certificate>, Error> {
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
        Ok(extra)
    }

    /// A plain HTTP client for `host` with its CAs and connect timeout, for the requests berth
    /// makes itself (identity token trades, blob downloads); each use sets its own idle timeout.
    pub(crate) fn http_for(&self, image: &str, host: &str) -> Result<reqwest::Client, Error> {
        let transport = |e: reqwest::Error| Error::Transport {
            image: image.to_string(),
            registry: host.to_string(),
            detail: chain(&e),
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.retry.connect_timeout)
            .user_agent(USER_AGENT);
        for c in self.extra_cas(host)? {
            let c = reqwest::Certificate::from_pem(&c.data).map_err(transport)?;
            b = b.tls_certs_merge([c]);
        }
        b.build().map_err(transport)
    }

    /// Trades an identity token (an OAuth2 refresh token, what `docker login` keeps for
    /// registries that hand them out) for a pull token of `oref`'s repository, as Docker does: the
    /// registry's Bearer challenge names the token server, which gets a `refresh_token` grant.
    /// oci-client then uses the result as a ready bearer token.
    pub(crate) async fn exchange_identity_token(
        &self,
        image: &str,
        host: &str,
        oref: &oci_client::Reference,
        token: &str,
        from: &Credentials,
    ) -> Result<RegistryAuth, Error> {
        let transport = |e: reqwest::Error| Error::Transport {
            image: image.to_string(),
            registry: host.to_string(),
            detail: chain(&e),
        };
        let http = self.http_for(image, host)?;
        let scheme = if self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        // `host` names the settings; the endpoint is where oci-client goes (docker.io's is
        // index.docker.io, a mirror's its own)
        let res = http
            .get(format!("{scheme}://{}/v2/", oref.resolve_registry()))
            .timeout(self.retry.idle_timeout)
            .send()
            .await
            .map_err(transport)?;
        let Some(challenge) = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .filter(|_| res.status() == reqwest::StatusCode::UNAUTHORIZED)
        else {
            // The registry wants no credentials at all.
            return Ok(RegistryAuth::Anonymous);
        };
        let (realm, service) = bearer_challenge(challenge.to_str().unwrap_or("")).ok_or_else(|| {
            Error::Registry {
                image: image.to_string(),
                registry: host.to_string(),
                detail: format!(
                    "the registry does not use token authentication, so the identity token ({from}) \
                     cannot be used: store a username and password for it instead"
                ),
            }
        })?;
        let scope = format!("repository:{}:pull", oref.repository());
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "berth"),
            ("scope", scope.as_str()),
        ];
        if let Some(s) = &service {
            form.push(("service", s.as_str()));
        }
        let res = http
            .post(&realm)
            .form(&form)
            .timeout(self.retry.idle_timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = res.status();
        let body = res.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(Error::Unauthorized {
                image: image.to_string(),
                registry: host.to_string(),
                detail: format!(
                    "token server {realm} refused the identity token ({status}: {})",
                    text.trim().chars().take(200).collect::<String>()
                ),
            });
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: Option<String>,
            token: Option<String>,
        }
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Registry {
            image: image.to_string(),
            registry: host.to_string(),
            detail: format!("invalid answer from token server {realm}: {e}"),
        })?;
        match t.access_token.or(t.token).filter(|t| !t.is_empty()) {
            Some(t) => Ok(RegistryAuth::Bearer(t)),
            None => Err(Error::Registry {
                image: image.to_string(),
                registry: host.to_string(),
                detail: format!("token server {realm} answered without a token"),
            }),
        }
    }

    /// Credentials for `host` (and `repository`, for per-repository auth.json keys), and where
    /// they came from (for error messages). The first file with an answer wins; a credential
    /// helper that has nothing for the registry sends the search on to the next file.
    pub async fn credentials(
        &self,
        host: &str,
        repository: &str,
    ) -> Result<(Secret, Credentials), HelperError> {
        for f in &self.auth_files {
            let Ok(data) = std::fs::read(f) else { continue };
            let Ok(file) = serde_json::from_slice::<AuthFile>(&data) else {
                tracing::warn!(path = %f.display(), "ignoring unreadable credentials file");
                continue;
            };
            match file.source(host, repository) {
                None => {}
                Some(Source::Inline(a)) => return Ok((a, Credentials::File(f.clone()))),
                Some(Source::Helper(name)) => {
                    let req = credhelper::Request {
                        name,
                        config: f,
                        registry: host,
                        server: &helper_server(host),
                        dirs: &self.credential_helper_dirs,
                        timeout: credhelper::TIMEOUT,
                    };
                    match credhelper::get(&req).await? {
                        Some(a) => {
                            let program = format!("{}{name}", credhelper::PREFIX);
                            return Ok((a, Credentials::Helper(program, f.clone())));
                        }
                        None => {
                            tracing::debug!(registry = host, helper = name, path = %f.display(),
                                "credential helper has no credentials for the registry");
                        }
                    }
                }
            }
        }
        Ok((Secret::Auth(RegistryAuth::Anonymous), Credentials::None))
    }
}

/// Where the credentials of a pull came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// Inline in this config.json / auth.json.
    File(PathBuf),
    /// From this helper program, named in this file.
    Helper(String, PathBuf),
    /// Given with the request for this pull alone (the Docker API's `X-Registry-Auth`).
    Request,
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => write!(
                f,
                "no credentials were found for it (add them with `docker login` or a credential helper)"
            ),
            Credentials::File(p) => write!(f, "credentials from {}", p.display()),
            Credentials::Helper(h, p) => {
                write!(f, "credentials from helper {h} named in {}", p.display())
            }
            Credentials::Request => f.write_str("credentials sent with the request"),
        }
    }
}

/// The server address Docker stores a registry's credentials under (and asks helpers about).
fn helper_server(host: &str) -> String {
    if host == super::reference::DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    /// Default helper for every registry (Docker's `credsStore`).
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
    /// Per-registry helpers (Docker's `credHelpers`).
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
}

/// Where one file gets a registry's credentials from.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    Inline(Secret),
    /// A helper's name, without the `docker-credential-` prefix.
    Helper(&'a str),
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// What `docker login` keeps when the registry gave it a refresh token.
    identitytoken: Option<String>,
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
    /// Docker's order: the registry's `credHelpers` entry, else `credsStore`, else `auths` (with
    /// a credentials store Docker keeps only e-mail addresses in `auths`, never secrets).
    fn source(&self, host: &str, repository: &str) -> Option<Source<'_>> {
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| auth_key(k) == host)
            .map(|(_, v)| v)
            .or(self.creds_store.as_ref())
            .filter(|h| !h.is_empty());
        match helper {
            Some(h) => Some(Source::Helper(h)),
            None => self.lookup(host, repository).map(Source::Inline),
        }
    }

    /// The most specific key wins: `host/ns/repo`, then `host/ns`, then `host`.
    fn lookup(&self, host: &str, repository: &str) -> Option<Secret> {
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
        // the daemon prefers the identity token when an entry has both
        if let Some(t) = e.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Some(Secret::IdentityToken(t.clone()));
        }
        if let (Some(u), Some(p)) = (&e.username, &e.password) {
            return Some(Secret::Auth(RegistryAuth::Basic(u.clone(), p.clone())));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(e.auth.as_deref()?.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some(Secret::Auth(RegistryAuth::Basic(
            u.to_string(),
            p.to_string(),
        )))
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

/// A registry's unsuccessful HTTP answer.
pub(crate) struct Answer {
    pub code: u16,
    pub url: String,
    /// Its body, trimmed.
    pub message: String,
    pub retry_after: Option<std::time::Duration>,
}

/// The error for an unsuccessful answer about `what` of `image`: the one place where status codes
/// become berth's errors (oci-client's answers and berth's own blob requests alike).
pub(crate) fn status_error(a: Answer, image: String, registry: String, what: String) -> Error {
    match a.code {
        401 => Error::Unauthorized {
            image,
            registry,
            detail: a.url,
        },
        403 => Error::Denied {
            image,
            registry,
            detail: a.message,
        },
        404 => Error::NotFound {
            image,
            registry,
            what,
        },
        429 => Error::TooManyRequests {
            image,
            registry,
            retry_after: a.retry_after,
        },
        code => Error::Server {
            image,
            registry,
            code,
            message: format!("{}: {}", a.url, a.message),
            retry_after: a.retry_after,
        },
    }
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
        OciDistributionError::ServerError { code, url, message } => status_error(
            Answer {
                code,
                url,
                message: message.trim().to_owned(),
                retry_after: None,
            },
            image,
            registry,
            what,
        ),
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
                Some(OciErrorCode::Toomanyrequests) => Error::TooManyRequests {
                    image,
                    registry,
                    retry_after: None,
                },
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
mod tests;

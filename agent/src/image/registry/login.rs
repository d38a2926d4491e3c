//! Checks a username and password against a registry, as `docker login` asks the daemon to: a
//! `/v2/` request with them (basic auth), or, when the registry answers with a Bearer challenge,
//! a token request to its token server with them. Nothing is stored. Runs in berthd.

use super::{RegistryConfig, USER_AGENT, bearer_challenge, chain};
use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("login attempt to {url} failed with status: {status}")]
    Refused { url: String, status: String },
    #[error("cannot reach registry {registry}: {detail}")]
    Transport { registry: String, detail: String },
    #[error("registry {registry}: {detail}")]
    Setup { registry: String, detail: String },
}

/// The registry host `docker login` names: `https://index.docker.io/v1/` and `docker.io` are
/// Docker Hub, whose API is at `registry-1.docker.io`.
pub fn login_host(server: &str) -> String {
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "docker.io" | "index.docker.io" => "registry-1.docker.io".into(),
        h => h.to_owned(),
    }
}

impl RegistryConfig {
    /// Whether `username`/`password` are good at `server`'s registry.
    pub async fn check_login(
        &self,
        server: &str,
        username: &str,
        password: &str,
    ) -> Result<(), LoginError> {
        let host = login_host(server);
        let transport = |e: reqwest::Error| LoginError::Transport {
            registry: host.clone(),
            detail: chain(&e),
        };
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.retry.connect_timeout)
            .read_timeout(self.retry.idle_timeout)
            .user_agent(USER_AGENT);
        let cas = self.extra_cas(&host).map_err(|e| LoginError::Setup {
            registry: host.clone(),
            detail: e.to_string(),
        })?;
        for c in cas {
            b = b.tls_certs_merge([reqwest::Certificate::from_pem(&c.data).map_err(transport)?]);
        }
        let http = b.build().map_err(transport)?;
        let scheme = if self.is_insecure(&host) {
            "http"
        } else {
            "https"
        };
        let url = format!("{scheme}://{host}/v2/");
        let res = http
            .get(&url)
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(transport)?;
        if res.status().is_success() {
            return Ok(());
        }
        let refused = |status: StatusCode| LoginError::Refused {
            url: url.clone(),
            status: status.to_string(),
        };
        let challenge = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|h| h.to_str().ok())
            .and_then(bearer_challenge);
        let (status, Some((realm, service))) = (res.status(), challenge) else {
            return Err(refused(res.status()));
        };
        if status != StatusCode::UNAUTHORIZED {
            return Err(refused(status));
        }
        let mut q = vec![("account", username)];
        if let Some(s) = &service {
            q.push(("service", s.as_str()));
        }
        let res = http
            .get(&realm)
            .query(&q)
            .basic_auth(username, Some(password))
            .send()
            .await
            .map_err(transport)?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(refused(res.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_and_other_hosts() {
        assert_eq!(
            login_host("https://index.docker.io/v1/"),
            "registry-1.docker.io"
        );
        assert_eq!(login_host(""), "registry-1.docker.io");
        assert_eq!(login_host("127.0.0.1:5001"), "127.0.0.1:5001");
        assert_eq!(login_host("https://ghcr.io"), "ghcr.io");
    }
}

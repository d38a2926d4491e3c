//! Image references as Docker users write them (`nginx`, `nginx:1.27`, `ghcr.io/o/r@sha256:…`,
//! `localhost:5000/x`), normalised the way Docker does (`docker.io/library/nginx:latest`). Pure
//! logic, used by berthd and the `berth` CLI.

use std::fmt;

/// Docker Hub's canonical registry name (what references are normalised to).
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host (and port), `docker.io` for Docker Hub.
    pub registry: String,
    /// Repository path, `library/nginx` for official Docker Hub images.
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// Manifest digest (`sha256:…`) when the reference pins one.
    pub digest: Option<String>,
}

fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*  (the distribution grammar, checked loosely for separators)
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|&x| {
            x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
        })
        && !c.contains("..")
        && !c.contains("___")
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let port_ok = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => {
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        }
        _ => true,
    };
    port_ok
        && !h.is_empty()
        && h.bytes()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'-' | b':' | b'[' | b']'))
}

impl ImageRef {
    /// Parses and normalises a reference as `docker pull` would.
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let bad = |why| RefError::Invalid(input.to_string(), why);
        if input.is_empty() || input.len() > 4096 {
            return Err(bad("empty or too long"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if !is_digest(d) {
                    return Err(bad(
                        "digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(bad("invalid tag"));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(bad("invalid registry host"));
                }
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty() || !repository.split('/').all(valid_component) {
            return Err(bad(
                "repository must be lowercase [a-z0-9._-] path components",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The oci-client reference for this image (tag or digest, digest wins for fetching).
    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (t, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(n("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            n("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(n("docker.io/busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(n("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(n("localhost/x/y:t"), "localhost/x/y:t");
        assert_eq!(
            n("127.0.0.1:15000/a/b:v1.2-rc"),
            "127.0.0.1:15000/a/b:v1.2-rc"
        );
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(n(&format!("ghcr.io/o/r@{d}")), format!("ghcr.io/o/r@{d}"));
        assert_eq!(
            n(&format!("ghcr.io/o/r:t@{d}")),
            format!("ghcr.io/o/r:t@{d}")
        );
        let r = ImageRef::parse(&format!("ghcr.io/o/r@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.name(), "ghcr.io/o/r");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx@sha256:abc",
            "nginx:bad/tag",
            "a//b",
            "-a",
            "docker.io/",
            "nginx@md5:0123",
            "a:b:c",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn oci_reference_keeps_registry_and_digest() {
        let d = format!("sha256:{}", "01".repeat(32));
        let r = ImageRef::parse(&format!("localhost:5000/x@{d}"))
            .unwrap()
            .to_oci();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "x");
        assert_eq!(r.digest(), Some(d.as_str()));
        let h = ImageRef::parse("busybox").unwrap().to_oci();
        assert_eq!(h.resolve_registry(), "index.docker.io");
    }
}

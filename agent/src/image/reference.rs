//! Image references as Docker users write them (`nginx`, `nginx:1.27`, `ghcr.io/o/r@sha256:…`,
//! `localhost:5000/x`), normalised the way Docker does (`docker.io/library/nginx:latest`). The one
//! grammar berth judges references by: oci-client's `Reference` (the distribution grammar and
//! Docker's normalisation), narrowed to what berth's store holds (sha256 digests). Pure logic, used
//! by `berth check`, berthd and the `berth` CLI.

use std::fmt;

/// Docker Hub's canonical registry name (what references are normalised to).
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef(oci_client::Reference);

impl ImageRef {
    /// Parses and normalises a reference as `docker pull` would.
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let bad = |why: String| RefError::Invalid(input.to_string(), why);
        let r: oci_client::Reference = input.parse().map_err(|e: oci_client::ParseError| {
            bad(match e {
                oci_client::ParseError::ReferenceInvalidFormat
                    if input.chars().any(|c| c.is_ascii_uppercase()) =>
                {
                    "invalid reference format (repository names are lowercase)".into()
                }
                e => e.to_string(),
            })
        })?;
        // A first component without `.` or `:` is a Docker Hub path, and paths are lowercase
        // (oci-client takes `UPPER/x` as a registry named UPPER, then shows it as Docker Hub's).
        if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(
                "invalid reference format (repository names are lowercase)".into(),
            ));
        }
        // The store names blobs by sha256 (lowercase hex, as digests are written).
        if let Some(d) = r.digest()
            && crate::image::manifest::digest_hex(d).is_none()
        {
            return Err(bad(
                "digest must be sha256: followed by 64 lowercase hex digits".into(),
            ));
        }
        // Docker Hub's other names are Docker Hub.
        let r = match r.registry() {
            "registry-1.docker.io" => {
                let repo = match r.repository().split_once('/') {
                    Some(_) => r.repository().to_owned(),
                    None => format!("library/{}", r.repository()),
                };
                match (r.tag(), r.digest()) {
                    (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                        DOCKER_HUB.into(),
                        repo,
                        t.into(),
                        d.into(),
                    ),
                    (None, Some(d)) => {
                        oci_client::Reference::with_digest(DOCKER_HUB.into(), repo, d.into())
                    }
                    (t, None) => oci_client::Reference::with_tag(
                        DOCKER_HUB.into(),
                        repo,
                        t.unwrap_or("latest").into(),
                    ),
                }
            }
            _ => r,
        };
        Ok(ImageRef(r))
    }

    /// Registry host (and port), `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        self.0.registry()
    }

    /// Repository path, `library/nginx` for official Docker Hub images.
    pub fn repository(&self) -> &str {
        self.0.repository()
    }

    /// Tag; `latest` when neither a tag nor a digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }

    /// Manifest digest (`sha256:…`) when the reference pins one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The oci-client reference for this image.
    pub fn to_oci(&self) -> oci_client::Reference {
        self.0.clone()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry(), self.repository())?;
        if let Some(t) = self.tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = self.digest() {
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

    /// Found by the `image_ref` fuzz target: accepted, then shown as a reference that does not
    /// parse.
    #[test]
    fn uppercase_first_component_is_refused() {
        for r in ["UPPER/case", "Foo/bar:1", "docker.io/Library/busybox"] {
            let e = ImageRef::parse(r).unwrap_err().to_string();
            assert!(e.contains("lowercase"), "{r}: {e}");
        }
        assert!(
            ImageRef::parse("Example.COM/a/b").is_ok(),
            "a registry host may be any case"
        );
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
        assert_eq!(
            n("registry-1.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
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
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(d.as_str()));
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
            "registry.example.com/Upper/x",
            "x@sha512:0123",
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

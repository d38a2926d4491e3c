//! Images as Docker lists them (`GET /images/json`), from berth's store. Runs in berthd.

use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

/// A row of berthd's image list.
#[derive(Debug, Deserialize)]
struct Stored {
    name: String,
    digest: String,
    size: u64,
}

/// A normalised name as Docker shows it: Docker Hub's host and `library/` left out.
fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// Docker's summary of one stored image: its manifest digest stands in for the image ID.
fn summary(s: &Stored) -> Value {
    let tags: Vec<&str> = if s.name.is_empty() {
        vec![]
    } else {
        vec![familiar(&s.name)]
    };
    // The one reference grammar: `host:5000/x` has a port, not a tag.
    let repo = crate::image::reference::ImageRef::parse(&s.name)
        .map(|r| familiar(&r.name()).to_owned())
        .unwrap_or_else(|_| s.name.clone());
    json!({
        "Id": s.digest,
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": if s.name.is_empty() { vec![] } else { vec![format!("{repo}@{}", s.digest)] },
        "Created": 0,
        "Size": s.size,
        "SharedSize": -1,
        "VirtualSize": s.size,
        "Labels": {},
        "Containers": -1,
    })
}

/// `GET /images/json`.
pub async fn list(State(b): State<Shared>) -> Result<Json<Vec<Value>>, DockerError> {
    let rows: Vec<Stored> = serde_json::from_value(call(&b, Request::Images).await?)
        .map_err(|e| DockerError::Internal(format!("image list: {e}")))?;
    Ok(Json(rows.iter().map(summary).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_digests() {
        let s = Stored {
            name: "registry.local:5000/busybox:1.36".into(),
            digest: "sha256:ab".into(),
            size: 10,
        };
        let v = summary(&s);
        assert_eq!(v["RepoTags"][0], "registry.local:5000/busybox:1.36");
        assert_eq!(v["RepoDigests"][0], "registry.local:5000/busybox@sha256:ab");
        let hub = summary(&Stored {
            name: "docker.io/library/busybox:1.36".into(),
            digest: "sha256:ef".into(),
            size: 1,
        });
        assert_eq!(hub["RepoTags"][0], "busybox:1.36");
        assert_eq!(hub["RepoDigests"][0], "busybox@sha256:ef");
        let v = summary(&Stored {
            name: String::new(),
            digest: "sha256:cd".into(),
            size: 1,
        });
        assert_eq!(v["RepoTags"], json!([]));
    }
}

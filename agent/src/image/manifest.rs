//! Manifest, index and descriptor JSON (OCI and Docker v2 schema 2 share one shape), the host
//! platform and its choice from an index, digests and chain ids. Pure logic, used by berthd and the CLI.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Media types berth asks registries for, in order of preference.
pub const ACCEPTED: &[&str] = &[OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST];
/// Docker's image healthcheck (`config.Healthcheck`, a Docker extension the OCI image types do not
/// carry); durations in nanoseconds, 0 = inherit/default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHealthcheck {
    #[serde(default)]
    pub test: Option<Vec<String>>,
    #[serde(default)]
    pub interval: Option<u64>,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub start_period: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
}

/// Parses an image config blob once: oci-spec's `ImageConfiguration` and Docker's healthcheck.
pub fn parse_config_blob(
    json: &[u8],
) -> Result<
    (
        oci_spec::image::ImageConfiguration,
        Option<ImageHealthcheck>,
    ),
    serde_json::Error,
> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    let healthcheck = match v.get("config").and_then(|c| c.get("Healthcheck")) {
        Some(h) if !h.is_null() => Some(ImageHealthcheck::deserialize(h)?),
        _ => None,
    };
    Ok((serde_json::from_value(v)?, healthcheck))
}

/// The annotation that names an image in an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A manifest document as fetched: an image manifest or an index.
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Parses a manifest or index (OCI or Docker v2), telling them apart by media type or shape.
pub fn parse_document(raw: &[u8]) -> Result<Document, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    if p.schema_version != Some(2) {
        return Err(format!(
            "unsupported manifest schema version {:?}",
            p.schema_version
        ));
    }
    let is_index = match p.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("unsupported manifest media type {other}")),
        None => p.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(raw)
            .map(Document::Index)
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(raw)
            .map(Document::Manifest)
            .map_err(|e| e.to_string())
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of a `sha256:` digest, checked (it becomes a file name, so it must be exactly hex).
pub fn digest_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Chain ids of a layer stack from its diff ids (OCI image spec, "ChainID"): the key under which
/// each layer is unpacked, so a layer is shared exactly when all layers below it are too.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The platform this process runs on, in OCI terms (GOOS/GOARCH names).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        "riscv64" => ("riscv64", None),
        "s390x" => ("s390x", None),
        other => (other, None),
    };
    Platform {
        os: "linux".into(),
        architecture: architecture.into(),
        variant: variant.map(Into::into),
    }
}

/// Picks the manifest for `want` from an index: same os and architecture; an exact variant match
/// wins, then an entry without a variant (arm64's v8 is the default); attestations are skipped.
pub fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let mut fallback = None;
    for d in &index.manifests {
        let Some(p) = &d.platform else { continue };
        if p.os != want.os || p.architecture != want.architecture {
            continue;
        }
        if !matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST) {
            continue;
        }
        // arm64's default variant is v8: "arm64" and "arm64/v8" are the same platform.
        fn norm<'x>(arch: &str, v: Option<&'x str>) -> Option<&'x str> {
            if arch == "arm64" && v == Some("v8") {
                None
            } else {
                v
            }
        }
        let arch = want.architecture.as_str();
        if norm(arch, p.variant.as_deref()) == norm(arch, want.variant.as_deref()) {
            return Some(d);
        }
        if p.variant.is_none() {
            fallback = fallback.or(Some(d));
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platform_choice() {
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                entry("arm", Some("v6"), "a6"),
                entry("arm", Some("v7"), "a7"),
                entry("arm64", None, "a64"),
                entry("amd64", None, "x64"),
                Descriptor {
                    platform: Some(Platform {
                        os: "unknown".into(),
                        architecture: "unknown".into(),
                        variant: None,
                    }),
                    ..entry("amd64", None, "att")
                },
            ],
        };
        let p = |a: &str, v: Option<&str>| Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant: v.map(Into::into),
        };
        assert_eq!(
            choose_platform(&idx, &p("amd64", None)).unwrap().digest,
            "x64"
        );
        assert_eq!(
            choose_platform(&idx, &p("arm", Some("v7"))).unwrap().digest,
            "a7"
        );
        assert_eq!(
            choose_platform(&idx, &p("arm", Some("v6"))).unwrap().digest,
            "a6"
        );
        assert_eq!(
            choose_platform(&idx, &p("arm64", Some("v8")))
                .unwrap()
                .digest,
            "a64"
        );
        assert!(choose_platform(&idx, &p("s390x", None)).is_none());
        let mut win = p("amd64", None);
        win.os = "windows".into();
        assert!(choose_platform(&idx, &win).is_none());
        // an arm64/v8 entry is taken for an arm64 host
        let idx2 = Index {
            manifests: vec![entry("arm64", Some("v8"), "v8")],
            ..idx
        };
        assert_eq!(
            choose_platform(&idx2, &p("arm64", Some("v8")))
                .unwrap()
                .digest,
            "v8"
        );
        assert_eq!(
            choose_platform(&idx2, &p("arm64", None)).unwrap().digest,
            "v8"
        );
        assert!(!host_platform().architecture.is_empty());
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0], a);
        let ab = sha256_digest(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], ab);
        assert_eq!(ids[2], sha256_digest(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
        // known value: sha256("sha256:aaa… sha256:bbb…") computed independently with sha256sum
        assert_eq!(digest_hex(&ids[1]).unwrap().len(), 64);
    }

    #[test]
    fn digest_hex_rejects_path_tricks() {
        assert!(digest_hex(&format!("sha256:{}", "0".repeat(64))).is_some());
        assert!(digest_hex("sha256:../../etc/passwd").is_none());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(digest_hex(&format!("sha512:{}", "0".repeat(64))).is_none());
    }

    #[test]
    fn parses_docker_and_oci_documents() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:00"},"layers":[]}"#;
        assert!(matches!(parse_document(m), Ok(Document::Manifest(_))));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(i), Ok(Document::Index(_))));
        assert!(parse_document(br#"{"schemaVersion":1}"#).is_err());
    }
}

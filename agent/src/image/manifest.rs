//! Manifest and index documents (oci-spec's image types; OCI and Docker v2 schema 2 share one
//! shape), the image config blob, the host platform and its choice from an index, digests and chain
//! ids. Pure logic, used by berthd and the CLI.

pub use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, Platform};

use oci_spec::image::{Arch, Os, PlatformBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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

/// A manifest document as fetched: an image manifest or an index (oci-spec's types, which read
/// Docker's v2 schema 2 manifests and lists too: they share the OCI shape).
// One document lives at a time, briefly, while a pull or an import reads it: not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Document {
    Manifest(ImageManifest),
    Index(ImageIndex),
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
    platform("linux", architecture, variant)
}

/// A platform from its names.
pub fn platform(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
    let mut p = PlatformBuilder::default()
        .os(Os::from(os))
        .architecture(Arch::from(architecture))
        .build()
        .expect("os and architecture are set");
    p.set_variant(variant.map(Into::into));
    p
}

/// `os/arch[/variant]`, for messages.
pub fn platform_name(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant() {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// The annotation `key` of a descriptor.
pub fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations().as_ref()?.get(key).map(String::as_str)
}

/// A descriptor's `org.opencontainers.image.ref.name`.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    annotation(d, REF_NAME)
}

/// A descriptor of a blob (its digest parsed: `sha256:` and 64 lowercase hex digits).
pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Result<Descriptor, String> {
    let d =
        oci_spec::image::Digest::try_from(digest).map_err(|e| format!("digest {digest}: {e}"))?;
    Ok(Descriptor::new(media_type.into(), size, d))
}

/// An image manifest of a config and layers, as berth writes one for an imported archive.
pub fn image_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> Result<ImageManifest, String> {
    oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(oci_spec::image::MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| e.to_string())
}

/// A descriptor's media type as written.
pub fn media_type(d: &Descriptor) -> String {
    d.media_type().to_string()
}

/// Picks the manifest for `want` from an index: same os and architecture; an exact variant match
/// wins, then an entry without a variant (arm64's v8 is the default); attestations are skipped.
pub fn choose_platform<'a>(index: &'a ImageIndex, want: &Platform) -> Option<&'a Descriptor> {
    let mut fallback = None;
    for d in index.manifests() {
        let Some(p) = d.platform() else { continue };
        if p.os() != want.os() || p.architecture() != want.architecture() {
            continue;
        }
        if !matches!(media_type(d).as_str(), OCI_MANIFEST | DOCKER_MANIFEST) {
            continue;
        }
        // arm64's default variant is v8: "arm64" and "arm64/v8" are the same platform.
        fn norm<'x>(arch: &Arch, v: Option<&'x str>) -> Option<&'x str> {
            if *arch == Arch::ARM64 && v == Some("v8") {
                None
            } else {
                v
            }
        }
        let arch = want.architecture();
        if norm(arch, p.variant().as_deref()) == norm(arch, want.variant().as_deref()) {
            return Some(d);
        }
        if p.variant().is_none() {
            fallback = fallback.or(Some(d));
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(tag: &str) -> String {
        sha256_digest(tag.as_bytes())
    }

    fn entry(os: &str, arch: &str, variant: Option<&str>, tag: &str) -> Descriptor {
        let mut d = Descriptor::new(
            oci_spec::image::MediaType::ImageManifest,
            1,
            oci_spec::image::Digest::try_from(digest(tag)).unwrap(),
        );
        d.set_platform(Some(platform(os, arch, variant)));
        d
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        let mut i = ImageIndex::default();
        i.set_manifests(entries);
        i
    }

    #[test]
    fn platform_choice() {
        let idx = index(vec![
            entry("linux", "arm", Some("v6"), "a6"),
            entry("linux", "arm", Some("v7"), "a7"),
            entry("linux", "arm64", None, "a64"),
            entry("linux", "amd64", None, "x64"),
            entry("unknown", "unknown", None, "att"),
        ]);
        let pick = |a: &str, v: Option<&str>| {
            choose_platform(&idx, &platform("linux", a, v)).map(|d| d.digest().to_string())
        };
        assert_eq!(pick("amd64", None), Some(digest("x64")));
        assert_eq!(pick("arm", Some("v7")), Some(digest("a7")));
        assert_eq!(pick("arm", Some("v6")), Some(digest("a6")));
        assert_eq!(pick("arm64", Some("v8")), Some(digest("a64")));
        assert_eq!(pick("s390x", None), None);
        assert!(choose_platform(&idx, &platform("windows", "amd64", None)).is_none());
        // an arm64/v8 entry is taken for an arm64 host
        let idx2 = index(vec![entry("linux", "arm64", Some("v8"), "v8")]);
        for v in [Some("v8"), None] {
            assert_eq!(
                choose_platform(&idx2, &platform("linux", "arm64", v))
                    .map(|d| d.digest().to_string()),
                Some(digest("v8"))
            );
        }
        assert!(!platform_name(&host_platform()).is_empty());
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
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"layers":[]}"#;
        assert!(matches!(parse_document(m), Ok(Document::Manifest(_))));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse_document(i), Ok(Document::Index(_))));
        assert!(parse_document(br#"{"schemaVersion":1}"#).is_err());
    }
}

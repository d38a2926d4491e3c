//! The host files a spec names whose contents become part of the container (env files, a seccomp
//! profile, device nodes), read once per pass, and the spec hash over them. Runs in berthd (each
//! pass) and in `berth check`/`diff`.

use super::{EFFECTIVE_VERSION, EffectiveError};
use crate::spec::Spec;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The host files a spec names whose contents (for a device node: its numbers and mode) become part
/// of the container, as read once: the hash covers them and the container is built from them (never
/// from a second read).
///
/// Files a container only *sees* (bind mounts, `image_file`, whose digest is hashed already) are not
/// here: their contents are not copied into what berth builds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// `env_file:` path and contents, in spec order.
    pub env_files: Vec<(String, String)>,
    /// The profile of `security_opt: [seccomp=/path]` (the one in effect): path and contents.
    pub seccomp_profile: Option<(String, String)>,
    /// The host nodes of `devices:`, in spec order: their numbers and mode go into the container's
    /// device list and cgroup rules.
    pub devices: Vec<DeviceNode>,
}

/// A host device node as stat(2) showed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceNode {
    pub path: String,
    /// `c` (character) or `b` (block).
    pub kind: String,
    pub major: u32,
    pub minor: u32,
    /// Permission bits, for the node made in the container.
    pub mode: u32,
}

/// Reads what `path` is: a device node, or an error saying why not.
fn device_node(path: &str) -> Result<DeviceNode, EffectiveError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let err = |source| EffectiveError::InputRead {
        what: "device",
        path: path.into(),
        source,
    };
    let md = std::fs::metadata(path).map_err(err)?;
    let kind = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Err(err(std::io::Error::other("not a device node")));
    };
    Ok(DeviceNode {
        path: path.into(),
        kind: kind.into(),
        major: libc::major(md.rdev()),
        minor: libc::minor(md.rdev()),
        mode: md.mode() & 0o7777,
    })
}

/// The files [`read_inputs`] reads for `spec` (whether they exist or not).
pub fn input_paths(spec: &Spec) -> std::collections::BTreeSet<PathBuf> {
    spec.env_file
        .0
        .iter()
        .map(String::as_str)
        .chain(spec.seccomp().flatten())
        .chain(spec.devices.iter().map(|d| d.host.as_str()))
        .map(PathBuf::from)
        .collect()
}

/// Reads the files a spec names (see [`Inputs`]); a file that cannot be read is an error naming
/// the field and the path.
pub fn read_inputs(spec: &Spec) -> Result<Inputs, EffectiveError> {
    let read = |what: &'static str, p: &str| {
        std::fs::read_to_string(p)
            .map(|c| (p.to_owned(), c))
            .map_err(|source| EffectiveError::InputRead {
                what,
                path: p.into(),
                source,
            })
    };
    Ok(Inputs {
        env_files: spec
            .env_file
            .0
            .iter()
            .map(|p| read("env_file", p))
            .collect::<Result<_, _>>()?,
        seccomp_profile: spec
            .seccomp()
            .flatten()
            .map(|p| read("seccomp profile", p))
            .transpose()?,
        devices: spec
            .devices
            .iter()
            .map(|d| device_node(&d.host))
            .collect::<Result<_, _>>()?,
    })
}

/// Parses an env file the way Docker does: `KEY=value` lines, `#` comments, blank lines.
pub fn parse_env_file(path: &str, text: &str) -> Result<Vec<(String, String)>, EffectiveError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            return Err(EffectiveError::EnvFileSyntax {
                path: path.into(),
                line: i + 1,
                message: format!("`{l}` has no value (write KEY=value)"),
            });
        };
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(EffectiveError::EnvFileSyntax {
                path: path.into(),
                line: i + 1,
                message: format!("invalid variable name `{k}`"),
            });
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The hash over (spec, resolved image digest, contents of the [`Inputs`] files). Serialising the
/// parsed spec (sorted maps, normalised values) makes the hash blind to comments, key order and
/// formatting; the files count byte for byte, so touching one changes nothing and editing one
/// replaces the container.
pub fn spec_hash(name: &str, spec: &Spec, image_digest: &str, inputs: &Inputs) -> String {
    #[derive(Serialize)]
    struct HashInput<'a> {
        version: u32,
        name: &'a str,
        spec: &'a Spec,
        image_digest: &'a str,
        env_files: &'a [(String, String)],
        // Left out when absent, so that the hash of a spec without a profile is what it was
        // before profiles were hashed (no restart of every container on upgrade).
        #[serde(skip_serializing_if = "Option::is_none")]
        seccomp_profile: Option<&'a (String, String)>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        devices: &'a [DeviceNode],
    }
    let json = serde_json::to_vec(&HashInput {
        version: EFFECTIVE_VERSION,
        name,
        spec,
        image_digest,
        env_files: &inputs.env_files,
        seccomp_profile: inputs.seccomp_profile.as_ref(),
        devices: &inputs.devices,
    })
    .expect("a spec always serialises");
    let d = Sha256::digest(&json);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

//! The effective spec: a container's spec merged with its image's config exactly as Docker merges them
//! (ENTRYPOINT/CMD/ENV/WORKDIR/USER/STOPSIGNAL/HEALTHCHECK), plus the hash that decides restarts.
//! The hash covers the spec, the resolved image digest and the host files whose contents become part
//! of the container ([`Inputs`]: env files, a seccomp profile, the device nodes passed through);
//! those are read once per pass and the container is built from what was read, so what runs is what
//! was hashed.
//! Computed in berthd for reconcile and by `berth diff`/`inspect`.

use super::{HealthTest, NetworkMode, Readiness, Signal, Spec};
use berth_proto::HealthCheck;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Bumped when the meaning of a spec changes (what berth builds from the same file), so that
/// containers are replaced once after such an upgrade rather than running with stale settings.
pub const EFFECTIVE_VERSION: u32 = 1;

/// PATH Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum EffectiveError {
    #[error("cannot read {what} {path}: {source}")]
    InputRead {
        /// Which spec field names the file (`env_file`, `seccomp profile`).
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: {message}")]
    SeccompProfile { path: PathBuf, message: String },
    #[error("env_file {path}:{line}: {message}")]
    EnvFileSyntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "container {name}: no command to run (the image has no ENTRYPOINT or CMD and the spec sets no `command`)"
    )]
    NoCommand { name: String },
    #[error("container {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("cannot parse image config: {0}")]
    ImageConfig(#[from] serde_json::Error),
}

/// The parts of an image's config that a container inherits. Read from the config blob's JSON
/// directly, since `Healthcheck` is a Docker extension the OCI types do not carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub healthcheck: Option<ImageHealthcheck>,
}

/// Docker's image healthcheck; durations in nanoseconds, 0 = inherit/default.
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

impl ImageConfig {
    /// From an image config blob (`{"config": {…}, "rootfs": …}`).
    pub fn from_config_blob(json: &[u8]) -> Result<Self, EffectiveError> {
        #[derive(Deserialize)]
        struct Blob {
            #[serde(default)]
            config: Option<ImageConfig>,
        }
        Ok(serde_json::from_slice::<Blob>(json)?
            .config
            .unwrap_or_default())
    }
}

/// What a container runs, everything resolved except names that need the root filesystem
/// (`user: nginx` is looked up in the image's /etc/passwd when the bundle is made).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    pub name: String,
    pub spec: Spec,
    /// `image` as written, or the image_file path.
    pub image_ref: String,
    /// Resolved manifest digest.
    pub image_digest: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// `user[:group]` as given by the spec or the image; empty = root.
    pub user: String,
    pub hostname: String,
    pub stop_signal: Signal,
    pub stop_timeout: std::time::Duration,
    pub healthcheck: Option<HealthCheck>,
    pub readiness: Readiness,
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The OCI `linux.seccomp` made from the profile file the spec names (`seccomp=/path`), as read
    /// when this was resolved; None for berth's default profile or `unconfined`.
    pub seccomp_profile: Option<serde_json::Value>,
    /// The host nodes of `devices:`, in spec order, as read when this was resolved.
    pub devices: Vec<DeviceNode>,
    /// `sha256:` hex over what decides what runs.
    pub hash: String,
}

/// Default healthcheck timings (Docker's).
const HC_INTERVAL_MS: u64 = 30_000;
const HC_TIMEOUT_MS: u64 = 30_000;
const HC_RETRIES: u32 = 3;
const DEFAULT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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

/// Merges a spec with its image's config, Docker's way.
pub fn resolve(
    name: &str,
    spec: &Spec,
    image_digest: &str,
    image: &ImageConfig,
    inputs: &Inputs,
) -> Result<Effective, EffectiveError> {
    // ENTRYPOINT/CMD: a spec entrypoint discards the image's CMD too (Docker resets CMD when
    // --entrypoint is given); a spec command replaces only CMD.
    let (entrypoint, cmd) = match (&spec.entrypoint, &spec.command) {
        (Some(ep), c) => (
            ep.0.clone(),
            c.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
        ),
        (None, Some(c)) => (image.entrypoint.clone().unwrap_or_default(), c.0.clone()),
        (None, None) => (
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(EffectiveError::NoCommand { name: name.into() });
    }

    let hostname = spec.hostname.clone().unwrap_or_else(|| {
        if spec.network_mode == NetworkMode::Host {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| name.to_owned())
        } else {
            name.to_owned()
        }
    });

    // ENV: image, then env files in order, then `environment`; later wins, first position kept.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v.to_owned(),
        None => env.push((k.to_owned(), v.to_owned())),
    };
    for e in image.env.iter().flatten() {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(k, v);
    }
    for (path, text) in &inputs.env_files {
        for (k, v) in parse_env_file(path, text)? {
            set(&k, &v);
        }
    }
    for (k, v) in &spec.environment.0 {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(("HOSTNAME".into(), hostname.clone()));
    }
    let env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

    let working_dir = spec
        .working_dir
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !working_dir.starts_with('/') {
        return Err(EffectiveError::Invalid {
            name: name.into(),
            message: format!("image WORKDIR `{working_dir}` is not absolute"),
        });
    }
    let user = spec
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();

    let stop_signal = match (&spec.stop_signal, &image.stop_signal) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) if !s.is_empty() => {
            Signal::parse(s).map_err(|m| EffectiveError::Invalid {
                name: name.into(),
                message: format!("image STOPSIGNAL: {m}"),
            })?
        }
        _ => Signal("SIGTERM".into()),
    };
    let stop_timeout = spec
        .stop_grace_period
        .map(|d| d.0)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);

    let healthcheck = merge_healthcheck(name, spec, image)?;
    let readiness = spec.readiness.unwrap_or(Readiness::Started);
    if readiness == Readiness::Healthy && healthcheck.is_none() {
        return Err(EffectiveError::Invalid {
            name: name.into(),
            message: "`readiness: healthy` but neither the spec nor the image has a healthcheck"
                .into(),
        });
    }

    // Converted here rather than when the bundle is written, so that a broken profile is reported
    // like a broken spec and leaves the running container alone.
    let seccomp_profile = match spec.seccomp() {
        Some(Some(path)) => {
            let text = match &inputs.seccomp_profile {
                Some((p, text)) if p == path => text,
                _ => {
                    return Err(EffectiveError::Invalid {
                        name: name.into(),
                        message: format!("seccomp profile {path} was not read"),
                    });
                }
            };
            Some(
                crate::bundle::seccomp::from_docker_profile(text).map_err(|message| {
                    EffectiveError::SeccompProfile {
                        path: path.into(),
                        message,
                    }
                })?,
            )
        }
        _ => None,
    };

    let devices_read = spec.devices.len() == inputs.devices.len()
        && spec
            .devices
            .iter()
            .zip(&inputs.devices)
            .all(|(d, n)| d.host == n.path);
    if !devices_read {
        return Err(EffectiveError::Invalid {
            name: name.into(),
            message: "the device nodes were not read".into(),
        });
    }

    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(spec.labels.0.clone());

    Ok(Effective {
        name: name.into(),
        spec: spec.clone(),
        image_ref: spec
            .image
            .clone()
            .or_else(|| spec.image_file.as_ref().map(|p| p.display().to_string()))
            .unwrap_or_default(),
        image_digest: image_digest.into(),
        args,
        env,
        working_dir,
        user,
        hostname,
        stop_signal,
        stop_timeout,
        healthcheck,
        readiness,
        exposed_ports: image
            .exposed_ports
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        labels,
        seccomp_profile,
        devices: inputs.devices.clone(),
        hash: spec_hash(name, spec, image_digest, inputs),
    })
}

/// Docker's rule: the container's healthcheck settings override the image's field by field;
/// `NONE` or `disable` turns checking off.
fn merge_healthcheck(
    name: &str,
    spec: &Spec,
    image: &ImageConfig,
) -> Result<Option<HealthCheck>, EffectiveError> {
    let ih = image.healthcheck.clone().unwrap_or_default();
    let sh = spec.healthcheck.clone().unwrap_or_default();
    if sh.disable {
        return Ok(None);
    }
    let test = match (&sh.test, &ih.test) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) if !t.is_empty() => {
            HealthTest::from_docker(t).map_err(|m| EffectiveError::Invalid {
                name: name.into(),
                message: format!("image HEALTHCHECK: {m}"),
            })?
        }
        _ => return Ok(None),
    };
    let Some(command) = test.argv() else {
        return Ok(None);
    };
    let ns_ms = |v: Option<u64>| v.filter(|&n| n > 0).map(|n| n / 1_000_000);
    Ok(Some(HealthCheck {
        command,
        interval_ms: sh
            .interval
            .map(|d| d.0.as_millis() as u64)
            .or(ns_ms(ih.interval))
            .unwrap_or(HC_INTERVAL_MS),
        timeout_ms: sh
            .timeout
            .map(|d| d.0.as_millis() as u64)
            .or(ns_ms(ih.timeout))
            .unwrap_or(HC_TIMEOUT_MS),
        retries: sh
            .retries
            .or(ih.retries.filter(|&r| r > 0))
            .unwrap_or(HC_RETRIES),
        start_period_ms: sh
            .start_period
            .map(|d| d.0.as_millis() as u64)
            .or(ns_ms(ih.start_period))
            .unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(t: &str) -> Spec {
        crate::spec::parse(Path::new("/x/web.yaml"), t).unwrap()
    }
    fn env_inputs(env: &str) -> Inputs {
        Inputs {
            env_files: vec![("/e".into(), env.into())],
            ..Default::default()
        }
    }
    fn img() -> ImageConfig {
        ImageConfig::from_config_blob(
            br#"{"architecture":"amd64","config":{"Entrypoint":["/ep.sh"],"Cmd":["serve","--port","80"],
            "Env":["PATH=/opt/bin:/bin","A=image","B=image"],"WorkingDir":"/app","User":"app",
            "StopSignal":"SIGQUIT","ExposedPorts":{"80/tcp":{}},
            "Healthcheck":{"Test":["CMD-SHELL","wget -q -O- localhost"],"Interval":5000000000,"Retries":2}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn image_defaults_apply() {
        let e = resolve(
            "web",
            &spec("image: x\n"),
            "sha256:aa",
            &img(),
            &Inputs::default(),
        )
        .unwrap();
        assert_eq!(e.args, vec!["/ep.sh", "serve", "--port", "80"]);
        assert_eq!(e.working_dir, "/app");
        assert_eq!(e.user, "app");
        assert_eq!(e.stop_signal.0, "SIGQUIT");
        assert!(e.env.contains(&"PATH=/opt/bin:/bin".to_string()));
        let hc = e.healthcheck.unwrap();
        assert_eq!(hc.command, vec!["/bin/sh", "-c", "wget -q -O- localhost"]);
        assert_eq!(
            (hc.interval_ms, hc.timeout_ms, hc.retries),
            (5000, 30_000, 2)
        );
        assert_eq!(e.exposed_ports, vec!["80/tcp"]);
    }

    #[test]
    fn command_replaces_cmd_only() {
        let e = resolve(
            "web",
            &spec("image: x\ncommand: run fast\n"),
            "d",
            &img(),
            &Inputs::default(),
        )
        .unwrap();
        assert_eq!(e.args, vec!["/ep.sh", "run", "fast"]);
    }

    #[test]
    fn entrypoint_resets_cmd() {
        let e = resolve(
            "web",
            &spec("image: x\nentrypoint: [/bin/sh]\n"),
            "d",
            &img(),
            &Inputs::default(),
        )
        .unwrap();
        assert_eq!(e.args, vec!["/bin/sh"]);
        let e = resolve(
            "web",
            &spec("image: x\nentrypoint: [/bin/sh]\ncommand: [-c, 'echo hi']\n"),
            "d",
            &img(),
            &Inputs::default(),
        )
        .unwrap();
        assert_eq!(e.args, vec!["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn no_command_is_an_error() {
        let r = resolve(
            "web",
            &spec("image: x\n"),
            "d",
            &ImageConfig::default(),
            &Inputs::default(),
        );
        assert!(matches!(r, Err(EffectiveError::NoCommand { .. })));
    }

    #[test]
    fn env_precedence_and_defaults() {
        let s = spec("image: x\nenv_file: /e.env\nenvironment: {B: spec, C: spec}\n");
        let files = Inputs {
            env_files: vec![(
                "/e.env".to_string(),
                "# c\nA=file\nB=file\n\nD=file\n".to_string(),
            )],
            ..Default::default()
        };
        let e = resolve("web", &s, "d", &img(), &files).unwrap();
        assert_eq!(
            e.env,
            vec![
                "PATH=/opt/bin:/bin",
                "A=file",
                "B=spec",
                "D=file",
                "C=spec",
                "HOSTNAME=web"
            ]
        );
        let e = resolve(
            "web",
            &s,
            "d",
            &ImageConfig {
                cmd: Some(vec!["x".into()]),
                ..Default::default()
            },
            &files,
        )
        .unwrap();
        assert_eq!(e.env[0], format!("PATH={DEFAULT_PATH}"));
        assert!(parse_env_file("/e", "JUSTKEY\n").is_err());
    }

    #[test]
    fn spec_overrides_image() {
        let s = spec(
            "image: x\nuser: '1:2'\nworking_dir: /w\nstop_signal: INT\nstop_grace_period: 3s\nhealthcheck: {interval: 1s}\n",
        );
        let e = resolve("web", &s, "d", &img(), &Inputs::default()).unwrap();
        assert_eq!(
            (
                e.user.as_str(),
                e.working_dir.as_str(),
                e.stop_signal.0.as_str()
            ),
            ("1:2", "/w", "SIGINT")
        );
        assert_eq!(e.stop_timeout.as_secs(), 3);
        let hc = e.healthcheck.unwrap();
        assert_eq!((hc.interval_ms, hc.retries), (1000, 2));
        let e = resolve(
            "web",
            &spec("image: x\nhealthcheck: {disable: true}\n"),
            "d",
            &img(),
            &Inputs::default(),
        )
        .unwrap();
        assert!(e.healthcheck.is_none());
        let e = resolve(
            "web",
            &spec("image: x\nhealthcheck: {test: [NONE]}\n"),
            "d",
            &img(),
            &Inputs::default(),
        )
        .unwrap();
        assert!(e.healthcheck.is_none());
    }

    #[test]
    fn readiness_healthy_needs_a_check() {
        let s = spec("image: x\nreadiness: healthy\n");
        assert!(
            resolve(
                "web",
                &s,
                "d",
                &ImageConfig {
                    cmd: Some(vec!["x".into()]),
                    ..Default::default()
                },
                &Inputs::default()
            )
            .is_err()
        );
        assert!(resolve("web", &s, "d", &img(), &Inputs::default()).is_ok());
    }

    #[test]
    fn hash_changes_exactly_when_what_runs_changes() {
        let h =
            |t: &str, digest: &str, env: &str| spec_hash("web", &spec(t), digest, &env_inputs(env));
        let base = h("image: x\nenvironment: {A: 1, B: 2}\n", "sha256:1", "X=1");
        // Formatting, comments and key order do not matter.
        assert_eq!(
            base,
            h(
                "# comment\nenvironment:\n  B: '2'\n  A: 1\nimage: x\n",
                "sha256:1",
                "X=1"
            )
        );
        assert_eq!(
            base,
            h("image: x\nenvironment: [A=1, B=2]\n", "sha256:1", "X=1")
        );
        // What runs does.
        assert_ne!(
            base,
            h("image: x\nenvironment: {A: 1, B: 3}\n", "sha256:1", "X=1")
        );
        assert_ne!(
            base,
            h("image: x\nenvironment: {A: 1, B: 2}\n", "sha256:2", "X=1")
        );
        assert_ne!(
            base,
            h("image: x\nenvironment: {A: 1, B: 2}\n", "sha256:1", "X=2")
        );
        assert_ne!(
            base,
            spec_hash(
                "db",
                &spec("image: x\nenvironment: {A: 1, B: 2}\n"),
                "sha256:1",
                &env_inputs("X=1")
            )
        );
        assert!(base.starts_with("sha256:") && base.len() == 71);
    }

    const PROFILE: &str = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;

    /// Resolves `text` with the files it names read from disk, as a pass does.
    fn resolve_read(text: &str) -> Result<Effective, EffectiveError> {
        let s = spec(text);
        resolve("web", &s, "d", &img(), &read_inputs(&s)?)
    }

    #[test]
    fn seccomp_profile_contents_are_hashed_and_used() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("profile.json");
        std::fs::write(&p, PROFILE).unwrap();
        let text = format!("image: x\nsecurity_opt: [seccomp={}]\n", p.display());
        let e1 = resolve_read(&text).unwrap();
        assert_eq!(
            e1.seccomp_profile.as_ref().unwrap()["syscalls"][0]["names"],
            serde_json::json!(["mkdir"])
        );
        // Rewritten with the same bytes (a touch): same hash.
        std::fs::write(&p, PROFILE).unwrap();
        assert_eq!(resolve_read(&text).unwrap().hash, e1.hash);
        // Edited: a new hash, and the new profile is what the container gets.
        let edited = PROFILE.replace("mkdir", "rmdir");
        std::fs::write(&p, &edited).unwrap();
        let e2 = resolve_read(&text).unwrap();
        assert_ne!(e2.hash, e1.hash);
        assert_eq!(
            e2.seccomp_profile.unwrap()["syscalls"][0]["names"],
            serde_json::json!(["rmdir"])
        );
        // The option in effect is the last one: a later `unconfined` reads no file.
        let unconfined = format!(
            "image: x\nsecurity_opt: [seccomp={}, seccomp=unconfined]\n",
            p.display()
        );
        assert_eq!(read_inputs(&spec(&unconfined)).unwrap(), Inputs::default());
        assert!(resolve_read(&unconfined).unwrap().seccomp_profile.is_none());
    }

    #[test]
    fn unreadable_or_broken_files_are_errors_naming_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing.json");
        let e = resolve_read(&format!(
            "image: x\nsecurity_opt: [seccomp={}]\n",
            p.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("seccomp profile") && e.contains(&*p.to_string_lossy()),
            "{e}"
        );
        let envf = d.path().join("missing.env");
        let e = resolve_read(&format!("image: x\nenv_file: {}\n", envf.display()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("env_file") && e.contains(&*envf.to_string_lossy()),
            "{e}"
        );
        // A profile that is not JSON: reported at resolve time, with its path.
        std::fs::write(&p, "{not json").unwrap();
        let e = resolve_read(&format!(
            "image: x\nsecurity_opt: [seccomp={}]\n",
            p.display()
        ))
        .unwrap_err();
        assert!(matches!(e, EffectiveError::SeccompProfile { .. }), "{e}");
        assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
        // Inputs that were not read for this spec are refused, not ignored.
        let s = spec(&format!(
            "image: x\nsecurity_opt: [seccomp={}]\n",
            p.display()
        ));
        assert!(resolve("web", &s, "d", &img(), &Inputs::default()).is_err());
    }

    #[test]
    fn device_nodes_are_read_and_hashed() {
        let e = resolve_read("image: x\ndevices: [/dev/null]\n").unwrap();
        assert_eq!(
            e.devices,
            vec![DeviceNode {
                path: "/dev/null".into(),
                kind: "c".into(),
                major: 1,
                minor: 3,
                mode: std::os::unix::fs::PermissionsExt::mode(
                    &std::fs::metadata("/dev/null").unwrap().permissions()
                ) & 0o7777,
            }]
        );
        let s = spec("image: x\ndevices: [/dev/null]\n");
        let mut inputs = read_inputs(&s).unwrap();
        let h = spec_hash("web", &s, "d", &inputs);
        assert_eq!(h, e.hash);
        // Another node behind the same path (a replugged device): another hash.
        inputs.devices[0].minor = 4;
        assert_ne!(spec_hash("web", &s, "d", &inputs), h);
        // Not a device, or not there: an error naming the path.
        for p in ["/dev/shm", "/dev/berth-test-no-such-device"] {
            let e = resolve_read(&format!("image: x\ndevices: [{p}:/dev/x]\n"));
            let e = e.unwrap_err().to_string();
            assert!(e.contains("cannot read device") && e.contains(p), "{e}");
        }
    }

    #[test]
    fn hash_without_profile_or_devices_is_what_it_was_before_they_counted() {
        // The hash input as it was when only env files were hashed: containers without a profile
        // must keep their hash across the upgrade, or every one of them would restart.
        #[derive(Serialize)]
        struct Before<'a> {
            version: u32,
            name: &'a str,
            spec: &'a Spec,
            image_digest: &'a str,
            env_files: &'a [(String, String)],
        }
        let s = spec("image: x\nenvironment: {A: 1}\n");
        let inputs = env_inputs("X=1");
        let json = serde_json::to_vec(&Before {
            version: EFFECTIVE_VERSION,
            name: "web",
            spec: &s,
            image_digest: "sha256:1",
            env_files: &inputs.env_files,
        })
        .unwrap();
        let hex: String = Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            spec_hash("web", &s, "sha256:1", &inputs),
            format!("sha256:{hex}")
        );
    }
}

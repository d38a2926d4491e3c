//! The effective spec: a container's spec merged with its image's config exactly as Docker merges them
//! (ENTRYPOINT/CMD/ENV/WORKDIR/USER/STOPSIGNAL/HEALTHCHECK), plus the hash that decides restarts.
//! Computed in berthd for reconcile and by `berth diff`/`inspect`.

use super::{HealthTest, NetworkMode, Readiness, Signal, Spec};
use berth_shim::config::HealthCheck;
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
    #[error("cannot read env_file {path}: {source}")]
    EnvFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
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
    /// `sha256:` hex over what decides what runs.
    pub hash: String,
}

/// Default healthcheck timings (Docker's).
const HC_INTERVAL_MS: u64 = 30_000;
const HC_TIMEOUT_MS: u64 = 30_000;
const HC_RETRIES: u32 = 3;
const DEFAULT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the env files a spec names (their contents are part of the hash).
pub fn read_env_files(spec: &Spec) -> Result<Vec<(String, String)>, EffectiveError> {
    spec.env_file
        .0
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|c| (p.clone(), c))
                .map_err(|source| EffectiveError::EnvFileRead {
                    path: p.into(),
                    source,
                })
        })
        .collect()
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

/// The hash over (spec, resolved image digest, env-file contents). Serialising the parsed spec
/// (sorted maps, normalised values) makes the hash blind to comments, key order and formatting.
pub fn spec_hash(
    name: &str,
    spec: &Spec,
    image_digest: &str,
    env_files: &[(String, String)],
) -> String {
    #[derive(Serialize)]
    struct HashInput<'a> {
        version: u32,
        name: &'a str,
        spec: &'a Spec,
        image_digest: &'a str,
        env_files: &'a [(String, String)],
    }
    let json = serde_json::to_vec(&HashInput {
        version: EFFECTIVE_VERSION,
        name,
        spec,
        image_digest,
        env_files,
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
    env_files: &[(String, String)],
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
    for (path, text) in env_files {
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
        hash: spec_hash(name, spec, image_digest, env_files),
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
        let e = resolve("web", &spec("image: x\n"), "sha256:aa", &img(), &[]).unwrap();
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
            &[],
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
            &[],
        )
        .unwrap();
        assert_eq!(e.args, vec!["/bin/sh"]);
        let e = resolve(
            "web",
            &spec("image: x\nentrypoint: [/bin/sh]\ncommand: [-c, 'echo hi']\n"),
            "d",
            &img(),
            &[],
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
            &[],
        );
        assert!(matches!(r, Err(EffectiveError::NoCommand { .. })));
    }

    #[test]
    fn env_precedence_and_defaults() {
        let s = spec("image: x\nenv_file: /e.env\nenvironment: {B: spec, C: spec}\n");
        let files = vec![(
            "/e.env".to_string(),
            "# c\nA=file\nB=file\n\nD=file\n".to_string(),
        )];
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
        let e = resolve("web", &s, "d", &img(), &[]).unwrap();
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
            &[],
        )
        .unwrap();
        assert!(e.healthcheck.is_none());
        let e = resolve(
            "web",
            &spec("image: x\nhealthcheck: {test: [NONE]}\n"),
            "d",
            &img(),
            &[],
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
                &[]
            )
            .is_err()
        );
        assert!(resolve("web", &s, "d", &img(), &[]).is_ok());
    }

    #[test]
    fn hash_changes_exactly_when_what_runs_changes() {
        let h = |t: &str, digest: &str, env: &str| {
            spec_hash("web", &spec(t), digest, &[("/e".into(), env.into())])
        };
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
                &[("/e".into(), "X=1".into())]
            )
        );
        assert!(base.starts_with("sha256:") && base.len() == 71);
    }
}

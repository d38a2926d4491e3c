//! The effective spec: a container's spec merged with its image's config exactly as Docker merges them
//! (ENTRYPOINT/CMD/ENV/WORKDIR/USER/STOPSIGNAL/HEALTHCHECK), plus the hash that decides restarts.
//! The hash covers the spec, the resolved image digest and the host files whose contents become part
//! of the container ([`Inputs`]: env files, a seccomp profile, the device nodes passed through);
//! those are read once per pass and the container is built from what was read, so what runs is what
//! was hashed.
//! [`Effective`] carries every resolved value the unit and the bundle are made from: they read it,
//! never the spec. Computed in berthd for reconcile and by `berth diff`/`inspect`.

mod image;
mod inputs;
mod resolved;

pub use image::ImageConfig;
pub use inputs::{DeviceNode, Inputs, input_paths, parse_env_file, read_inputs, spec_hash};
pub use resolved::{DEFAULT_CAPS, Limits, Mount, MountKind, PassedDevice, Rlimit};

use super::{Dependency, NetworkMode, Readiness, Restart, Signal, Spec};
use berth_proto::HealthCheck;
use oci_spec::runtime::LinuxSeccomp;
use serde::Serialize;
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

/// What a container runs, everything resolved except names that need the root filesystem
/// (`user: nginx` is looked up in the image's /etc/passwd when the bundle is made). The systemd
/// unit and the bundle are made from these fields alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    pub name: String,
    /// The spec as parsed, for reports and the image store; what runs is in the fields below.
    pub spec: Spec,
    /// `image` as written, or the image_file path.
    pub image_ref: String,
    /// Resolved manifest digest.
    pub image_digest: String,
    /// The argv (ENTRYPOINT + CMD after the spec's overrides).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// `user[:group]` as given by the spec or the image; empty = root.
    pub user: String,
    pub hostname: String,
    pub stop_signal: Signal,
    /// The stop grace period (see [`Effective::stop_timeout`] for the rule).
    pub stop_timeout: std::time::Duration,
    pub healthcheck: Option<HealthCheck>,
    pub readiness: Readiness,
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// systemd resource limits of the unit.
    pub limits: Limits,
    /// Volumes and tmpfs mounts, in spec order (volumes first).
    pub mounts: Vec<Mount>,
    /// The capability set after `cap_add`/`cap_drop` (Docker's rules), sorted `CAP_*` names.
    pub capabilities: Vec<String>,
    /// `ulimits:` as OCI rlimits, by ulimit name.
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    /// The OCI `linux.seccomp`: berth's default profile for the capabilities, the profile file the
    /// spec names (`seccomp=/path`) as read when this was resolved, or None for `unconfined`.
    pub seccomp: Option<LinuxSeccomp>,
    /// `devices:`, in spec order, with the host nodes as read when this was resolved.
    pub devices: Vec<PassedDevice>,
    pub sysctls: BTreeMap<String, String>,
    pub network_mode: NetworkMode,
    /// `ports:` (only with `network_mode: bridge`).
    pub ports: Vec<super::Port>,
    /// `networks:` (only with `network_mode: bridge`); empty: the default network.
    pub networks: super::Networks,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub stdin_open: bool,
    /// journald's rate limit on the container's output (`logging.options`, else berth's default).
    pub log_rate_limit: super::RateLimit,
    pub restart: Restart,
    pub depends_on: BTreeMap<String, Dependency>,
    /// `sha256:` hex over what decides what runs.
    pub hash: String,
}

/// Default healthcheck timings (Docker's).
const HC_INTERVAL_MS: u64 = 30_000;
const HC_TIMEOUT_MS: u64 = 30_000;
const HC_RETRIES: u32 = 3;
/// Docker's stop grace period.
pub const DEFAULT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Effective {
    /// The one stop-timeout rule: the spec's `stop_grace_period`, else Docker's 10 s. The shim
    /// enforces it (shim.json), and the unit's `TimeoutStopSec=` is it plus the systemd backstop.
    pub fn stop_timeout(spec: &Spec) -> std::time::Duration {
        spec.stop_grace_period
            .map(|d| d.0)
            .unwrap_or(DEFAULT_STOP_TIMEOUT)
    }
}

/// A Docker-format seccomp profile file's text as OCI's `linux.seccomp` (what a pass gives the
/// container, and what `berth check` judges).
pub fn seccomp_profile(path: &str, text: &str) -> Result<LinuxSeccomp, EffectiveError> {
    crate::bundle::seccomp::from_docker_profile(text)
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .map_err(|message| EffectiveError::SeccompProfile {
            path: path.into(),
            message,
        })
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
            // On another container's namespace, its name (its /etc/hostname is mounted too).
            spec.network_mode.container().unwrap_or(name).to_owned()
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
    let stop_timeout = Effective::stop_timeout(spec);

    let healthcheck = image::merge_healthcheck(name, spec, image)?;
    let readiness = spec.readiness.unwrap_or(Readiness::Started);
    if readiness == Readiness::Healthy && healthcheck.is_none() {
        return Err(EffectiveError::Invalid {
            name: name.into(),
            message: "`readiness: healthy` but neither the spec nor the image has a healthcheck"
                .into(),
        });
    }

    let capabilities = resolved::capabilities(spec);
    // Converted here rather than when the bundle is written, so that a broken profile is reported
    // like a broken spec and leaves the running container alone.
    let seccomp = match spec.seccomp() {
        None => Some(
            crate::bundle::seccomp::default_profile(&capabilities).map_err(|e| {
                EffectiveError::Invalid {
                    name: name.into(),
                    message: format!("berth's default seccomp profile: {e}"),
                }
            })?,
        ),
        Some(None) => None,
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
            Some(seccomp_profile(path, text)?)
        }
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
        limits: Limits::of(spec),
        mounts: resolved::mounts(spec),
        capabilities,
        rlimits: resolved::rlimits(spec),
        no_new_privileges: resolved::no_new_privileges(spec),
        seccomp,
        devices: spec
            .devices
            .iter()
            .zip(&inputs.devices)
            .map(|(d, node)| PassedDevice {
                container: d.container.clone(),
                permissions: d.permissions.clone(),
                node: node.clone(),
            })
            .collect(),
        sysctls: spec.sysctls.0.clone(),
        network_mode: spec.network_mode.clone(),
        ports: spec.ports.clone(),
        networks: spec.networks.clone(),
        read_only: spec.read_only,
        init: spec.init,
        tty: spec.tty,
        stdin_open: spec.stdin_open,
        log_rate_limit: super::RateLimit::of(spec.logging.as_ref()),
        restart: spec.restart,
        depends_on: spec.dependencies(),
        hash: spec_hash(name, spec, image_digest, inputs),
    })
}

#[cfg(test)]
mod tests;

//! Turns an effective spec into what the shim reads: the OCI bundle's `config.json` (made with
//! oci-spec's builders, Docker's secure defaults) and `shim.json`, plus the files the container gets
//! at /etc/hosts, /etc/hostname, /etc/resolv.conf. Reads only the effective spec, never the spec
//! file. Runs in berthd, before the unit starts.

mod etc;
mod oci;
pub mod seccomp;
mod user;

pub use crate::spec::effective::DEFAULT_CAPS;
pub use oci::{MASKED_PATHS, READONLY_PATHS, oci_config};
pub use user::resolve_user;

use crate::spec::NetworkMode;
use crate::spec::Readiness;
use crate::spec::effective::{Effective, MountKind};
use berth_proto::{NetworkConfig, OverlayRootfs, SHIM_CONFIG_FILE, ShimConfig};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("container {name}: `init: true` needs {path}: {source}")]
    Init {
        name: String,
        path: &'static str,
        source: std::io::Error,
    },
    #[error("container {name}: user `{user}` not found in the image's {file}")]
    UnknownUser {
        name: String,
        user: String,
        file: &'static str,
    },
    #[error("container {name}: invalid OCI config: {source}")]
    Oci {
        name: String,
        source: oci_spec::OciSpecError,
    },
    #[error("container {name}: cannot serialise {file}: {source}")]
    Json {
        name: String,
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("container {name}: {message}")]
    Network { name: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Host paths the bundle refers to.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Named volumes live in `<volumes>/<name>/_data`.
    pub volumes: PathBuf,
    /// The bridge network; `None`: `network_mode: bridge` gets a namespace with loopback only.
    pub network: Option<NetworkPaths>,
}

/// The host side of the bridge networks: what the shim runs and where it keeps its state.
#[derive(Debug, Clone)]
pub struct NetworkPaths {
    pub netavark: PathBuf,
    pub aardvark: PathBuf,
    /// netavark's `--config` directory and the address leases.
    pub state_dir: PathBuf,
    /// Where each shim bind-mounts its container's network namespace (`<dir>/<name>`).
    pub netns_dir: PathBuf,
    /// The default network and where the named ones are declared (read at each start).
    pub declared: crate::network::Sources,
    /// Host address of published ports that name none; `None`: every address.
    pub default_host_ip: Option<std::net::IpAddr>,
}

impl Paths {
    /// The shim's network set-up for `eff`: with `network_mode: bridge`, on the networks its
    /// `networks:` names (the default one when it names none), as `declared` says they are.
    pub fn network_config(
        &self,
        eff: &Effective,
        declared: &crate::network::Declared,
    ) -> Result<Option<NetworkConfig>, BundleError> {
        let Some(n) = &self.network else {
            return Ok(None);
        };
        if eff.network_mode != NetworkMode::Bridge {
            return Ok(None);
        }
        let networks = crate::network::attachments(&eff.networks, declared).map_err(|e| {
            BundleError::Network {
                name: eff.name.clone(),
                message: e.message,
            }
        })?;
        Ok(Some(NetworkConfig {
            netavark: n.netavark.clone(),
            aardvark: networks
                .iter()
                .any(|a| a.network.dns)
                .then(|| n.aardvark.clone()),
            state_dir: n.state_dir.clone(),
            netns: n.netns_dir.join(&eff.name),
            container_id: crate::network::container_id(&eff.name),
            networks,
            ports: eff
                .ports
                .iter()
                .map(|p| {
                    let mut m = p.mapping();
                    m.host_ip = m.host_ip.or(n.default_host_ip);
                    m
                })
                .collect(),
        }))
    }

    /// Where the shim binds the namespace of a container on the bridge.
    pub fn netns(&self, eff: &Effective) -> Option<PathBuf> {
        let n = self.network.as_ref()?;
        (eff.network_mode == NetworkMode::Bridge).then(|| n.netns_dir.join(&eff.name))
    }

    /// The host directory of named volume `name`.
    pub fn volume(&self, name: &str) -> PathBuf {
        self.volumes.join(name).join("_data")
    }
}

/// The init run as PID 1 for `init: true` (package `tini`), and where the container sees it.
pub const INIT_BINARY: &str = "/usr/bin/tini-static";
pub const INIT_PATH: &str = "/sbin/docker-init";
/// Where a `readiness: notify` container finds its notify socket (podman's choice too).
pub const NOTIFY_SOCKET_PATH: &str = "/run/notify/notify.sock";

/// The shim's half of the bundle, with its network set-up.
pub fn shim_config(
    eff: &Effective,
    rootfs: &OverlayRootfs,
    network: Option<NetworkConfig>,
) -> ShimConfig {
    ShimConfig {
        name: eff.name.clone(),
        image: eff.image_ref.clone(),
        image_digest: eff.image_digest.clone(),
        rootfs: Some(rootfs.clone()),
        readiness: match eff.readiness {
            Readiness::Started => berth_proto::Readiness::Started,
            Readiness::Healthy => berth_proto::Readiness::Healthy,
            Readiness::Notify => berth_proto::Readiness::Notify,
        },
        healthcheck: eff.healthcheck.clone(),
        tty: eff.tty,
        stdin_open: eff.stdin_open,
        spec_hash: eff.hash.clone(),
        stop_signal: Some(eff.stop_signal.number()),
        stop_timeout_ms: Some(eff.stop_timeout.as_millis().try_into().unwrap_or(u64::MAX)),
        network,
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    crate::fsutil::write_atomic(path, data).map_err(|source| BundleError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a complete bundle into `dir` (created if missing): config.json, shim.json, the /etc files,
/// an empty `rootfs/` mount point, and the named volumes' directories.
pub fn write(
    dir: &Path,
    eff: &Effective,
    rootfs: &OverlayRootfs,
    paths: &Paths,
) -> Result<(), BundleError> {
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| BundleError::Write {
            path: p.to_owned(),
            source,
        })
    };
    mkdir(dir)?;
    mkdir(&dir.join("rootfs"))?;
    mkdir(&rootfs.upper)?;
    mkdir(&rootfs.work)?;
    for m in &eff.mounts {
        if let MountKind::Volume { name, .. } = &m.kind {
            mkdir(&paths.volume(name))?;
        }
    }
    let config = oci_config(eff, rootfs, dir, paths)?;
    let json = serde_json::to_vec_pretty(&config).map_err(|source| BundleError::Json {
        name: eff.name.clone(),
        file: "config.json",
        source,
    })?;
    write_atomic(&dir.join("config.json"), &json)?;
    let network = match &paths.network {
        Some(n) => paths.network_config(eff, &n.declared.load())?,
        None => None,
    };
    let dns: Vec<std::net::Ipv4Addr> = network
        .iter()
        .flat_map(|c| &c.networks)
        .filter(|a| a.network.dns)
        .map(|a| a.network.gateway)
        .collect();
    let bridged = network.is_some();
    let shim = serde_json::to_vec_pretty(&shim_config(eff, rootfs, network)).map_err(|source| {
        BundleError::Json {
            name: eff.name.clone(),
            file: SHIM_CONFIG_FILE,
            source,
        }
    })?;
    write_atomic(&dir.join(SHIM_CONFIG_FILE), &shim)?;
    let own_net = eff.network_mode != NetworkMode::Host;
    let files = etc::files(
        &eff.hostname,
        own_net,
        bridged,
        &dns,
        &etc::HostFiles::read(),
    );
    write_atomic(&dir.join("hosts"), files.hosts.as_bytes())?;
    write_atomic(&dir.join("hostname"), files.hostname.as_bytes())?;
    write_atomic(&dir.join("resolv.conf"), files.resolv.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests;

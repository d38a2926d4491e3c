//! berthd's settings, `/etc/berth/berthd.yaml` (every key optional, unknown keys rejected). Read by
//! berthd at start and by the `berth` CLI (to find the socket and the spec directory).

use crate::image::RegistryConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/berth/berthd.yaml";
pub const DEFAULT_SOCKET: &str = "/run/berth/berthd.sock";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Desired state: one `<name>.yaml` per container.
    pub spec_dir: PathBuf,
    /// Image store, API-made specs, berthd's records, named volumes.
    pub state_dir: PathBuf,
    /// Bundles and the API socket.
    pub run_dir: PathBuf,
    /// The native API socket (root-only).
    pub socket: PathBuf,
    /// Where systemd is: `system` (the system bus), or a D-Bus address such as
    /// `unix:path=/proc/PID/root/run/dbus/system_bus_socket`.
    pub systemd: String,
    /// A journal directory to read container logs from (`journalctl -D`), when systemd's journal
    /// is not the host's (a systemd in another mount namespace).
    pub journal_dir: Option<PathBuf>,
    /// berth-shim; default: beside the berthd binary.
    pub shim: Option<PathBuf>,
    /// Full resync interval (a safety net; changes are picked up by watches at once).
    #[serde(with = "secs")]
    pub resync: Duration,
    /// Registries: plain-HTTP hosts, mirrors, CA dirs, credential files.
    pub registries: Registries,
    /// The default bridge network of `network_mode: bridge`, and the tools.
    pub network: NetworkSettings,
    /// Named networks declared here (`NAME: {subnet: ..}`), beside the files of `network_dir`.
    /// Each is parsed on its own (one bad network never stops the others): see `crate::network`.
    pub networks: std::collections::BTreeMap<String, serde_norway::Value>,
    /// One `<name>.yaml` per named network; default: `networks/` beside `spec_dir`.
    pub network_dir: Option<PathBuf>,
    /// The file these settings were read from (for messages about what it declares).
    #[serde(skip)]
    pub file: PathBuf,
    /// The optional Docker Engine API socket.
    pub docker: DockerSettings,
    /// The image store: how far a layer may expand while it is unpacked.
    pub image: ImageSettings,
}

/// Limits on unpacking one layer (an image is hostile input): past one, the pull stops with an
/// error naming the layer, the limit and this setting. See [`crate::image::limits`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageSettings {
    /// Uncompressed size of a layer (its tar stream, and its files with sparse holes counted).
    pub max_layer_size: crate::spec::ByteSize,
    /// Uncompressed bytes per compressed byte (judged past the first 64 MiB).
    pub max_expansion_ratio: u64,
    /// Entries (files, directories, links) in one layer.
    pub max_entries: u64,
}

impl Default for ImageSettings {
    fn default() -> Self {
        let l = crate::image::limits::UnpackLimits::default();
        ImageSettings {
            max_layer_size: crate::spec::ByteSize(l.max_layer_size),
            max_expansion_ratio: l.max_expansion_ratio,
            max_entries: l.max_entries,
        }
    }
}

impl ImageSettings {
    pub fn unpack_limits(&self) -> crate::image::limits::UnpackLimits {
        crate::image::limits::UnpackLimits {
            max_layer_size: self.max_layer_size.0,
            max_expansion_ratio: self.max_expansion_ratio,
            max_entries: self.max_entries,
        }
    }

    /// A limit that would refuse every layer is a mistake in the file.
    fn check(&self) -> Result<(), String> {
        if self.max_expansion_ratio < 2 {
            return Err("image.max_expansion_ratio: must be at least 2 (tar headers alone expand 1:1 and more)".into());
        }
        if self.max_entries == 0 {
            return Err("image.max_entries: must be at least 1".into());
        }
        Ok(())
    }
}

/// The Docker-compatible API: off unless enabled; a unix socket of mode 0660 owned by `group`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerSettings {
    pub enable: bool,
    pub socket: PathBuf,
    /// The group that may use the socket (as Docker's `docker` group); unset: root only.
    pub group: Option<String>,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            enable: false,
            socket: "/run/berth/docker.sock".into(),
            group: None,
        }
    }
}

/// The default bridge network: netavark makes it on the first container that joins it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSettings {
    pub name: String,
    /// The host's bridge interface.
    pub interface: String,
    /// Private IPv4 subnet the containers get addresses from (the gateway is its first address).
    pub subnet: String,
    /// netavark; default: Debian's and Fedora's place, else `netavark` on PATH.
    pub netavark: Option<PathBuf>,
    /// Host address of published ports that name none (`"8080:80"`); unset: every address.
    /// `127.0.0.1` keeps them reachable from this host only.
    pub host_ip: Option<std::net::Ipv4Addr>,
    /// Where named networks without a `subnet:` get theirs (a /24 each).
    pub pool: String,
    /// aardvark-dns, for named networks with `dns`.
    pub aardvark: Option<PathBuf>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            name: "berth".into(),
            interface: "berth0".into(),
            subnet: "10.87.0.0/16".into(),
            netavark: None,
            host_ip: None,
            pool: "10.88.0.0/16".into(),
            aardvark: None,
        }
    }
}

impl NetworkSettings {
    pub fn netavark_path(&self) -> PathBuf {
        if let Some(p) = &self.netavark {
            return p.clone();
        }
        ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("netavark"))
    }

    pub fn aardvark_path(&self) -> PathBuf {
        if let Some(p) = &self.aardvark {
            return p.clone();
        }
        [
            "/usr/lib/podman/aardvark-dns",
            "/usr/libexec/podman/aardvark-dns",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/lib/podman/aardvark-dns"))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registries {
    pub insecure: Vec<String>,
    pub mirrors: Vec<String>,
    pub certs_dirs: Vec<PathBuf>,
    pub auth_files: Vec<PathBuf>,
    /// Where `docker-credential-<name>` helpers are looked for before berthd's `PATH` (a unit's
    /// PATH is short; on NixOS the helpers live in the store).
    pub credential_helper_dirs: Vec<PathBuf>,
    /// Timeouts and retries of registry requests during a pull.
    pub retry: crate::image::RetryPolicy,
}

mod secs {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::spec::Duration::parse(&s)
            .map(|d| d.0)
            .map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spec_dir: "/etc/berth/containers".into(),
            state_dir: crate::image::DEFAULT_ROOT.into(),
            run_dir: "/run/berth".into(),
            socket: DEFAULT_SOCKET.into(),
            systemd: "system".into(),
            journal_dir: None,
            shim: None,
            resync: Duration::from_secs(300),
            registries: Registries::default(),
            network: NetworkSettings::default(),
            networks: Default::default(),
            network_dir: None,
            file: DEFAULT_CONFIG.into(),
            docker: DockerSettings::default(),
            image: ImageSettings::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads the file; a missing file at the default path means all defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG) =>
            {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(Config {
                file: path.into(),
                ..Config::default()
            });
        }
        let mut c: Config = serde_norway::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        berth_proto::network::parse_subnet(&c.network.subnet).map_err(|m| ConfigError::Parse {
            path: path.into(),
            message: format!("network.subnet: {m}"),
        })?;
        berth_proto::network::parse_subnet(&c.network.pool).map_err(|m| ConfigError::Parse {
            path: path.into(),
            message: format!("network.pool: {m}"),
        })?;
        c.image.check().map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })?;
        c.file = path.into();
        Ok(c)
    }

    pub fn registry_config(&self) -> RegistryConfig {
        let mut c = RegistryConfig::with_default_paths();
        c.insecure = self.registries.insecure.clone();
        c.mirrors = self.registries.mirrors.clone();
        if !self.registries.certs_dirs.is_empty() {
            c.certs_dirs = self.registries.certs_dirs.clone();
        }
        if !self.registries.auth_files.is_empty() {
            c.auth_files = self.registries.auth_files.clone();
        }
        c.credential_helper_dirs = self.registries.credential_helper_dirs.clone();
        c.retry = self.registries.retry.clone();
        c
    }

    pub fn api_spec_dir(&self) -> PathBuf {
        self.state_dir.join("specs")
    }
    pub fn record_dir(&self) -> PathBuf {
        self.state_dir.join("agent")
    }
    /// Networks declared through the Docker API (`<name>.yaml`, the network file format).
    pub fn api_network_dir(&self) -> PathBuf {
        self.state_dir.join("networks")
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.state_dir.join("volumes")
    }
    /// Network namespaces of running containers (`<name>`), bind mounts made by their shims.
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }
    /// netavark's `--config` directory and the address leases.
    pub fn network_state_dir(&self) -> PathBuf {
        self.run_dir.join("network")
    }
    /// The named networks' files: `network_dir`, else `networks/` beside the spec directory.
    pub fn network_dir(&self) -> PathBuf {
        self.network_dir.clone().unwrap_or_else(|| {
            self.spec_dir
                .parent()
                .unwrap_or(Path::new("/"))
                .join("networks")
        })
    }
    /// The default network and where the named ones are declared.
    pub fn network_sources(&self) -> crate::network::Sources {
        crate::network::Sources::from_config(&self.file, self)
    }
    pub fn bundle_dir(&self) -> PathBuf {
        self.run_dir.join("containers")
    }
    /// berth-shim: configured, else beside the running binary, else on PATH's usual places.
    pub fn shim_path(&self) -> PathBuf {
        if let Some(s) = &self.shim {
            return s.clone();
        }
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
        {
            let p = dir.join("berth-shim");
            if p.exists() {
                return p;
            }
        }
        PathBuf::from("/usr/libexec/berth-shim")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example shipped as /etc/berth/berthd.yaml (contrib/berthd.yaml) changes nothing.
    #[test]
    fn shipped_example_is_all_defaults() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("berthd.yaml");
        let example = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../contrib/berthd.yaml"
        ))
        .unwrap();
        std::fs::write(&p, &example).unwrap();
        let c = Config::load(&p).unwrap();
        let want = Config {
            file: p.clone(),
            ..Config::default()
        };
        assert_eq!(format!("{c:?}"), format!("{want:?}"));
        // Each commented key, uncommented alone, is a valid setting.
        for line in example.lines().filter(|l| {
            l.starts_with('#') && l.contains(": ") && !l.starts_with("# ") && !l.starts_with("#  ")
        }) {
            std::fs::write(&p, &line[1..]).unwrap();
            Config::load(&p).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn parses_and_rejects_unknown() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.yaml");
        std::fs::write(
            &p,
            "spec_dir: /x\nresync: 1m\nregistries: {insecure: [localhost:5000], credential_helper_dirs: [/opt/helpers]}\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.spec_dir, PathBuf::from("/x"));
        assert_eq!(c.resync, Duration::from_secs(60));
        assert_eq!(c.registries.insecure, vec!["localhost:5000"]);
        assert_eq!(
            c.registry_config().credential_helper_dirs,
            vec![PathBuf::from("/opt/helpers")]
        );
        assert_eq!(c.network.subnet, "10.87.0.0/16");
        std::fs::write(
            &p,
            "network: {subnet: 10.5.0.0/24, interface: br5, host_ip: 127.0.0.1}\n",
        )
        .unwrap();
        let n = Config::load(&p).unwrap().network;
        assert_eq!(n.interface, "br5");
        assert_eq!(n.host_ip, Some(std::net::Ipv4Addr::LOCALHOST));
        std::fs::write(&p, "network: {subnet: 10.5.0.1/24}\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("network.subnet") && e.contains("host bits"),
            "{e}"
        );
        std::fs::write(
            &p,
            "registries: {retry: {attempts: 2, idle_timeout: 90s, min_rate: 0}}\n",
        )
        .unwrap();
        let r = Config::load(&p).unwrap().registry_config().retry;
        assert_eq!((r.attempts, r.min_rate), (2, 0));
        assert_eq!(r.idle_timeout, Duration::from_secs(90));
        assert_eq!(r.backoff, crate::image::RetryPolicy::default().backoff);
        std::fs::write(&p, "registries: {retry: {idle: 90s}}\n").unwrap();
        assert!(Config::load(&p).is_err());
        std::fs::write(
            &p,
            "image: {max_layer_size: 2G, max_expansion_ratio: 50, max_entries: 1000}\n",
        )
        .unwrap();
        let l = Config::load(&p).unwrap().image.unpack_limits();
        assert_eq!(
            (l.max_layer_size, l.max_expansion_ratio, l.max_entries),
            (2 << 30, 50, 1000)
        );
        for (bad, key) in [
            ("image: {max_layer_size: 0}", "max_layer_size"),
            ("image: {max_layer_size: 12Q}", "max_layer_size"),
            (
                "image: {max_expansion_ratio: 1}",
                "image.max_expansion_ratio",
            ),
            ("image: {max_entries: 0}", "image.max_entries"),
            ("image: {max_entries: -1}", "max_entries"),
            ("image: {max_layers: 3}", "max_layers"),
        ] {
            std::fs::write(&p, bad).unwrap();
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        std::fs::write(&p, "spec_dirs: /x\n").unwrap();
        assert!(Config::load(&p).is_err());
        assert!(Config::load(&d.path().join("missing.yaml")).is_err());
    }
}

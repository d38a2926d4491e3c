//! Named networks: declared in berthd.yaml (`networks:`) and/or one `<name>.yaml` per network in
//! the network directory (or, made through the Docker API, in berthd's state dir), parsed here and only here, judged as a whole (names, overlapping
//! subnets, a network declared twice) and resolved into what a container joins. A bad network is
//! a problem on that network alone. Runs in berthd (each pass that starts a container, and each
//! `network ls`, reads the declarations afresh) and in `berth check`.

pub mod api;
mod decide;
pub mod report;
pub mod sweep;

pub use decide::{address_clashes, attachments, container_id, network_id};

use crate::spec::{SpecError, yaml_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// One network's declaration, as written (the file format; unknown keys are refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDecl {
    /// IPv4 subnet; absent: a free /24 of berthd.yaml's `network.pool`.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Default: the subnet's first address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 subnet (`fd00:88:1::/64`, prefix 48 to 120): containers get an address from it
    /// too; the gateway is its first address.
    #[serde(default)]
    pub ipv6_subnet: Option<String>,
    /// No NAT, no route out.
    #[serde(default)]
    pub internal: bool,
    /// aardvark-dns answers container names and aliases on this network.
    #[serde(default = "yes")]
    pub dns: bool,
    /// The host's bridge (at most 15 characters); default `br-<name>`.
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// A declaration as found: where, and what it says or why it cannot be read.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub source: PathBuf,
    pub decl: Result<NetworkDecl, SpecError>,
}

/// A usable network, everything resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Network {
    pub name: String,
    /// The file that declares it (berthd.yaml or the network's own file).
    pub source: PathBuf,
    pub subnet: String,
    pub gateway: Ipv4Addr,
    pub interface: String,
    pub internal: bool,
    pub dns: bool,
    pub labels: BTreeMap<String, String>,
    /// berthd.yaml's `network:` (not isolated from the others).
    pub default: bool,
    /// IPv6 subnet (the gateway is its first address).
    pub ipv6_subnet: Option<String>,
}

impl Network {
    /// What the shim is given (and reports back as what the container joined).
    pub fn bridge(&self) -> berth_proto::BridgeNetwork {
        berth_proto::BridgeNetwork {
            name: self.name.clone(),
            // The default network keeps the id the shims gave it before named networks (its
            // name), so that containers started before and after an upgrade share its rules.
            id: if self.default {
                self.name.clone()
            } else {
                network_id(&self.name)
            },
            interface: self.interface.clone(),
            subnet: self.subnet.clone(),
            gateway: self.gateway,
            internal: self.internal,
            dns: self.dns,
            // Named networks do not reach each other (the default one is podman's: open).
            isolate: !self.default,
            ipv6_subnet: self.ipv6_subnet.clone(),
        }
    }
}

/// Every network: the default one, the usable named ones, and why the others are not.
#[derive(Debug, Clone)]
pub struct Declared {
    pub default: Network,
    pub networks: BTreeMap<String, Network>,
    /// Messages by network name, each naming the file(s) concerned.
    pub problems: BTreeMap<String, Vec<String>>,
    /// Where each named network is declared, the unusable ones too.
    pub sources: BTreeMap<String, Vec<PathBuf>>,
    /// The network directory.
    pub dir: PathBuf,
}

/// Where declarations come from and what they are judged against.
#[derive(Debug, Clone)]
pub struct Sources {
    /// berthd.yaml (for messages and the line of an inline declaration).
    pub config_file: PathBuf,
    pub inline: BTreeMap<String, serde_norway::Value>,
    pub dir: PathBuf,
    /// Networks declared through the Docker API, one file each, in berthd's state dir.
    pub api_dir: PathBuf,
    pub pool: String,
    pub default: Network,
}

impl Sources {
    pub fn from_config(config_file: &Path, cfg: &crate::config::Config) -> Sources {
        let (subnet, _) = berth_proto::network::parse_subnet(&cfg.network.subnet)
            .unwrap_or((Ipv4Addr::new(10, 87, 0, 0), 16));
        Sources {
            config_file: config_file.to_owned(),
            inline: cfg.networks.clone(),
            dir: cfg.network_dir(),
            api_dir: cfg.api_network_dir(),
            pool: cfg.network.pool.clone(),
            default: Network {
                name: cfg.network.name.clone(),
                source: config_file.to_owned(),
                subnet: cfg.network.subnet.clone(),
                gateway: Ipv4Addr::from(u32::from(subnet) + 1),
                interface: cfg.network.interface.clone(),
                internal: false,
                dns: false,
                labels: BTreeMap::new(),
                default: true,
                ipv6_subnet: None,
            },
        }
    }

    /// Reads berthd.yaml's declarations and the network directory, and judges them.
    pub fn load(&self) -> Declared {
        let text = std::fs::read_to_string(&self.config_file).unwrap_or_default();
        let mut found: Vec<Found> = self
            .inline_now(&text)
            .iter()
            .map(|(name, v)| Found {
                name: name.clone(),
                source: self.config_file.clone(),
                // A value has no location of its own: the error is put at the network's key.
                decl: serde_norway::from_value(v.clone()).map_err(|e| {
                    let e = yaml_error(&self.config_file, &e);
                    SpecError {
                        line: inline_line(&text, name),
                        column: Some(3),
                        message: format!("network {name}: {}", e.message),
                        ..e
                    }
                }),
            })
            .collect();
        found.extend(read_dir(&self.dir));
        found.extend(read_dir(&self.api_dir));
        self.declare(found)
    }

    /// berthd.yaml's `networks:` as the file says now (so an edit counts without restarting
    /// berthd); what berthd started with when the file cannot be read or parsed.
    fn inline_now(&self, text: &str) -> BTreeMap<String, serde_norway::Value> {
        #[derive(Deserialize)]
        struct OnlyNetworks {
            #[serde(default)]
            networks: BTreeMap<String, serde_norway::Value>,
        }
        serde_norway::from_str::<OnlyNetworks>(text)
            .map(|o| o.networks)
            .unwrap_or_else(|_| self.inline.clone())
    }

    /// Judges declarations already read.
    pub fn declare(&self, found: Vec<Found>) -> Declared {
        Declared {
            dir: self.dir.clone(),
            ..decide::declare(found, &self.pool, &self.default)
        }
    }
}

/// `berth check`'s judgement of a spec's `networks:` against the declarations, at the
/// file:line:column of the network name (what a pass would refuse when it starts the container).
pub fn check_spec(
    file: &Path,
    text: &str,
    spec: &crate::spec::Spec,
    declared: &Declared,
) -> Result<(), SpecError> {
    if spec.network_mode != crate::spec::NetworkMode::Bridge {
        return Ok(());
    }
    attachments(&spec.networks, declared)
        .map(drop)
        .map_err(|e| {
            let line = crate::spec::nested_line(text, "networks", &e.network);
            let column = line
                .and_then(|l| text.lines().nth(l - 1))
                .and_then(|l| l.find(e.network.as_str()))
                .map(|c| c + 1);
            SpecError {
                file: file.to_owned(),
                line,
                column,
                message: e.message,
                hint: Some(format!(
                    "declare it in berthd.yaml's `networks:` or in {}/<name>.yaml; `berth network ls` lists them",
                    declared.dir.display()
                )),
            }
        })
}

/// The line of `  NAME:` under berthd.yaml's top-level `networks:`.
fn inline_line(text: &str, name: &str) -> Option<usize> {
    let start = text.lines().position(|l| l.starts_with("networks:"))?;
    text.lines()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| l.is_empty() || l.starts_with([' ', '#']))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(name)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|(i, _)| i + 1)
}

/// Parses one network file (`<name>.yaml`), errors at file:line:column.
pub fn parse_file(path: &Path, text: &str) -> Result<NetworkDecl, SpecError> {
    if text.trim().is_empty() {
        // Every key has a default: an empty file declares a network with a pool subnet.
        return Ok(serde_norway::from_str("{}").expect("the empty declaration parses"));
    }
    serde_norway::from_str(text).map_err(|e| yaml_error(path, &e))
}

/// The declarations of the network directory (missing: none), by file name.
pub fn read_dir(dir: &Path) -> Vec<Found> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| !p.is_dir())
        .filter_map(|p| {
            let name = crate::spec::name_of(&p)?.to_owned();
            let decl = std::fs::read_to_string(&p)
                .map_err(|e| SpecError {
                    file: p.clone(),
                    line: None,
                    column: None,
                    message: format!("cannot read: {e}"),
                    hint: None,
                })
                .and_then(|t| parse_file(&p, &t));
            Some(Found {
                name,
                source: p,
                decl,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;

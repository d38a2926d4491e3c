//! A container's bridge network as berthd hands it to the shim (`network` in shim.json) and as
//! the shim reports it back (`network.json` in the bundle). The shim performs it with netavark.
//! Runs in berthd, the CLI and berth-shim.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// What the shim sets up before it creates the container and tears down on every exit path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, from = "NetworkConfigWire")]
pub struct NetworkConfig {
    /// The netavark binary.
    pub netavark: PathBuf,
    /// aardvark-dns, which netavark starts for networks with `dns`; `None`: netavark's default.
    #[serde(default)]
    pub aardvark: Option<PathBuf>,
    /// netavark's `--config` directory; the address leases live below it (`leases/<network>/`).
    pub state_dir: PathBuf,
    /// Where the shim bind-mounts the container's network namespace; config.json names this path.
    pub netns: PathBuf,
    /// netavark's container id (64 hex digits, stable per container name): aardvark-dns keys
    /// its records by it. Empty in the earlier form: the container's name, as then.
    pub container_id: String,
    /// The networks the container joins, in interface order (`eth0`, `eth1`, ...).
    pub networks: Vec<NetworkAttachment>,
    /// `ports:` of the spec, in order.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

/// [`NetworkConfig`] as read: also the single-network form berthd wrote before named networks,
/// which a shim restarted by systemd alone after an upgrade still finds in its bundle.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkConfigWire {
    netavark: PathBuf,
    #[serde(default)]
    aardvark: Option<PathBuf>,
    state_dir: PathBuf,
    netns: PathBuf,
    #[serde(default)]
    container_id: String,
    #[serde(default)]
    networks: Vec<NetworkAttachment>,
    /// The earlier form: the default network alone.
    #[serde(default)]
    network: Option<EarlierBridge>,
    #[serde(default)]
    ports: Vec<PortMapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EarlierBridge {
    name: String,
    interface: String,
    subnet: String,
}

impl From<NetworkConfigWire> for NetworkConfig {
    fn from(w: NetworkConfigWire) -> Self {
        let mut networks = w.networks;
        if let Some(b) = w.network {
            // What that berthd meant: the gateway is the subnet's first address, the id the name.
            let gateway = parse_subnet(&b.subnet)
                .map(|(a, _)| Ipv4Addr::from(u32::from(a) + 1))
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            networks.push(NetworkAttachment {
                network: BridgeNetwork {
                    id: b.name.clone(),
                    name: b.name,
                    interface: b.interface,
                    subnet: b.subnet,
                    gateway,
                    internal: false,
                    dns: false,
                    isolate: false,
                    ipv6_subnet: None,
                },
                aliases: Vec::new(),
                ipv4_address: None,
            });
        }
        NetworkConfig {
            netavark: w.netavark,
            aardvark: w.aardvark,
            state_dir: w.state_dir,
            netns: w.netns,
            container_id: w.container_id,
            networks,
            ports: w.ports,
        }
    }
}

/// One network a container joins, and its place on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    pub network: BridgeNetwork,
    /// Extra names the container answers to on this network (its own name always).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A fixed address (`ipv4_address:`); `None`: the first free one.
    #[serde(default)]
    pub ipv4_address: Option<Ipv4Addr>,
}

/// A bridge network (netavark's `bridge` driver), with NAT to the outside unless `internal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeNetwork {
    pub name: String,
    /// netavark's network id (64 hex digits, stable per network name).
    pub id: String,
    /// The host's bridge interface.
    pub interface: String,
    /// IPv4 subnet, `a.b.c.d/len`.
    pub subnet: String,
    /// The bridge's address, the containers' default route and (with `dns`) their resolver.
    pub gateway: Ipv4Addr,
    /// No NAT and no route out.
    #[serde(default)]
    pub internal: bool,
    /// aardvark-dns answers the names of the containers on it.
    #[serde(default)]
    pub dns: bool,
    /// No traffic to or from other isolated networks (netavark's `isolate`, Docker's rule for
    /// user-defined networks).
    #[serde(default)]
    pub isolate: bool,
    /// IPv6 subnet, `addr/len`, when the network has IPv6; its gateway is its first address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_subnet: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port range: `range` consecutive host ports to as many container ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Host address to listen on; `None`: every address.
    #[serde(default)]
    pub host_ip: Option<IpAddr>,
    /// First host port; `None` asks for an ephemeral one (only with `range` 1).
    #[serde(default)]
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub range: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for PortMapping {
    /// Docker's `ps` spelling: `0.0.0.0:8080->80/tcp`, ranges as `a-b`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = |p: u16| {
            if self.range > 1 {
                format!("{p}-{}", p.saturating_add(self.range - 1))
            } else {
                p.to_string()
            }
        };
        let ip = self
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let host = self.host_port.map(span).unwrap_or_else(|| "?".into());
        write!(
            f,
            "{ip}:{host}->{}/{}",
            span(self.container_port),
            self.protocol.as_str()
        )
    }
}

/// What the shim set up, written to `<bundle>/network.json` once netavark is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// One per network joined, in interface order.
    pub networks: Vec<AttachmentStatus>,
    /// The published ports with the host ports actually taken (ephemeral ones filled in).
    pub ports: Vec<PortMapping>,
}

/// The container's place on one network, with the network's definition as it was joined (so
/// that a later edit of the declaration can be reported, not silently applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentStatus {
    pub network: String,
    /// The container's interface (`eth0`, ...).
    pub interface: String,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    /// The IPv6 address, on a network with IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub definition: BridgeNetwork,
}

impl NetworkStatus {
    /// Reads `<bundle>/network.json`; `None` when absent or unreadable (no network set up).
    pub fn load(bundle: &Path) -> Option<Self> {
        let text = std::fs::read(bundle.join(crate::NETWORK_STATUS_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The address on the first network (`eth0`), the one `ps` shows.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.networks.first().map(|a| a.address)
    }
}

/// Splits `a.b.c.d/len` into the network address and prefix length; the address must be the
/// network's first (no host bits), the length 8..=30 (room for a gateway and containers).
pub fn parse_subnet(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("invalid IPv4 subnet `{s}` (expected a.b.c.d/len, len 8 to 30)");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - len);
    if u32::from(addr) & !mask != 0 {
        return Err(format!(
            "subnet `{s}` has host bits set (the network is {}/{len})",
            Ipv4Addr::from(u32::from(addr) & mask)
        ));
    }
    Ok((addr, len))
}

/// Splits `addr/len` into the IPv6 network address and prefix length; the address must be the
/// network's first (no host bits), the length 48..=120 (room for a gateway and containers).
pub fn parse_subnet6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let bad = || format!("invalid IPv6 subnet `{s}` (expected addr/len, len 48 to 120)");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv6Addr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    if !(48..=120).contains(&len) {
        return Err(bad());
    }
    let mask = u128::MAX << (128 - len);
    if u128::from(addr) & !mask != 0 {
        return Err(format!(
            "subnet `{s}` has host bits set (the network is {}/{len})",
            Ipv6Addr::from(u128::from(addr) & mask)
        ));
    }
    Ok((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert_eq!(
            parse_subnet("10.89.0.0/24").unwrap(),
            ("10.89.0.0".parse().unwrap(), 24)
        );
        assert!(
            parse_subnet("10.89.0.1/24")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(parse_subnet("10.89.0.0/31").is_err());
        assert!(parse_subnet("10.89.0.0").is_err());
        assert!(parse_subnet("x/24").is_err());
    }

    #[test]
    fn the_earlier_single_network_form_still_reads() {
        let c: NetworkConfig = serde_json::from_str(
            r#"{"netavark": "/n", "state_dir": "/s", "netns": "/run/berth/netns/web",
                "network": {"name": "berth", "interface": "berth0", "subnet": "10.87.0.0/16"},
                "ports": []}"#,
        )
        .unwrap();
        assert_eq!(c.container_id, "");
        assert_eq!(c.networks.len(), 1);
        let n = &c.networks[0].network;
        assert_eq!((n.name.as_str(), n.id.as_str()), ("berth", "berth"));
        assert_eq!(n.gateway.to_string(), "10.87.0.1");
        assert!(!n.dns && !n.isolate);
        // The current form round-trips.
        let back: NetworkConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn ipv6_subnets() {
        let (a, l) = parse_subnet6("fd00:88:1::/64").unwrap();
        assert_eq!((a.to_string().as_str(), l), ("fd00:88:1::", 64));
        assert!(
            parse_subnet6("fd00:88:1::1/64")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(parse_subnet6("fd00::/32").is_err());
        assert!(parse_subnet6("10.0.0.0/24").is_err());
    }

    #[test]
    fn port_display() {
        let p = PortMapping {
            host_ip: None,
            host_port: Some(9000),
            container_port: 9000,
            range: 3,
            protocol: Protocol::Tcp,
        };
        assert_eq!(p.to_string(), "0.0.0.0:9000-9002->9000-9002/tcp");
        let p = PortMapping {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: Some(5353),
            container_port: 53,
            range: 1,
            protocol: Protocol::Udp,
        };
        assert_eq!(p.to_string(), "127.0.0.1:5353->53/udp");
    }
}

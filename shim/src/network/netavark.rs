//! netavark, podman's network tool, driven through its documented interface: the network and the
//! container's place on it as JSON on stdin, `netavark --config DIR setup|teardown NETNS_PATH`.
//! It makes the bridge, the veth pair, the address, the NAT and the port forwarding rules
//! (iptables or nftables, its choice). Runs in berth-shim, before the container exists and after
//! it is gone.

use berth_proto::{NetworkAttachment, PortMapping};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NetavarkError {
    #[error("waiting for netavark's lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("running {binary} {verb}: {source}")]
    Spawn {
        binary: String,
        verb: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("netavark {verb} failed ({status}): {message}")]
    Failed {
        verb: &'static str,
        status: std::process::ExitStatus,
        message: String,
    },
}

/// The container's place on one network: its address as the lease gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The IPv6 address and prefix length, on a network with IPv6.
    pub v6: Option<(Ipv6Addr, u8)>,
}

/// netavark's network options for one container on its networks (interfaces `eth0`, `eth1`,
/// ... in order), host ports resolved (no ephemeral ones left: netavark does not choose host
/// ports). The container's name is an alias on every network, for aardvark-dns.
pub fn options(
    container: &str,
    container_id: &str,
    nets: &[(&NetworkAttachment, Attachment)],
    ports: &[PortMapping],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            json!({
                "host_ip": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "container_port": p.container_port,
                "host_port": p.host_port.unwrap_or(p.container_port),
                "range": p.range,
                "protocol": p.protocol.as_str(),
            })
        })
        .collect();
    let mut networks = Map::new();
    let mut info = Map::new();
    for (i, (n, at)) in nets.iter().enumerate() {
        let net = &n.network;
        let subnet = Ipv4Addr::from(u32::from(at.address) & (u32::MAX << (32 - at.prefix_len)));
        let aliases: Vec<&str> = std::iter::once(container)
            .chain(n.aliases.iter().map(String::as_str))
            .collect();
        let mut ips = vec![at.address.to_string()];
        let mut subnets = vec![json!({
            "subnet": format!("{subnet}/{}", at.prefix_len),
            "gateway": net.gateway.to_string(),
        })];
        if let Some((a6, len6)) = at.v6 {
            let net6 = Ipv6Addr::from(u128::from(a6) & (u128::MAX << (128 - len6)));
            ips.push(a6.to_string());
            subnets.push(json!({
                "subnet": format!("{net6}/{len6}"),
                "gateway": Ipv6Addr::from(u128::from(net6) + 1).to_string(),
            }));
        }
        networks.insert(
            net.name.clone(),
            json!({
                "static_ips": ips,
                "aliases": aliases,
                "interface_name": format!("eth{i}"),
            }),
        );
        info.insert(
            net.name.clone(),
            json!({
                "name": net.name,
                "id": net.id,
                "driver": "bridge",
                "network_interface": net.interface,
                "subnets": subnets,
                "ipv6_enabled": at.v6.is_some(),
                "internal": net.internal,
                "dns_enabled": net.dns,
                "options": {"isolate": net.isolate.to_string()},
                "ipam_options": {"driver": "host-local"},
            }),
        );
    }
    json!({
        "container_id": container_id,
        "container_name": container,
        "port_mappings": ports,
        "networks": networks,
        "network_info": info,
    })
}

/// `netavark --config STATE [--aardvark-binary A] VERB NETNS` with `opts` on stdin, holding
/// netavark's lock (podman's, so that berth and podman on one host never run it at once: two
/// runs race on the same firewall chains, `iptables: Chain already exists`).
pub fn run(
    binary: &Path,
    aardvark: Option<&Path>,
    state_dir: &Path,
    verb: &'static str,
    netns: &Path,
    opts: &Value,
) -> Result<(), NetavarkError> {
    let spawn = |source| NetavarkError::Spawn {
        binary: binary.display().to_string(),
        verb,
        source,
    };
    let lock = berth_proto::netlock::NETAVARK_LOCK;
    let _held = berth_proto::netlock::NetavarkLock::acquire(Path::new(lock)).map_err(|source| {
        NetavarkError::Lock {
            path: lock.to_owned(),
            source,
        }
    })?;
    let mut cmd = Command::new(binary);
    cmd.arg("--config").arg(state_dir);
    if let Some(a) = aardvark {
        cmd.arg("--aardvark-binary").arg(a);
    }
    let mut child = cmd
        .arg(verb)
        .arg(netns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A netavark that exits early closes its stdin; its exit status says why.
        let _ = stdin.write_all(opts.to_string().as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetavarkError::Failed {
        verb,
        status: out.status,
        message: failure_message(&out.stdout, &out.stderr),
    })
}

/// netavark reports a failure as `{"error": "…"}` on stdout or as text on stderr.
fn failure_message(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout)
        && let Some(e) = v.get("error").and_then(Value::as_str)
    {
        return e.to_owned();
    }
    let text = format!(
        "{} {}",
        String::from_utf8_lossy(stderr).trim(),
        String::from_utf8_lossy(stdout).trim()
    );
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::{BridgeNetwork, Protocol};

    #[test]
    fn options_for_a_published_port_on_two_networks() {
        let net = |name: &str, gw: &str, dns: bool| NetworkAttachment {
            network: BridgeNetwork {
                name: name.into(),
                id: "ab".repeat(32),
                interface: format!("br-{name}"),
                subnet: "unused".into(),
                gateway: gw.parse().unwrap(),
                internal: !dns,
                dns,
                isolate: true,
                ipv6_subnet: None,
            },
            aliases: vec!["www".into()],
            ipv4_address: None,
        };
        let (a, b) = (
            net("front", "10.89.0.1", true),
            net("back", "10.90.0.1", false),
        );
        let at = |addr: &str| Attachment {
            address: addr.parse().unwrap(),
            prefix_len: 24,
            v6: None,
        };
        let ports = [PortMapping {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: Some(5353),
            container_port: 53,
            range: 1,
            protocol: Protocol::Udp,
        }];
        let v = options(
            "web",
            &"cd".repeat(32),
            &[
                (&a, at("10.89.0.7")),
                (
                    &b,
                    Attachment {
                        v6: Some(("fd00:90::2".parse().unwrap(), 64)),
                        ..at("10.90.0.2")
                    },
                ),
            ],
            &ports,
        );
        assert_eq!(v["container_id"], "cd".repeat(32));
        assert_eq!(v["networks"]["front"]["static_ips"][0], "10.89.0.7");
        assert_eq!(v["networks"]["front"]["interface_name"], "eth0");
        assert_eq!(v["networks"]["back"]["interface_name"], "eth1");
        assert_eq!(v["networks"]["front"]["aliases"], json!(["web", "www"]));
        let f = &v["network_info"]["front"];
        assert_eq!(f["subnets"][0]["subnet"], "10.89.0.0/24");
        assert_eq!(f["subnets"][0]["gateway"], "10.89.0.1");
        assert_eq!(f["network_interface"], "br-front");
        assert_eq!(f["dns_enabled"], true);
        assert_eq!(v["network_info"]["back"]["internal"], true);
        assert_eq!(f["options"]["isolate"], "true");
        assert_eq!(f["ipv6_enabled"], false);
        let b = &v["network_info"]["back"];
        assert_eq!(b["ipv6_enabled"], true);
        assert_eq!(b["subnets"][1]["subnet"], "fd00:90::/64");
        assert_eq!(b["subnets"][1]["gateway"], "fd00:90::1");
        assert_eq!(
            v["networks"]["back"]["static_ips"],
            json!(["10.90.0.2", "fd00:90::2"])
        );
        assert_eq!(v["port_mappings"][0]["host_ip"], "127.0.0.1");
        assert_eq!(v["port_mappings"][0]["host_port"], 5353);
        assert_eq!(v["port_mappings"][0]["protocol"], "udp");
    }

    #[test]
    fn failure_messages() {
        assert_eq!(failure_message(br#"{"error":"boom"}"#, b"ignored"), "boom");
        assert_eq!(failure_message(b"", b" text\n"), "text");
    }
}

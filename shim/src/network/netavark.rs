//! netavark, podman's network tool, driven through its documented interface: the network and the
//! container's place on it as JSON on stdin, `netavark --config DIR setup|teardown NETNS_PATH`.
//! It makes the bridge, the veth pair, the address, the NAT and the port forwarding rules
//! (iptables or nftables, its choice). Runs in berth-shim, before the container exists and after
//! it is gone.

use berth_proto::{BridgeNetwork, PortMapping};
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NetavarkError {
    #[error("running {binary} {verb}: {source}")]
    Spawn {
        binary: String,
        verb: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path} for netavark {verb}: {source}")]
    Lock {
        path: String,
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

/// The container's address on the network, as the lease gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

/// netavark's network options for one container on one bridge network, host ports resolved
/// (no ephemeral ones left: netavark does not choose host ports).
pub fn options(
    container: &str,
    net: &BridgeNetwork,
    at: Attachment,
    ports: &[PortMapping],
) -> Value {
    let subnet = Ipv4Addr::from(u32::from(at.address) & (u32::MAX << (32 - at.prefix_len)));
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
    json!({
        "container_id": container,
        "container_name": container,
        "port_mappings": ports,
        "networks": {
            net.name.as_str(): {
                "static_ips": [at.address.to_string()],
                "aliases": [container],
                "interface_name": "eth0",
            }
        },
        "network_info": {
            net.name.as_str(): {
                "name": net.name,
                "id": net.name,
                "driver": "bridge",
                "network_interface": net.interface,
                "subnets": [{
                    "subnet": format!("{subnet}/{}", at.prefix_len),
                    "gateway": at.gateway.to_string(),
                }],
                "ipv6_enabled": false,
                "internal": false,
                "dns_enabled": false,
                "ipam_options": {"driver": "host-local"},
            }
        },
    })
}

/// `netavark --config STATE VERB NETNS` with `opts` on stdin, one at a time per state directory:
/// netavark 1.4 does not serialise its own runs, and two shims setting up the first containers on a
/// bridge at once both try to create its firewall chains, and one fails ("Chain already exists").
/// podman takes a lock around netavark likewise. The lock is an flock, so a shim killed while
/// holding it releases it.
pub fn run(
    binary: &Path,
    state_dir: &Path,
    verb: &'static str,
    netns: &Path,
    opts: &Value,
) -> Result<(), NetavarkError> {
    let _lock = lock(state_dir, verb)?;
    let spawn = |source| NetavarkError::Spawn {
        binary: binary.display().to_string(),
        verb,
        source,
    };
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(state_dir)
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

/// An exclusive flock on `<state>/netavark.lock`, held until the returned file is dropped.
fn lock(state_dir: &Path, verb: &'static str) -> Result<Flock<File>, NetavarkError> {
    let path = state_dir.join("netavark.lock");
    let err = |source| NetavarkError::Lock {
        path: path.display().to_string(),
        verb,
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(err)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| err(e.into()))
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
    use berth_proto::Protocol;

    #[test]
    fn options_for_a_published_port() {
        let net = BridgeNetwork {
            name: "berth".into(),
            interface: "berth0".into(),
            subnet: "10.89.0.0/24".into(),
        };
        let at = Attachment {
            address: "10.89.0.7".parse().unwrap(),
            gateway: "10.89.0.1".parse().unwrap(),
            prefix_len: 24,
        };
        let ports = [PortMapping {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: Some(5353),
            container_port: 53,
            range: 1,
            protocol: Protocol::Udp,
        }];
        let v = options("web", &net, at, &ports);
        assert_eq!(v["networks"]["berth"]["static_ips"][0], "10.89.0.7");
        assert_eq!(
            v["network_info"]["berth"]["subnets"][0]["subnet"],
            "10.89.0.0/24"
        );
        assert_eq!(v["network_info"]["berth"]["network_interface"], "berth0");
        assert_eq!(v["port_mappings"][0]["host_ip"], "127.0.0.1");
        assert_eq!(v["port_mappings"][0]["host_port"], 5353);
        assert_eq!(v["port_mappings"][0]["protocol"], "udp");
    }

    #[test]
    fn netavark_runs_one_at_a_time_per_state_dir() {
        let d = tempfile::tempdir().unwrap();
        let held = lock(d.path(), "setup").unwrap();
        let f = File::open(d.path().join("netavark.lock")).unwrap();
        // A second lock on the same state directory would wait: try it without blocking.
        let f = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(_) => panic!("a second netavark run got the lock while the first held it"),
            Err((f, e)) => {
                assert_eq!(e, nix::errno::Errno::EWOULDBLOCK);
                f
            }
        };
        drop(held);
        assert!(Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn failure_messages() {
        assert_eq!(failure_message(br#"{"error":"boom"}"#, b"ignored"), "boom");
        assert_eq!(failure_message(b"", b" text\n"), "text");
    }
}

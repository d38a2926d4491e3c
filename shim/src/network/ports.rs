//! Published host ports held open by the shim for as long as the container runs, as podman does:
//! netavark's forwarding rules do not take a port, so without this a host process could bind a
//! published port (or two containers publish the same one) and nobody would be told. Binding
//! also picks ephemeral host ports. Runs in berth-shim.

use berth_proto::{PortMapping, Protocol};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("container {name}: host port {addr}/{protocol} is already in use")]
    InUse {
        name: String,
        addr: SocketAddr,
        protocol: &'static str,
    },
    #[error("container {name}: binding host port {addr}/{protocol}: {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        protocol: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("container {name}: host port range {first}+{range} goes past 65535")]
    Range {
        name: String,
        first: u16,
        range: u16,
    },
}

/// A held host port (closed when dropped).
#[derive(Debug)]
pub enum Reservation {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Reservation {
    fn port(&self) -> std::io::Result<u16> {
        match self {
            Reservation::Tcp(s) => s.local_addr().map(|a| a.port()),
            Reservation::Udp(s) => s.local_addr().map(|a| a.port()),
        }
    }
}

fn bind(name: &str, addr: SocketAddr, protocol: Protocol) -> Result<Reservation, PortError> {
    let r = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(Reservation::Tcp),
        Protocol::Udp => UdpSocket::bind(addr).map(Reservation::Udp),
    };
    r.map_err(|source| {
        let (name, protocol) = (name.to_owned(), protocol.as_str());
        if source.kind() == std::io::ErrorKind::AddrInUse {
            PortError::InUse {
                name,
                addr,
                protocol,
            }
        } else {
            PortError::Bind {
                name,
                addr,
                protocol,
                source,
            }
        }
    })
}

/// Binds every host port of `ports` and returns them held, with the mappings' ephemeral host
/// ports filled in.
pub fn reserve(
    name: &str,
    ports: &[PortMapping],
) -> Result<(Vec<Reservation>, Vec<PortMapping>), PortError> {
    let mut held = Vec::new();
    let mut out = Vec::new();
    for p in ports {
        let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut m = p.clone();
        match p.host_port {
            None => {
                let r = bind(name, SocketAddr::new(ip, 0), p.protocol)?;
                m.host_port = Some(r.port().map_err(|source| PortError::Bind {
                    name: name.to_owned(),
                    addr: SocketAddr::new(ip, 0),
                    protocol: p.protocol.as_str(),
                    source,
                })?);
                held.push(r);
            }
            Some(first) => {
                let range = p.range.max(1);
                if first.checked_add(range - 1).is_none() {
                    return Err(PortError::Range {
                        name: name.to_owned(),
                        first,
                        range,
                    });
                }
                for port in first..=first + (range - 1) {
                    held.push(bind(name, SocketAddr::new(ip, port), p.protocol)?);
                }
            }
        }
        out.push(m);
    }
    Ok((held, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host_port: Option<u16>, range: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port,
            container_port: 80,
            range,
            protocol,
        }
    }

    #[test]
    fn ephemeral_ports_are_filled_in_and_taken_ports_refused() {
        let (held, out) = reserve("w", &[m(None, 1, Protocol::Tcp)]).unwrap();
        let port = out[0].host_port.unwrap();
        assert_ne!(port, 0);
        // The port is held: a second container asking for it is told so.
        let e = reserve("x", &[m(Some(port), 1, Protocol::Tcp)]).unwrap_err();
        assert!(
            e.to_string().contains("already in use") && e.to_string().contains("container x"),
            "{e}"
        );
        drop(held);
        assert!(reserve("x", &[m(Some(port), 1, Protocol::Tcp)]).is_ok());
        assert!(matches!(
            reserve("x", &[m(Some(65535), 2, Protocol::Udp)]),
            Err(PortError::Range { .. })
        ));
    }
}

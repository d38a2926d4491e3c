//! The files a container sees at /etc/hosts, /etc/hostname and /etc/resolv.conf, as Docker writes
//! them: the host's on the host network; on the bridge the host's resolvers without the loopback
//! ones (a 127.0.0.0/8 resolver cannot answer from another network namespace). Runs in berthd.

use std::net::IpAddr;

/// Docker's fallback when no host resolver is usable from the bridge.
const FALLBACK_RESOLVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];
/// systemd-resolved's upstream servers, for hosts whose resolv.conf names only its stub.
const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The host's files, as read.
#[derive(Debug, Default)]
pub struct HostFiles {
    pub hosts: Option<String>,
    pub resolv: Option<String>,
    /// systemd-resolved's list of upstream servers.
    pub resolved_upstream: Option<String>,
}

impl HostFiles {
    pub fn read() -> Self {
        let r = |p| std::fs::read_to_string(p).ok();
        HostFiles {
            hosts: r("/etc/hosts"),
            resolv: r("/etc/resolv.conf"),
            resolved_upstream: r(RESOLVED_UPSTREAM),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: String,
    pub hostname: String,
    pub resolv: String,
}

/// `own_net`: the container has a network namespace; `bridge`: on bridge networks; `dns`: the
/// gateways of those with aardvark-dns, which then are the container's only resolvers (as
/// podman does: aardvark answers the network's names and forwards the rest to the host's
/// resolvers), with podman's search domain `dns.podman`. The container's own address is added to
/// `hosts` by the shim once it has one.
pub fn files(
    hostname: &str,
    own_net: bool,
    bridge: bool,
    dns: &[std::net::Ipv4Addr],
    host: &HostFiles,
) -> EtcFiles {
    let local = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned();
    let (hosts, resolv) = if !own_net {
        (
            host.hosts
                .clone()
                .unwrap_or_else(|| format!("{local}127.0.1.1\t{hostname}\n")),
            host.resolv.clone().unwrap_or_default(),
        )
    } else if bridge && !dns.is_empty() {
        (local, dns_resolv(dns, host))
    } else if bridge {
        (local, bridge_resolv(host))
    } else {
        (format!("{local}127.0.1.1\t{hostname}\n"), String::new())
    };
    EtcFiles {
        hosts,
        hostname: format!("{hostname}\n"),
        resolv,
    }
}

fn nameserver(line: &str) -> Option<&str> {
    let mut w = line.split_whitespace();
    (w.next() == Some("nameserver")).then(|| w.next()).flatten()
}

/// Usable from the bridge (IPv4, not loopback).
fn reachable(ns: &str) -> bool {
    matches!(ns.parse::<IpAddr>(), Ok(IpAddr::V4(a)) if !a.is_loopback())
}

/// aardvark-dns's addresses, podman's search domain, and the host's `options` lines.
fn dns_resolv(dns: &[std::net::Ipv4Addr], host: &HostFiles) -> String {
    let mut out = String::from("search dns.podman\n");
    for a in dns {
        out.push_str(&format!("nameserver {a}\n"));
    }
    for l in host.resolv.as_deref().unwrap_or_default().lines() {
        if l.split_whitespace().next() == Some("options") {
            out.push_str(&format!("{l}\n"));
        }
    }
    out
}

/// The host's resolv.conf with its loopback (and, the bridge being IPv4, IPv6) resolvers removed;
/// systemd-resolved's upstream list when the host names only its stub; Docker's fallback when
/// nothing is left.
fn bridge_resolv(host: &HostFiles) -> String {
    let base = host.resolv.as_deref().unwrap_or_default();
    let only_loopback = !base.lines().filter_map(nameserver).any(reachable);
    let base = match &host.resolved_upstream {
        Some(up) if only_loopback && up.lines().filter_map(nameserver).any(reachable) => up,
        _ => base,
    };
    let mut out: String = base
        .lines()
        .filter(|l| nameserver(l).is_none_or(reachable))
        .map(|l| format!("{l}\n"))
        .collect();
    if !out.lines().filter_map(nameserver).any(reachable) {
        for r in FALLBACK_RESOLVERS {
            out.push_str(&format!("nameserver {r}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(resolv: &str, upstream: Option<&str>) -> HostFiles {
        HostFiles {
            hosts: Some("127.0.0.1 localhost\n10.0.0.5 myhost\n".into()),
            resolv: Some(resolv.into()),
            resolved_upstream: upstream.map(Into::into),
        }
    }

    #[test]
    fn bridge_drops_loopback_resolvers() {
        let h = host(
            "search lan\nnameserver 127.0.0.1\nnameserver 192.168.1.1\nnameserver ::1\noptions ndots:2\n",
            None,
        );
        let f = files("web", true, true, &[], &h);
        assert_eq!(
            f.resolv,
            "search lan\nnameserver 192.168.1.1\noptions ndots:2\n"
        );
        assert!(!f.hosts.contains("myhost"));
        assert_eq!(f.hostname, "web\n");
    }

    #[test]
    fn resolved_stub_is_replaced_by_its_upstreams_then_by_the_fallback() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
        let f = files(
            "w",
            true,
            true,
            &[],
            &host(stub, Some("nameserver 10.1.1.1\n")),
        );
        assert_eq!(f.resolv, "nameserver 10.1.1.1\n");
        let f = files("w", true, true, &[], &host(stub, None));
        assert_eq!(
            f.resolv,
            "options edns0 trust-ad\nsearch .\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn host_and_isolated_networks() {
        let h = host("nameserver 127.0.0.1\n", None);
        let f = files("w", false, false, &[], &h);
        assert_eq!(f.resolv, "nameserver 127.0.0.1\n");
        assert!(f.hosts.contains("myhost"));
        let f = files("w", true, false, &[], &h);
        assert_eq!(f.resolv, "");
        assert!(f.hosts.contains("127.0.1.1\tw"));
    }

    #[test]
    fn dns_networks_resolve_through_aardvark() {
        let h = host(
            "nameserver 192.168.1.1\noptions ndots:2\nsearch lan\n",
            None,
        );
        let gw = ["10.88.1.1".parse().unwrap(), "10.88.2.1".parse().unwrap()];
        let f = files("w", true, true, &gw, &h);
        assert_eq!(
            f.resolv,
            "search dns.podman\nnameserver 10.88.1.1\nnameserver 10.88.2.1\noptions ndots:2\n"
        );
    }
}

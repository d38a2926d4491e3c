//! The pure decisions about named networks: which declarations are usable (names, subnets,
//! gateways, bridges, a network declared twice), the subnet a network without one gets, and the
//! attachments a container's `networks:` resolves to. Runs in berthd and `berth check`.

use super::{Declared, Found, Network};
use crate::spec::Networks;
use berth_proto::NetworkAttachment;
use berth_proto::network::parse_subnet;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

type Subnet = (Ipv4Addr, u8);

/// Names a network may not take: Compose's and Docker's special modes.
const RESERVED: &[&str] = &["host", "none", "bridge", "default"];

fn bad(problems: &mut BTreeMap<String, Vec<String>>, network: &str, message: String) {
    problems
        .entry(network.to_owned())
        .or_default()
        .push(message);
}

fn hex_id(kind: &str, name: &str) -> String {
    let d = Sha256::digest(format!("berth-{kind}:{name}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// netavark's id of a network (64 hex digits, stable per name).
pub fn network_id(name: &str) -> String {
    hex_id("network", name)
}

/// netavark's id of a container (64 hex digits, stable per name): aardvark-dns keys its records
/// by it, so a restarted shim finds and replaces its own.
pub fn container_id(name: &str) -> String {
    hex_id("container", name)
}

fn last(s: Subnet) -> u32 {
    u32::from(s.0) | (u32::MAX >> s.1)
}

pub fn overlaps(a: Subnet, b: Subnet) -> bool {
    u32::from(a.0) <= last(b) && u32::from(b.0) <= last(a)
}

/// A network name: what a file name and a container name carry, and not a special mode.
fn check_name(name: &str, default: &str) -> Result<(), String> {
    if !crate::spec::is_valid_name(name) {
        return Err(format!(
            "`{name}` is not a valid network name (letters, digits, `_`, `.` or `-`, starting with a letter or digit, at most 64 characters)"
        ));
    }
    if RESERVED.contains(&name) || name == default {
        return Err(format!("`{name}` is a reserved network name"));
    }
    Ok(())
}

/// The bridge a network gets: `br-<name>` when that fits Linux's 15 characters, else
/// `br-` and a hash of the name.
fn interface_for(name: &str) -> String {
    let i = format!("br-{name}");
    if i.len() <= 15 {
        i
    } else {
        format!("br-{}", &network_id(name)[..12])
    }
}

fn check_interface(i: &str) -> Result<(), String> {
    if i.is_empty()
        || i.len() > 15
        || !i
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "interface `{i}` is not a valid bridge name (1 to 15 letters, digits, `-`, `_`, `.`)"
        ));
    }
    Ok(())
}

/// A free /24 of `pool` (the pool itself when it is smaller), probing from a slot chosen by the
/// name, so that a network keeps its subnet across restarts while the declarations stay the same.
pub fn choose_subnet(pool: Subnet, taken: &[Subnet], name: &str) -> Option<Subnet> {
    let len = pool.1.max(24);
    let slots = 1u32 << (len - pool.1);
    let seed = u32::from_be_bytes(
        Sha256::digest(name.as_bytes())[..4]
            .try_into()
            .expect("4 bytes"),
    );
    (0..slots)
        .map(|i| {
            let slot = (seed.wrapping_add(i)) % slots;
            (
                Ipv4Addr::from(u32::from(pool.0) + (slot << (32 - len))),
                len,
            )
        })
        .find(|s| !taken.iter().any(|t| overlaps(*s, *t)))
}

/// The gateway: the given one inside the subnet (not its network or broadcast address), else the
/// subnet's first address.
fn gateway(subnet: Subnet, given: Option<Ipv4Addr>) -> Result<Ipv4Addr, String> {
    let first = u32::from(subnet.0) + 1;
    match given {
        None => Ok(Ipv4Addr::from(first)),
        Some(g) if (first..last(subnet)).contains(&u32::from(g)) => Ok(g),
        Some(g) => Err(format!(
            "gateway {g} is not a host address of {}/{}",
            subnet.0, subnet.1
        )),
    }
}

/// One declaration on its own: its name, what berth does not do yet, its bridge name, its
/// subnet (returned when given).
fn check_decl(name: &str, d: &super::NetworkDecl, default: &str) -> Result<Option<Subnet>, String> {
    check_name(name, default)?;
    if let Some(s) = &d.ipv6_subnet {
        berth_proto::network::parse_subnet6(s).map_err(|m| format!("network {name}: {m}"))?;
    }
    if let Some(i) = &d.interface {
        check_interface(i).map_err(|m| format!("network {name}: {m}"))?;
    }
    d.subnet
        .as_deref()
        .map(parse_subnet)
        .transpose()
        .map_err(|m| format!("network {name}: {m}"))
}

/// Explicit subnets that overlap the default network's or each other's (both are refused: which
/// one is wrong is the operator's call), by network, naming the files.
fn overlap_problems(
    explicit: &BTreeMap<String, Subnet>,
    by_name: &BTreeMap<String, Found>,
    default: &Network,
    default_subnet: Subnet,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, s) in explicit {
        let at = by_name[name].source.display();
        if overlaps(*s, default_subnet) {
            out.push((
                name.clone(),
                format!(
                    "{at}: network {name}: subnet {}/{} overlaps the default network {} ({}, {})",
                    s.0,
                    s.1,
                    default.name,
                    default.subnet,
                    default.source.display()
                ),
            ));
        }
        for (other, o) in explicit.iter().filter(|(o, _)| *o != name) {
            if overlaps(*s, *o) {
                out.push((
                    name.clone(),
                    format!(
                        "{at}: network {name}: subnet {}/{} overlaps network {other}'s {}/{} ({})",
                        s.0,
                        s.1,
                        o.0,
                        o.1,
                        by_name[other].source.display()
                    ),
                ));
            }
        }
    }
    out
}

/// IPv6 subnets that overlap each other's, by network (both are refused).
fn overlap6_problems(
    ok: &BTreeMap<String, (&Found, &super::NetworkDecl)>,
) -> Vec<(String, String)> {
    let v6: Vec<(&String, &Found, (std::net::Ipv6Addr, u8))> = ok
        .iter()
        .filter_map(|(n, (f, d))| {
            let s = berth_proto::network::parse_subnet6(d.ipv6_subnet.as_deref()?).ok()?;
            Some((n, *f, s))
        })
        .collect();
    let last6 = |s: (std::net::Ipv6Addr, u8)| u128::from(s.0) | (u128::MAX >> s.1);
    let mut out = Vec::new();
    for (name, f, s) in &v6 {
        for (other, g, o) in v6.iter().filter(|(o, _, _)| o != name) {
            if u128::from(s.0) <= last6(*o) && u128::from(o.0) <= last6(*s) {
                out.push((
                    (*name).clone(),
                    format!(
                        "{}: network {name}: ipv6_subnet {}/{} overlaps network {other}'s {}/{} ({})",
                        f.source.display(),
                        s.0,
                        s.1,
                        o.0,
                        o.1,
                        g.source.display()
                    ),
                ));
            }
        }
    }
    out
}

/// Judges every declaration: the usable networks and, by name, why the others are not.
pub fn declare(found: Vec<Found>, pool: &str, default: &Network) -> Declared {
    let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sources: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut by_name: BTreeMap<String, Found> = BTreeMap::new();
    for f in found {
        sources
            .entry(f.name.clone())
            .or_default()
            .push(f.source.clone());
        if let Some(prev) = by_name.get(&f.name) {
            bad(
                &mut problems,
                &f.name,
                format!(
                    "network {} is declared twice: {} and {}; keep one",
                    f.name,
                    prev.source.display(),
                    f.source.display()
                ),
            );
            continue;
        }
        by_name.insert(f.name.clone(), f);
    }
    let default_subnet = parse_subnet(&default.subnet).unwrap_or((Ipv4Addr::UNSPECIFIED, 8));
    // Explicit subnets first; the pool then avoids all of them (usable or not).
    let mut explicit: BTreeMap<String, Subnet> = BTreeMap::new();
    let mut ok: BTreeMap<String, (&Found, &super::NetworkDecl)> = BTreeMap::new();
    for (name, f) in &by_name {
        if problems.contains_key(name) {
            continue;
        }
        let judged = f.decl.as_ref().map_err(|e| e.to_string()).and_then(|d| {
            check_decl(name, d, &default.name)
                .map(|s| (d, s))
                .map_err(|m| format!("{}: {m}", f.source.display()))
        });
        match judged {
            Ok((d, subnet)) => {
                if let Some(s) = subnet {
                    explicit.insert(name.clone(), s);
                }
                ok.insert(name.clone(), (f, d));
            }
            Err(m) => bad(&mut problems, name, m),
        }
    }
    for (name, m) in overlap_problems(&explicit, &by_name, default, default_subnet) {
        bad(&mut problems, &name, m);
    }
    for (name, m) in overlap6_problems(&ok) {
        bad(&mut problems, &name, m);
    }
    let pool = parse_subnet(pool).ok();
    let mut taken: Vec<Subnet> = explicit.values().copied().collect();
    taken.push(default_subnet);
    let mut networks = BTreeMap::new();
    for (name, (f, d)) in ok {
        if problems.contains_key(&name) {
            continue;
        }
        let at = f.source.display();
        let subnet = match explicit.get(&name) {
            Some(s) => *s,
            None => match pool.and_then(|p| choose_subnet(p, &taken, &name)) {
                Some(s) => {
                    taken.push(s);
                    s
                }
                None => {
                    bad(
                        &mut problems,
                        &name,
                        format!(
                            "{at}: network {name}: no free /24 left in the pool; give it a `subnet`"
                        ),
                    );
                    continue;
                }
            },
        };
        let gw = match gateway(subnet, d.gateway) {
            Ok(g) => g,
            Err(m) => {
                bad(&mut problems, &name, format!("{at}: network {name}: {m}"));
                continue;
            }
        };
        networks.insert(
            name.clone(),
            Network {
                interface: d.interface.clone().unwrap_or_else(|| interface_for(&name)),
                name,
                source: f.source.clone(),
                subnet: format!("{}/{}", subnet.0, subnet.1),
                gateway: gw,
                internal: d.internal,
                dns: d.dns,
                labels: d.labels.clone(),
                default: false,
                ipv6_subnet: d.ipv6_subnet.clone(),
            },
        );
    }
    // Two networks on one bridge would be one network: refuse both.
    let mut clash: Vec<(String, String)> = Vec::new();
    for (a, n) in &networks {
        let other = networks
            .iter()
            .find(|(b, m)| *b != a && m.interface == n.interface)
            .map(|(b, _)| b.clone())
            .or_else(|| (n.interface == default.interface).then(|| default.name.clone()));
        if let Some(b) = other {
            clash.push((a.clone(), b));
        }
    }
    for (a, b) in clash {
        let n = networks.remove(&a).expect("listed above");
        bad(
            &mut problems,
            &a,
            format!(
                "{}: network {a}: bridge {} is network {b}'s too",
                n.source.display(),
                n.interface
            ),
        );
    }
    Declared {
        default: default.clone(),
        networks,
        problems,
        sources,
        dir: PathBuf::new(),
    }
}

/// Why a container cannot join: which network, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    pub network: String,
    pub message: String,
}

/// The networks a bridge container joins, in interface order: those `networks:` names, else
/// the default one.
pub fn attachments(
    wanted: &Networks,
    declared: &Declared,
) -> Result<Vec<NetworkAttachment>, JoinError> {
    if wanted.0.is_empty() {
        return Ok(vec![NetworkAttachment {
            network: declared.default.bridge(),
            aliases: Vec::new(),
            ipv4_address: None,
        }]);
    }
    wanted
        .0
        .iter()
        .map(|(name, join)| {
            let err = |message: String| JoinError {
                network: name.clone(),
                message,
            };
            let net = if *name == declared.default.name {
                &declared.default
            } else if let Some(n) = declared.networks.get(name) {
                n
            } else if let Some(p) = declared.problems.get(name) {
                return Err(err(format!(
                    "network {name} is not usable: {}",
                    p.join("; ")
                )));
            } else {
                return Err(err(format!("network {name} is not declared")));
            };
            if let Some(a) = join.ipv4_address {
                let s = parse_subnet(&net.subnet).map_err(err)?;
                let inside = u32::from(a) > u32::from(s.0) && u32::from(a) < last(s);
                if !inside {
                    return Err(err(format!(
                        "ipv4_address {a} is not a host address of network {name}'s {}",
                        net.subnet
                    )));
                }
                if a == net.gateway {
                    return Err(err(format!("ipv4_address {a} is network {name}'s gateway")));
                }
            }
            Ok(NetworkAttachment {
                network: net.bridge(),
                aliases: join.aliases.clone(),
                ipv4_address: join.ipv4_address,
            })
        })
        .collect()
}

/// Static addresses asked for twice on one network (`ipv4_address:` in two specs): each spec
/// after the first that asks for it, with the message. `specs` in file order.
pub fn address_clashes<'a>(
    specs: impl IntoIterator<Item = (&'a str, &'a Networks)>,
) -> Vec<(String, String)> {
    let mut seen: BTreeMap<(String, Ipv4Addr), &str> = BTreeMap::new();
    let mut out = Vec::new();
    for (container, nets) in specs {
        for (net, join) in &nets.0 {
            let Some(a) = join.ipv4_address else { continue };
            match seen.get(&(net.clone(), a)) {
                Some(first) => out.push((
                    container.to_owned(),
                    format!("ipv4_address {a} on network {net} is container {first}'s too"),
                )),
                None => {
                    seen.insert((net.clone(), a), container);
                }
            }
        }
    }
    out
}

//! What `berth network ls|inspect` shows: each network's definition, the containers on it with
//! their addresses (from what their shims report), and its problems: unusable, edited since
//! containers joined it, removed while containers use it. A pure function of the declarations
//! and the shims' reports. Runs in berthd (the API).

use super::Declared;
use berth_proto::NetworkStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkReport {
    pub name: String,
    /// The declaring files (several when declared twice); empty for a removed declaration.
    pub sources: Vec<String>,
    pub subnet: Option<String>,
    pub gateway: Option<Ipv4Addr>,
    pub interface: Option<String>,
    pub internal: Option<bool>,
    pub dns: Option<bool>,
    pub labels: BTreeMap<String, String>,
    pub default: bool,
    #[serde(default)]
    pub ipv6_subnet: Option<String>,
    pub containers: Vec<Member>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub container: String,
    pub interface: String,
    pub address: Ipv4Addr,
    pub aliases: Vec<String>,
}

/// Every network declared or in use, by name; `running` is each container's network.json.
pub fn report(declared: &Declared, running: &[(String, NetworkStatus)]) -> Vec<NetworkReport> {
    let mut out: BTreeMap<String, NetworkReport> = BTreeMap::new();
    let empty = |name: &str| NetworkReport {
        name: name.to_owned(),
        sources: Vec::new(),
        subnet: None,
        gateway: None,
        interface: None,
        internal: None,
        dns: None,
        labels: BTreeMap::new(),
        default: false,
        ipv6_subnet: None,
        containers: Vec::new(),
        problems: Vec::new(),
    };
    for n in std::iter::once(&declared.default).chain(declared.networks.values()) {
        let mut r = empty(&n.name);
        r.sources = vec![n.source.display().to_string()];
        r.subnet = Some(n.subnet.clone());
        r.gateway = Some(n.gateway);
        r.interface = Some(n.interface.clone());
        r.internal = Some(n.internal);
        r.dns = Some(n.dns);
        r.labels = n.labels.clone();
        r.default = n.default;
        r.ipv6_subnet = n.ipv6_subnet.clone();
        out.insert(n.name.clone(), r);
    }
    for (name, problems) in &declared.problems {
        let r = out.entry(name.clone()).or_insert_with(|| empty(name));
        r.sources = declared
            .sources
            .get(name)
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        r.problems.extend(problems.iter().cloned());
    }
    // Who joined what they joined with: a definition that differs now was edited since.
    let mut stale: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (container, st) in running {
        for a in &st.networks {
            let current = if a.network == declared.default.name {
                Some(declared.default.bridge())
            } else {
                declared.networks.get(&a.network).map(|n| n.bridge())
            };
            if current.as_ref().is_some_and(|c| *c != a.definition) {
                stale
                    .entry(a.network.clone())
                    .or_default()
                    .push(container.clone());
            }
            let r = out.entry(a.network.clone()).or_insert_with(|| {
                let mut r = empty(&a.network);
                r.subnet = Some(a.definition.subnet.clone());
                r.gateway = Some(a.definition.gateway);
                r.interface = Some(a.definition.interface.clone());
                r.internal = Some(a.definition.internal);
                r.dns = Some(a.definition.dns);
                r
            });
            r.containers.push(Member {
                container: container.clone(),
                interface: a.interface.clone(),
                address: a.address,
                aliases: a.aliases.clone(),
            });
        }
    }
    for r in out.values_mut() {
        let names: Vec<&str> = r.containers.iter().map(|m| m.container.as_str()).collect();
        if r.sources.is_empty() && !names.is_empty() {
            r.problems.push(format!(
                "network {} is no longer declared but {} still use it; it stays until they stop",
                r.name,
                names.join(", ")
            ));
        }
        if let Some(c) = stale.get(&r.name) {
            r.problems.push(format!(
                "network {} changed since {} joined; restart them to apply",
                r.name,
                c.join(", ")
            ));
        }
    }
    out.into_values().collect()
}

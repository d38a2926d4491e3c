//! `networks:` of a container spec in Compose's syntax: a list of network names, or a map of
//! name to `{aliases: [..], ipv4_address: a.b.c.d}` (or nothing). The one grammar of a
//! container's networks; `crate::network` resolves the names. Runs wherever specs are parsed.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The networks a container joins, by name (their interfaces follow this order: `eth0` is the
/// first name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Networks(pub BTreeMap<String, NetworkJoin>);

impl Networks {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The container's place on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkJoin {
    /// Extra names it answers to there (its own name always).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<Ipv4Addr>,
}

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Networks;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of network names or a map of name to {aliases, ipv4_address}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Networks, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(n) = a.next_element::<String>()? {
                    if out.insert(n.clone(), NetworkJoin::default()).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "network `{n}` is listed twice"
                        )));
                    }
                }
                Ok(Networks(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Networks, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((n, j)) = a.next_entry::<String, Option<NetworkJoin>>()? {
                    if out.insert(n.clone(), j.unwrap_or_default()).is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "network `{n}` is listed twice"
                        )));
                    }
                }
                Ok(Networks(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_map_forms() {
        let n: Networks = serde_norway::from_str("[front, back]").unwrap();
        assert_eq!(n.0.keys().collect::<Vec<_>>(), ["back", "front"]);
        let n: Networks =
            serde_norway::from_str("front:\nback: {aliases: [db], ipv4_address: 10.88.1.5}\n")
                .unwrap();
        assert_eq!(n.0["front"], NetworkJoin::default());
        assert_eq!(n.0["back"].aliases, ["db"]);
        assert_eq!(n.0["back"].ipv4_address, Some("10.88.1.5".parse().unwrap()));
        assert!(serde_norway::from_str::<Networks>("[a, a]").is_err());
        assert!(serde_norway::from_str::<Networks>("{a: {alias: [x]}}").is_err());
        assert!(serde_norway::from_str::<Networks>("{a: {ipv4_address: 300.1.1.1}}").is_err());
    }
}

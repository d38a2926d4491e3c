//! Value types of `healthcheck:` and `depends_on:` in Compose's spelling, validated while they are
//! deserialized. Parsed in berthd and `berth`.

use super::types::{Duration, TextSeed, check_name};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `healthcheck:` as Compose writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckSpec {
    #[serde(default)]
    pub test: Option<HealthTest>,
    #[serde(default)]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<Duration>,
    #[serde(default)]
    pub disable: bool,
}

/// A healthcheck `test`: `["CMD", …]`, `["CMD-SHELL", "…"]`, `["NONE"]`, or a string (shell form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthTest {
    None,
    Cmd(Vec<String>),
    Shell(String),
}

impl HealthTest {
    /// Parses Docker's array form (also what image configs carry).
    pub fn from_docker(v: &[String]) -> Result<Self, String> {
        match v.split_first() {
            Some((k, rest)) if k == "NONE" && rest.is_empty() => Ok(HealthTest::None),
            Some((k, rest)) if k == "CMD" && !rest.is_empty() => Ok(HealthTest::Cmd(rest.to_vec())),
            Some((k, [cmd])) if k == "CMD-SHELL" => Ok(HealthTest::Shell(cmd.clone())),
            _ => Err(format!(
                "invalid healthcheck test {v:?}: expected [\"CMD\", args…], [\"CMD-SHELL\", \"command\"] or [\"NONE\"]"
            )),
        }
    }

    /// The argv the shim runs inside the container.
    pub fn argv(&self) -> Option<Vec<String>> {
        match self {
            HealthTest::None => None,
            HealthTest::Cmd(v) => Some(v.clone()),
            HealthTest::Shell(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
        }
    }
}

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HealthTest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command string or a list like [\"CMD\", \"curl\", \"-f\", \"http://localhost/\"]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HealthTest, E> {
                Ok(HealthTest::Shell(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HealthTest, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element_seed(TextSeed)? {
                    out.push(s);
                }
                HealthTest::from_docker(&out).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `depends_on:` condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
    /// When false, a missing dependency does not keep this container from starting (Wants= instead
    /// of Requires=).
    #[serde(default = "yes")]
    pub required: bool,
    /// Restart this container when the dependency restarts (PartOf-like); Compose's `restart`.
    #[serde(default)]
    pub restart: bool,
}

fn yes() -> bool {
    true
}

/// `depends_on:` as a list of names or a map of name → {condition, required, restart}.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DependsOn(pub BTreeMap<String, Dependency>);

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of container names or a map of name: {condition: …}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(n) = seq.next_element::<String>()? {
                    check_name::<A::Error>(&n)?;
                    out.insert(
                        n,
                        Dependency {
                            required: true,
                            ..Default::default()
                        },
                    );
                }
                Ok(DependsOn(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(n) = map.next_key::<String>()? {
                    check_name::<A::Error>(&n)?;
                    let dep: Dependency = map.next_value()?;
                    out.insert(n, dep);
                }
                Ok(DependsOn(out))
            }
        }
        d.deserialize_any(V)
    }
}

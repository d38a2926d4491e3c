//! Networks as Docker shows them: berth's named networks (declared in files, or through this API
//! in berthd's state dir), its default bridge as Docker's `bridge`, and `host` and `none` as
//! Docker's other predefined networks. Create, list, inspect, remove, prune, and connect or
//! disconnect an API container, which changes its spec's `networks:` and so restarts it
//! (Docker plugs an interface into the running container instead). Runs in berthd.

use super::containers::{container_id, parse_filters};
use super::{DockerError, Shared, call};
use crate::api::{ErrorKind, Request};
use crate::network::report::NetworkReport;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A network as the Docker API names it: berth's default network is Docker's `bridge`.
pub(super) struct Net {
    pub(super) name: String,
    pub(super) driver: &'static str,
    pub(super) report: Option<NetworkReport>,
}

impl Net {
    fn id(&self) -> String {
        crate::network::network_id(&self.name)
    }
    fn builtin(&self) -> bool {
        self.report.as_ref().is_none_or(|r| r.default)
    }
    fn labels(&self) -> BTreeMap<String, String> {
        self.report
            .as_ref()
            .map(|r| r.labels.clone())
            .unwrap_or_default()
    }
    /// Docker's Network object.
    fn doc(&self) -> Value {
        let r = self.report.as_ref();
        let mut ipam = Vec::new();
        if let Some(r) = r {
            if let Some(s) = &r.subnet {
                ipam.push(json!({"Subnet": s, "Gateway": r.gateway.map(|g| g.to_string()).unwrap_or_default()}));
            }
            if let Some(s) = &r.ipv6_subnet {
                ipam.push(json!({"Subnet": s}));
            }
        }
        let containers: Map<String, Value> = r
            .iter()
            .flat_map(|r| &r.containers)
            .map(|m| {
                let prefix = r
                    .and_then(|r| r.subnet.as_deref())
                    .and_then(|s| s.split_once('/'))
                    .map_or("", |(_, p)| p);
                (
                    container_id(&m.container),
                    json!({"Name": m.container, "EndpointID": "", "MacAddress": "",
                           "IPv4Address": format!("{}/{prefix}", m.address), "IPv6Address": ""}),
                )
            })
            .collect();
        let mut options = Map::new();
        if let Some(i) = r.and_then(|r| r.interface.as_ref()) {
            options.insert("com.docker.network.bridge.name".into(), json!(i));
        }
        json!({
            "Name": self.name,
            "Id": self.id(),
            "Created": "0001-01-01T00:00:00Z",
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": self.driver == "bridge",
            "EnableIPv6": r.is_some_and(|r| r.ipv6_subnet.is_some()),
            "IPAM": {"Driver": "default", "Options": {}, "Config": ipam},
            "Internal": r.and_then(|r| r.internal).unwrap_or(false),
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": self.labels(),
            "Berth": {"Sources": r.map(|r| r.sources.clone()).unwrap_or_default(),
                      "Problems": r.map(|r| r.problems.clone()).unwrap_or_default()},
        })
    }
}

/// Every network the API shows: Docker's predefined three first.
pub(super) async fn all(b: &Shared) -> Result<Vec<Net>, DockerError> {
    let reports: Vec<NetworkReport> = serde_json::from_value(call(b, Request::Networks).await?)
        .map_err(|e| DockerError::Internal(format!("network list: {e}")))?;
    let mut out = Vec::new();
    let mut named = Vec::new();
    for r in reports {
        if r.default {
            out.insert(
                0,
                Net {
                    name: "bridge".into(),
                    driver: "bridge",
                    report: Some(r),
                },
            );
        } else {
            named.push(Net {
                name: r.name.clone(),
                driver: "bridge",
                report: Some(r),
            });
        }
    }
    for (name, driver) in [("host", "host"), ("none", "null")] {
        out.push(Net {
            name: name.into(),
            driver,
            report: None,
        });
    }
    out.extend(named);
    Ok(out)
}

/// The network `id` names: a name, a full ID or a unique ID prefix.
pub(super) fn resolve(nets: Vec<Net>, id: &str) -> Result<Net, DockerError> {
    let missing = || DockerError::Backend {
        kind: ErrorKind::NotFound,
        message: format!("network {id} not found"),
    };
    if let Some(i) = nets.iter().position(|n| n.name == id || n.id() == id) {
        return Ok(nets.into_iter().nth(i).expect("found"));
    }
    let mut hits: Vec<Net> = nets
        .into_iter()
        .filter(|n| !id.is_empty() && n.id().starts_with(id))
        .collect();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(missing()),
        _ => Err(DockerError::BadRequest(format!(
            "network {id} is ambiguous ({} matches found based on ID prefix)",
            hits.len()
        ))),
    }
}

/// Whether `n` passes Docker's network filters.
fn matches(filters: &BTreeMap<String, Vec<String>>, n: &Net) -> Result<bool, DockerError> {
    for (key, values) in filters {
        let any = |pred: &dyn Fn(&str) -> bool| values.iter().any(|x| pred(x));
        let labels = n.labels();
        let ok = match key.as_str() {
            "name" => any(&|x| n.name.contains(x)),
            "id" => any(&|x| n.id().starts_with(x)),
            "driver" => any(&|x| x == n.driver),
            "scope" => any(&|x| x == "local"),
            "type" => any(&|x| (x == "builtin") == n.builtin()),
            "dangling" => {
                let unused = n.report.as_ref().is_none_or(|r| r.containers.is_empty());
                any(&|x| matches!(x, "true" | "1") == unused)
            }
            "label" => any(&|x| match x.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|l| l == v),
                None => labels.contains_key(x),
            }),
            other => {
                return Err(DockerError::BadRequest(format!(
                    "invalid filter '{other}' (berth filters networks on name, id, driver, scope, type, dangling and label)"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    filters: Option<String>,
}

/// `GET /networks`.
pub async fn list(
    State(b): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let filters = parse_filters(q.filters.as_deref())?;
    let mut out = Vec::new();
    for n in all(&b).await? {
        if matches(&filters, &n)? {
            out.push(n.doc());
        }
    }
    Ok(Json(out))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    Ok(Json(resolve(all(&b).await?, &id)?.doc()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    config: Option<Vec<IpamConfig>>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    #[serde(default)]
    subnet: String,
    #[serde(default)]
    gateway: String,
    #[serde(default, rename = "IPRange")]
    ip_range: String,
    #[serde(default)]
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    internal: bool,
    #[serde(default, rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(default, rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(default)]
    options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    /// Every other field (Attachable, Ingress, ConfigOnly, Scope, ...): only at its zero value.
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// The network file (berth's format) for a create request; what berth cannot honour is refused
/// by name.
pub fn decl_of(b: &CreateBody) -> Result<Value, DockerError> {
    let no = |what: String| {
        DockerError::BadRequest(format!("berth does not support {what} on a network"))
    };
    if !matches!(b.driver.as_str(), "" | "bridge") {
        return Err(no(format!("the {} driver (only bridge)", b.driver)));
    }
    let set = b.other.iter().find(|(k, v)| {
        !matches!(k.as_str(), "CheckDuplicate" | "Scope" | "EnableIPv4")
            && !matches!(v, Value::Null | Value::Bool(false))
            && v.as_str() != Some("")
            && v.as_object().is_none_or(|o| !o.is_empty())
    });
    if let Some((k, _)) = set {
        return Err(no(k.clone()));
    }
    let mut d = Map::new();
    for (k, v) in b.options.iter().flatten() {
        match k.as_str() {
            "com.docker.network.bridge.name" => {
                d.insert("interface".into(), json!(v));
            }
            _ => return Err(no(format!("the option {k}"))),
        }
    }
    let ipam = b.ipam.as_ref();
    if let Some(i) = ipam {
        if !matches!(i.driver.as_str(), "" | "default") {
            return Err(no(format!("the {} IPAM driver", i.driver)));
        }
        if i.options.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(no("IPAM options".into()));
        }
    }
    for c in ipam.and_then(|i| i.config.as_ref()).into_iter().flatten() {
        if !c.ip_range.is_empty()
            || c.auxiliary_addresses
                .as_ref()
                .is_some_and(|a| !a.is_empty())
        {
            return Err(no("IPRange or AuxiliaryAddresses".into()));
        }
        if c.subnet.contains(':') {
            if !c.gateway.is_empty() {
                return Err(no(
                    "an IPv6 gateway (it is the subnet's first address)".into()
                ));
            }
            d.insert("ipv6_subnet".into(), json!(c.subnet));
        } else {
            if !c.subnet.is_empty() {
                d.insert("subnet".into(), json!(c.subnet));
            }
            if !c.gateway.is_empty() {
                d.insert("gateway".into(), json!(c.gateway));
            }
        }
    }
    if b.enable_ipv6 == Some(true) && !d.contains_key("ipv6_subnet") {
        return Err(DockerError::BadRequest(
            "EnableIPv6 needs an IPv6 subnet (--ipv6 --subnet fd00:…/64): berth has no IPv6 pool"
                .into(),
        ));
    }
    if b.internal {
        d.insert("internal".into(), json!(true));
    }
    if let Some(l) = b.labels.as_ref().filter(|l| !l.is_empty()) {
        d.insert("labels".into(), json!(l));
    }
    Ok(Value::Object(d))
}

/// `POST /networks/create`: 201 with the new network's ID.
pub async fn create(
    State(b): State<Shared>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let decl = decl_of(&body)?;
    let yaml = if decl.as_object().is_some_and(|o| o.is_empty()) {
        String::new()
    } else {
        serde_norway::to_string(&decl)
            .map_err(|e| DockerError::Internal(format!("network {}: {e}", body.name)))?
    };
    call(
        &b,
        Request::NetworkCreate {
            name: body.name.clone(),
            yaml,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": crate::network::network_id(&body.name), "Warning": ""})),
    ))
}

/// `DELETE /networks/{id}`: 204.
pub async fn remove(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    let n = resolve(all(&b).await?, &id)?;
    if n.builtin() {
        return Err(DockerError::Backend {
            kind: ErrorKind::Conflict,
            message: format!("{} is a pre-defined network and cannot be removed", n.name),
        });
    }
    call(&b, Request::NetworkRemove { name: n.name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /networks/prune`: the API-declared networks no container's spec names.
pub async fn prune(
    State(b): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, DockerError> {
    let filters = parse_filters(q.filters.as_deref())?;
    let mut deleted = Vec::new();
    for n in all(&b).await? {
        if n.builtin() || !matches(&filters, &n)? {
            continue;
        }
        // Networks declared in files and those in use are refused by berthd: kept.
        if call(
            &b,
            Request::NetworkRemove {
                name: n.name.clone(),
            },
        )
        .await
        .is_ok()
        {
            deleted.push(n.name);
        }
    }
    Ok(Json(json!({"NetworksDeleted": deleted})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> CreateBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn what_docker_network_create_sends_becomes_a_network_file() {
        // As `docker network create --subnet 10.91.0.0/24 --gateway 10.91.0.254 --internal
        // --label team=a --ipv6 --subnet fd00:91::/64 n1` sends it.
        let d = decl_of(&body(json!({
            "Name": "n1", "Driver": "bridge", "Scope": "", "EnableIPv4": null, "EnableIPv6": true,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [
                {"Subnet": "10.91.0.0/24", "Gateway": "10.91.0.254"},
                {"Subnet": "fd00:91::/64"}]},
            "Internal": true, "Attachable": false, "Ingress": false, "ConfigOnly": false,
            "ConfigFrom": null, "Options": {}, "Labels": {"team": "a"},
        })))
        .unwrap();
        assert_eq!(
            d,
            json!({"subnet": "10.91.0.0/24", "gateway": "10.91.0.254", "ipv6_subnet": "fd00:91::/64",
                   "internal": true, "labels": {"team": "a"}})
        );
        let yaml = serde_norway::to_string(&d).unwrap();
        crate::network::parse_file(std::path::Path::new("n1.yaml"), &yaml).unwrap();
        let empty = decl_of(&body(
            json!({"Name": "n2", "Driver": "bridge", "IPAM": {"Driver": "default", "Config": []}}),
        ))
        .unwrap();
        assert_eq!(empty, json!({}));
    }

    #[test]
    fn what_berth_cannot_do_is_refused_by_name() {
        let e = |v: Value| decl_of(&body(v)).unwrap_err().to_string();
        assert!(e(json!({"Name": "n", "Driver": "overlay"})).contains("overlay"));
        assert!(e(json!({"Name": "n", "Attachable": true})).contains("Attachable"));
        assert!(
            e(json!({"Name": "n", "Options": {"com.docker.network.driver.mtu": "1400"}}))
                .contains("mtu")
        );
        assert!(e(json!({"Name": "n", "EnableIPv6": true})).contains("IPv6 subnet"));
        assert!(
            e(json!({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.0.0/16", "IPRange": "10.1.1.0/24"}]}}))
                .contains("IPRange")
        );
    }

    #[test]
    fn names_ids_and_filters() {
        let net = |name: &str, default: bool| Net {
            name: name.into(),
            driver: "bridge",
            report: Some(NetworkReport {
                name: name.into(),
                sources: vec![],
                subnet: Some("10.0.0.0/24".into()),
                gateway: None,
                interface: None,
                internal: None,
                dns: None,
                labels: BTreeMap::from([("team".into(), "a".into())]),
                default,
                ipv6_subnet: None,
                containers: vec![],
                problems: vec![],
            }),
        };
        let id = net("n1", false).id();
        assert_eq!(
            resolve(vec![net("bridge", true), net("n1", false)], &id[..6])
                .unwrap()
                .name,
            "n1"
        );
        assert!(resolve(vec![net("n1", false)], "zz").is_err());
        let f = |s: &str| parse_filters(Some(s)).unwrap();
        assert!(matches(&f(r#"{"type":["custom"]}"#), &net("n1", false)).unwrap());
        assert!(!matches(&f(r#"{"type":["custom"]}"#), &net("bridge", true)).unwrap());
        assert!(
            matches(
                &f(r#"{"label":["team=a"],"driver":["bridge"]}"#),
                &net("n1", false)
            )
            .unwrap()
        );
        assert!(!matches(&f(r#"{"name":["zz"]}"#), &net("n1", false)).unwrap());
    }
}

//! Containers as Docker shows them: `GET /containers/json` (with `all` and the `name`, `id`,
//! `label`, `status` and `ancestor` filters) and `GET /containers/{id}/json`, built from berthd's
//! status and inspect answers. Docker IDs are derived from names, so they are stable across
//! restarts of berthd and of the container. Runs in berthd.

use super::{DockerError, Shared, call};
use crate::api::Request;
use crate::reconcile::status::{ContainerStatus, Phase};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A container's Docker ID: berth's one container id (64 hex digits, a function of its name
/// alone; netavark and aardvark-dns know the container by it too).
pub fn container_id(name: &str) -> String {
    crate::network::container_id(name)
}

/// Docker's state word for a berth phase.
pub fn docker_state(phase: &Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Exited | Phase::Failed | Phase::Stopped => "exited",
        Phase::Invalid | Phase::Error => "dead",
        Phase::Pending | Phase::Pulling { .. } | Phase::Waiting { .. } | Phase::Starting => {
            "created"
        }
    }
}

/// Docker's `Status` column: `Up`, `Exited (3)`, or why it is not running.
fn status_text(st: &ContainerStatus) -> String {
    let exit = st.last_exit.as_ref().map(|x| x.status);
    match (&st.phase, exit) {
        (Phase::Running, _) => "Up".into(),
        (Phase::Exited | Phase::Failed | Phase::Stopped, Some(c)) => format!("Exited ({c})"),
        (Phase::Exited | Phase::Failed | Phase::Stopped, None) => "Exited".into(),
        (Phase::Pulling { .. }, _) => "Created (pulling its image)".into(),
        (Phase::Waiting { on }, _) => format!("Created (waiting for {on})"),
        (_, _) => match &st.message {
            Some(m) => format!("Created ({m})"),
            None => "Created".into(),
        },
    }
}

/// Which container `query` names: a name (with or without Docker's leading `/`), a full ID or
/// a unique ID prefix, as Docker resolves them.
pub fn resolve<'a>(names: &'a [String], query: &str) -> Result<&'a str, DockerError> {
    let q = query.strip_prefix('/').unwrap_or(query);
    if let Some(n) = names.iter().find(|n| *n == q) {
        return Ok(n);
    }
    let is_hex = !q.is_empty() && q.len() <= 64 && q.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex {
        let mut hits = names.iter().filter(|n| container_id(n).starts_with(q));
        if let Some(first) = hits.next() {
            if hits.next().is_some() {
                return Err(DockerError::BadRequest(format!(
                    "Multiple IDs found with provided prefix: {q}"
                )));
            }
            return Ok(first);
        }
    }
    Err(DockerError::NoSuchContainer(query.to_owned()))
}

/// `filters` of a list request: Docker's JSON, either `{"name": ["a"]}` or the older
/// `{"name": {"a": true}}`.
pub fn parse_filters(raw: Option<&str>) -> Result<BTreeMap<String, Vec<String>>, DockerError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let bad = |e: String| DockerError::BadRequest(format!("invalid filters: {e}"));
    let v: BTreeMap<String, Value> = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in v {
        let values = match v {
            Value::Array(a) => a
                .into_iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            Value::Object(m) => Some(m.into_iter().map(|(k, _)| k).collect()),
            _ => None,
        }
        .ok_or_else(|| bad(format!("values of `{k}` must be strings")))?;
        out.insert(k, values);
    }
    Ok(out)
}

/// What a list filter looks at, per container.
pub struct Facts<'a> {
    pub name: &'a str,
    pub state: &'static str,
    pub labels: &'a BTreeMap<String, String>,
    pub image: &'a str,
}

/// Docker's rule: every filter key must match (values of one key are alternatives).
pub fn matches(filters: &BTreeMap<String, Vec<String>>, f: &Facts) -> Result<bool, DockerError> {
    for (key, values) in filters {
        let any = |pred: &dyn Fn(&str) -> bool| values.iter().any(|v| pred(v));
        let ok = match key.as_str() {
            // Docker matches names as a regular expression; a substring covers the common use.
            "name" => any(&|v| f.name.contains(v.trim_start_matches('/'))),
            "id" => any(&|v| container_id(f.name).starts_with(v)),
            "status" => any(&|v| v == f.state),
            "ancestor" => any(&|v| f.image == v || f.image.starts_with(&format!("{v}:"))),
            "label" => any(&|v| match v.split_once('=') {
                Some((k, val)) => f.labels.get(k).is_some_and(|x| x == val),
                None => f.labels.contains_key(v),
            }),
            other => {
                return Err(DockerError::BadRequest(format!(
                    "invalid filter '{other}' (berth filters on name, id, status, ancestor and label)"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: Option<String>,
    #[serde(default)]
    filters: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true" | "True"))
}

/// One container as berthd reports it: its status and its inspect answer.
struct Seen {
    status: ContainerStatus,
    inspect: Value,
}

impl Seen {
    /// The spec's labels, with those that carry Docker settings (shown as those settings).
    fn labels_all(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.inspect["spec"]["labels"].clone()).unwrap_or_default()
    }
    fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels_all();
        l.retain(|k, _| !k.starts_with("berth.docker."));
        l
    }
    /// Frozen by `pause` (systemd's freezer).
    fn paused(&self) -> bool {
        self.inspect["paused"].as_bool().unwrap_or(false)
    }
    fn state(&self) -> &'static str {
        match docker_state(&self.status.phase) {
            "running" if self.paused() => "paused",
            s => s,
        }
    }
    fn args(&self) -> Vec<String> {
        serde_json::from_value(self.inspect["oci_config"]["process"]["args"].clone())
            .unwrap_or_default()
    }
    fn image(&self) -> String {
        self.status.image.clone().unwrap_or_default()
    }
    /// When berthd last wrote the container's bundle, as Unix seconds.
    fn created(&self) -> i64 {
        self.inspect["bundle"]
            .as_str()
            .and_then(|b| std::fs::metadata(std::path::Path::new(b).join("config.json")).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64)
    }
    /// Docker's `Networks`: each network joined, by name.
    fn networks(&self) -> Value {
        let mut m = serde_json::Map::new();
        for a in self.status.network.iter().flat_map(|n| &n.networks) {
            m.insert(
                a.network.clone(),
                json!({
                    "NetworkID": a.network,
                    "IPAddress": a.address.to_string(),
                    "IPPrefixLen": a.prefix_len,
                    "Gateway": a.gateway.to_string(),
                    "GlobalIPv6Address": a.address6.map(|x| x.to_string()).unwrap_or_default(),
                    "Aliases": a.aliases,
                }),
            );
        }
        Value::Object(m)
    }

    fn ports(&self) -> Vec<Value> {
        let Some(n) = &self.status.network else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in &n.ports {
            for i in 0..p.range {
                out.push(json!({
                    "IP": p.host_ip.map_or("0.0.0.0".into(), |i| i.to_string()),
                    "PrivatePort": p.container_port + i,
                    "PublicPort": p.host_port.map(|h| h + i),
                    "Type": p.protocol.as_str(),
                }));
            }
        }
        out
    }
}

async fn seen(b: &Shared, name: &str) -> Result<Seen, DockerError> {
    let inspect = call(b, Request::Inspect { name: name.into() }).await?;
    let status = serde_json::from_value(inspect["status"].clone())
        .map_err(|e| DockerError::Internal(format!("container {name}: {e}")))?;
    Ok(Seen { status, inspect })
}

async fn names(b: &Shared) -> Result<Vec<String>, DockerError> {
    let ps: Vec<ContainerStatus> = serde_json::from_value(call(b, Request::Ps).await?)
        .map_err(|e| DockerError::Internal(format!("container list: {e}")))?;
    Ok(ps.into_iter().map(|s| s.name).collect())
}

/// `GET /containers/json`.
pub async fn list(
    State(b): State<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let filters = parse_filters(q.filters.as_deref())?;
    let all = truthy(q.all.as_deref()) || q.limit.is_some_and(|l| l > 0);
    let mut out = Vec::new();
    let names = names(&b).await?;
    // At once: each inspect waits mostly on systemd's answer and the container's files.
    let seen_all = futures_util::future::try_join_all(names.iter().map(|n| seen(&b, n))).await?;
    for (name, s) in names.iter().zip(seen_all) {
        let state = s.state();
        let labels = s.labels();
        let image = s.image();
        let facts = Facts {
            name,
            state,
            labels: &labels,
            image: &image,
        };
        // A paused container runs, for `docker ps` as for Docker.
        let runs = state == "running" || state == "paused";
        if (!all && !runs) || !matches(&filters, &facts)? {
            continue;
        }
        out.push(json!({
            "Id": container_id(name),
            "Names": [format!("/{name}")],
            "Image": image,
            "ImageID": s.status.image_digest,
            "Command": s.args().join(" "),
            "Created": s.created(),
            "Ports": s.ports(),
            "Labels": labels,
            "State": state,
            "Status": if s.paused() { "Up (Paused)".into() } else { status_text(&s.status) },
            "HostConfig": {"NetworkMode": s.inspect["spec"]["network_mode"].as_str().unwrap_or("bridge")},
            "NetworkSettings": {"Networks": s.networks()},
            "Mounts": [],
        }));
    }
    if let Some(l) = q.limit.filter(|l| *l > 0) {
        out.truncate(l as usize);
    }
    Ok(Json(out))
}

/// `GET /containers/{id}/json`.
pub async fn inspect(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let all = names(&b).await?;
    let name = resolve(&all, &id)?.to_owned();
    let s = seen(&b, &name).await?;
    let state = s.state();
    let args = s.args();
    let exit = s.status.last_exit.as_ref();
    let process = &s.inspect["oci_config"]["process"];
    let spec = &s.inspect["spec"];
    let first = s.status.network.as_ref().and_then(|n| n.networks.first());
    Ok(Json(json!({
        "Id": container_id(&name),
        "Created": created_rfc3339(s.created()),
        "Path": args.first(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": state,
            "Running": state == "running" || state == "paused",
            "Paused": s.paused(),
            "Restarting": false,
            "OOMKilled": exit.is_some_and(|x| x.oom_killed),
            "Dead": state == "dead",
            "ExitCode": if state == "running" { 0 } else { exit.map_or(0, |x| x.status) },
            "Error": s.status.message.clone().unwrap_or_default(),
        },
        "Image": s.status.image_digest,
        "Name": format!("/{name}"),
        "Driver": "overlay",
        "Config": {
            "Hostname": s.inspect["oci_config"]["hostname"],
            "User": "",
            "Env": process["env"],
            "Cmd": args,
            "Image": s.image(),
            "WorkingDir": process["cwd"],
            "Labels": s.labels(),
            "Tty": process["terminal"].as_bool().unwrap_or(false),
            "OpenStdin": spec["stdin_open"].as_bool().unwrap_or(false),
            "StdinOnce": s.labels_all().contains_key(super::lifecycle::STDIN_ONCE),
        },
        "HostConfig": {
            "NetworkMode": spec["network_mode"].as_str().unwrap_or("bridge"),
            "ReadonlyRootfs": spec["read_only"].as_bool().unwrap_or(false),
            "AutoRemove": s.labels_all().contains_key(super::lifecycle::AUTO_REMOVE),
        },
        "NetworkSettings": {
            "IPAddress": first.map(|a| a.address.to_string()).unwrap_or_default(),
            "Gateway": first.map(|a| a.gateway.to_string()).unwrap_or_default(),
            "Networks": s.networks(),
            "Ports": port_map(&s.ports()),
        },
        "Berth": {
            "SpecFile": s.inspect["spec_file"],
            "Phase": s.status.phase,
            "SpecHash": s.status.spec_hash,
        },
    })))
}

/// `Ports` of inspect: `{"80/tcp": [{"HostIp", "HostPort"}]}`.
fn port_map(ports: &[Value]) -> Value {
    let mut m = serde_json::Map::new();
    for p in ports {
        let key = format!(
            "{}/{}",
            p["PrivatePort"],
            p["Type"].as_str().unwrap_or("tcp")
        );
        let binding = json!({"HostIp": p["IP"], "HostPort": p["PublicPort"].to_string()});
        match m.get_mut(&key).and_then(Value::as_array_mut) {
            Some(a) => a.push(binding),
            None => {
                m.insert(key, json!([binding]));
            }
        }
    }
    Value::Object(m)
}

/// Unix seconds as Docker's RFC 3339 UTC time.
fn created_rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_resolve_by_name_or_prefix() {
        let names = vec!["web".to_owned(), "db".to_owned()];
        let id = container_id("web");
        assert_eq!(id.len(), 64);
        assert_eq!(id, container_id("web"));
        assert_ne!(id, container_id("db"));
        assert_eq!(resolve(&names, "web").unwrap(), "web");
        assert_eq!(resolve(&names, "/db").unwrap(), "db");
        assert_eq!(resolve(&names, &id[..12]).unwrap(), "web");
        assert_eq!(resolve(&names, &id).unwrap(), "web");
        let e = resolve(&names, "nope").unwrap_err();
        assert_eq!(e.to_string(), "No such container: nope");
        assert_eq!(e.status(), axum::http::StatusCode::NOT_FOUND);
    }

    #[test]
    fn filters_in_both_encodings() {
        let f = parse_filters(Some(r#"{"label":{"app=web":true},"status":["running"]}"#)).unwrap();
        assert_eq!(f["label"], vec!["app=web"]);
        assert_eq!(f["status"], vec!["running"]);
        assert!(parse_filters(Some("{bad")).is_err());
        assert!(parse_filters(Some(r#"{"name": 3}"#)).is_err());
        assert!(parse_filters(None).unwrap().is_empty());
    }

    #[test]
    fn filters_match_as_docker_does() {
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        let facts = Facts {
            name: "web-1",
            state: "running",
            labels: &labels,
            image: "busybox:1.36",
        };
        let f = |s: &str| parse_filters(Some(s)).unwrap();
        assert!(matches(&f(r#"{"name":["web"]}"#), &facts).unwrap());
        assert!(!matches(&f(r#"{"name":["db"]}"#), &facts).unwrap());
        assert!(matches(&f(r#"{"label":["app"]}"#), &facts).unwrap());
        assert!(!matches(&f(r#"{"label":["app=db"]}"#), &facts).unwrap());
        assert!(matches(&f(r#"{"ancestor":["busybox"]}"#), &facts).unwrap());
        assert!(!matches(&f(r#"{"status":["exited"]}"#), &facts).unwrap());
        // Alternatives within a key, all keys required.
        assert!(
            matches(
                &f(r#"{"status":["exited","running"],"name":["web"]}"#),
                &facts
            )
            .unwrap()
        );
        assert!(!matches(&f(r#"{"status":["running"],"name":["db"]}"#), &facts).unwrap());
        let id = container_id("web-1");
        assert!(matches(&f(&format!(r#"{{"id":["{}"]}}"#, &id[..8])), &facts).unwrap());
        assert!(matches(&f(r#"{"volume":["x"]}"#), &facts).is_err());
    }

    #[test]
    fn states_and_times() {
        assert_eq!(docker_state(&Phase::Running), "running");
        assert_eq!(docker_state(&Phase::Pulling { percent: None }), "created");
        assert_eq!(docker_state(&Phase::Failed), "exited");
        assert_eq!(created_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(created_rfc3339(1_795_980_649), "2026-11-29T19:30:49Z");
        assert_eq!(created_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

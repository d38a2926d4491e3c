//! `POST /containers/create`: Docker's container config turned into a berth spec (the same keys a
//! spec file has), stored through berthd's `Apply` and held stopped until `start`. A field berth
//! cannot honour is refused by name (a 400), never dropped. Runs in berthd.

use super::DockerError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The request body: Docker's `Config` with `HostConfig` inside.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub open_stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub stop_signal: String,
    #[serde(default)]
    pub stop_timeout: Option<i64>,
    #[serde(default)]
    pub host_config: HostConfig,
    /// Every other field: accepted only at its zero value.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default)]
    pub binds: Option<Vec<String>>,
    #[serde(default)]
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default)]
    pub network_mode: String,
    #[serde(default)]
    pub memory: i64,
    #[serde(default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub cap_add: Option<Vec<String>>,
    #[serde(default)]
    pub cap_drop: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub init: Option<bool>,
    #[serde(default)]
    pub tmpfs: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub auto_remove: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(default)]
    pub host_ip: String,
    #[serde(default)]
    pub host_port: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub maximum_retry_count: u32,
}

/// Fields the CLI sends that carry nothing berth needs (attach wiring, informational lists).
const IGNORED: &[&str] = &[
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "NetworkingConfig",
    "Domainname",
    "ConsoleSize",
    "LogConfig",
    "Platform",
];

/// Whether a JSON value is Docker's "not set": null, false, 0, "", empty, or a struct (its
/// fields PascalCase, unlike the keys of a map such as `Volumes`) whose fields are all unset.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o
            .iter()
            .all(|(k, v)| k.starts_with(|c: char| c.is_ascii_uppercase()) && is_zero(v)),
    }
}

/// Fields whose "unset" is not a zero value (the CLI sends `MemorySwappiness: -1`).
fn is_unset(key: &str, v: &Value) -> bool {
    is_zero(v) || (key == "MemorySwappiness" && v.as_i64() == Some(-1))
}

/// The fields of `other` set to something berth would have to ignore.
fn refused(prefix: &str, other: &BTreeMap<String, Value>) -> Option<String> {
    other
        .iter()
        .filter(|(k, v)| !IGNORED.contains(&k.as_str()) && !is_unset(k, v))
        .map(|(k, _)| format!("{prefix}{k}"))
        .next()
}

/// A create request's body as the spec YAML berthd is asked to apply: the JSON decoding the
/// handler's extractor does, then [`spec_of`] (the fuzz targets' entry into this module).
#[cfg(feature = "fuzzing")]
pub fn spec_yaml_of(body: &[u8]) -> Result<String, DockerError> {
    let b: CreateBody =
        serde_json::from_slice(body).map_err(|e| DockerError::BadRequest(e.to_string()))?;
    serde_norway::to_string(&spec_of(&b)?).map_err(|e| DockerError::Internal(e.to_string()))
}

/// The berth spec (as the keys of a spec file) for a create request.
pub fn spec_of(b: &CreateBody) -> Result<Value, DockerError> {
    let unsupported = |f: String| {
        DockerError::BadRequest(format!(
            "berth does not support {f} in a container's config (leave it unset or use a berth spec file)"
        ))
    };
    if let Some(f) = refused("", &b.other) {
        return Err(unsupported(f));
    }
    let h = &b.host_config;
    if let Some(f) = refused("HostConfig.", &h.other) {
        return Err(unsupported(f));
    }
    if let Some(t) = h.other.get("LogConfig").and_then(|l| l["Type"].as_str())
        && !t.is_empty()
        && t != "journald"
    {
        return Err(unsupported(format!(
            "the {t} log driver (berth logs to journald)"
        )));
    }
    if b.image.is_empty() {
        return Err(DockerError::BadRequest("config has no Image".into()));
    }
    let mut s = Map::new();
    let mut put = |k: &str, v: Value| {
        s.insert(k.to_owned(), v);
    };
    put("image", json!(b.image));
    if let Some(c) = &b.cmd {
        put("command", json!(c));
    }
    if let Some(e) = &b.entrypoint {
        put("entrypoint", json!(e));
    }
    if let Some(env) = b.env.as_ref().filter(|e| !e.is_empty()) {
        put("environment", json!(env));
    }
    let mut labels = b.labels.clone().unwrap_or_default();
    // Docker-only settings, kept with the spec so that they outlive berthd's restarts.
    if h.auto_remove {
        labels.insert(super::lifecycle::AUTO_REMOVE.into(), "true".into());
    }
    if b.stdin_once && b.open_stdin {
        labels.insert(super::lifecycle::STDIN_ONCE.into(), "true".into());
    }
    if !labels.is_empty() {
        put("labels", json!(labels));
    }
    for (key, v) in [
        ("user", &b.user),
        ("working_dir", &b.working_dir),
        ("hostname", &b.hostname),
        ("stop_signal", &b.stop_signal),
    ] {
        if !v.is_empty() {
            put(key, json!(v));
        }
    }
    if b.tty {
        put("tty", json!(true));
    }
    if b.open_stdin {
        put("stdin_open", json!(true));
    }
    if let Some(t) = b.stop_timeout.filter(|t| *t >= 0) {
        put("stop_grace_period", json!(format!("{t}s")));
    }
    if let Some(binds) = h.binds.as_ref().filter(|v| !v.is_empty()) {
        put("volumes", json!(binds));
    }
    let ports = ports_of(h.port_bindings.as_ref())?;
    if !ports.is_empty() {
        put("ports", json!(ports));
    }
    if let Some(r) = &h.restart_policy {
        match r.name.as_str() {
            "" | "no" => {}
            "on-failure" if r.maximum_retry_count > 0 => {
                put(
                    "restart",
                    json!(format!("on-failure:{}", r.maximum_retry_count)),
                );
            }
            name => put("restart", json!(name)),
        }
    }
    match h.network_mode.as_str() {
        "" | "default" | "bridge" => {}
        m @ ("host" | "none") => put("network_mode", json!(m)),
        m if m.starts_with("container:") => put("network_mode", json!(m)),
        // `--network n1`: a named network, joined with the aliases the request gives it.
        net => put(
            "networks",
            json!({ net: join_of(b.other.get("NetworkingConfig"), net) }),
        ),
    }
    if h.memory > 0 {
        put("mem_limit", json!(h.memory));
    }
    if h.nano_cpus > 0 {
        put("cpus", json!(h.nano_cpus as f64 / 1e9));
    }
    if let Some(p) = h.pids_limit.filter(|p| *p != 0) {
        put("pids_limit", json!(p));
    }
    for (key, caps) in [("cap_add", &h.cap_add), ("cap_drop", &h.cap_drop)] {
        if let Some(c) = caps.as_ref().filter(|c| !c.is_empty()) {
            put(key, json!(c));
        }
    }
    if h.readonly_rootfs {
        put("read_only", json!(true));
    }
    if h.init == Some(true) {
        put("init", json!(true));
    }
    if let Some(t) = h.tmpfs.as_ref().filter(|t| !t.is_empty()) {
        let list: Vec<String> = t
            .iter()
            .map(|(path, opts)| {
                if opts.is_empty() {
                    path.clone()
                } else {
                    format!("{path}:{opts}")
                }
            })
            .collect();
        put("tmpfs", json!(list));
    }
    Ok(Value::Object(s))
}

/// The spec's join options on `net` from `NetworkingConfig.EndpointsConfig` (aliases, address).
fn join_of(networking: Option<&Value>, net: &str) -> Value {
    let ep = networking.map_or(&Value::Null, |n| &n["EndpointsConfig"][net]);
    let mut j = Map::new();
    if let Some(a) = ep["Aliases"].as_array().filter(|a| !a.is_empty()) {
        j.insert("aliases".into(), json!(a));
    }
    if let Some(ip) = ep["IPAMConfig"]["IPv4Address"]
        .as_str()
        .filter(|i| !i.is_empty())
    {
        j.insert("ipv4_address".into(), json!(ip));
    }
    if j.is_empty() {
        Value::Null
    } else {
        Value::Object(j)
    }
}

/// `PortBindings` (`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`) in Compose's short syntax,
/// which the spec parses with its one port grammar.
fn ports_of(
    bindings: Option<&BTreeMap<String, Option<Vec<PortBinding>>>>,
) -> Result<Vec<String>, DockerError> {
    let mut out = Vec::new();
    for (port, list) in bindings.into_iter().flatten() {
        let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
        for b in list.iter().flatten() {
            let mut entry = String::new();
            if !b.host_ip.is_empty() {
                entry.push_str(&b.host_ip);
                entry.push(':');
            }
            if !b.host_port.is_empty() {
                entry.push_str(&b.host_port);
                entry.push(':');
            } else if !b.host_ip.is_empty() {
                entry.push(':');
            }
            entry.push_str(number);
            if proto != "tcp" {
                entry.push('/');
                entry.push_str(proto);
            }
            out.push(entry);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> CreateBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn what_docker_run_sends_becomes_a_spec() {
        // Close to what `docker run -d -p 8080:80 -e A=1 --restart always --memory 64m` sends.
        let b = body(json!({
            "Image": "busybox", "Cmd": ["httpd", "-f"], "Env": ["A=1"], "Labels": {"app": "web"},
            "AttachStdin": false, "AttachStdout": false, "Tty": false, "OpenStdin": false,
            "ExposedPorts": {"80/tcp": {}}, "Volumes": null, "Entrypoint": null,
            "HostConfig": {
                "Binds": ["/srv/data:/data:ro"],
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                 "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                "NetworkMode": "default", "Memory": 67108864, "NanoCpus": 500000000,
                "Privileged": false, "LogConfig": {"Type": "", "Config": {}},
                "CapAdd": null, "Dns": [], "Tmpfs": {"/run": "size=1m"},
            },
            "NetworkingConfig": {"EndpointsConfig": {}},
        }));
        let s = spec_of(&b).unwrap();
        assert_eq!(s["image"], "busybox");
        assert_eq!(s["command"], json!(["httpd", "-f"]));
        assert_eq!(s["environment"], json!(["A=1"]));
        assert_eq!(s["ports"], json!(["127.0.0.1::53/udp", "8080:80"]));
        assert_eq!(s["volumes"], json!(["/srv/data:/data:ro"]));
        assert_eq!(s["restart"], "always");
        assert_eq!(s["mem_limit"], 67108864);
        assert_eq!(s["cpus"], 0.5);
        assert_eq!(s["tmpfs"], json!(["/run:size=1m"]));
        assert!(s.get("network_mode").is_none());
        // The result is a spec berth accepts, parsed with the spec's own grammar.
        let yaml = serde_norway::to_string(&s).unwrap();
        crate::spec::parse(std::path::Path::new("web.yaml"), &yaml).unwrap();
    }

    #[test]
    fn fields_berth_cannot_honour_are_refused_by_name() {
        let e = spec_of(&body(
            json!({"Image": "x", "HostConfig": {"Privileged": true}}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("HostConfig.Privileged"), "{e}");
        let e = spec_of(&body(json!({"Image": "x", "Volumes": {"/data": {}}})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Volumes"), "{e}");
        let e = spec_of(&body(
            json!({"Image": "x", "HostConfig": {"LogConfig": {"Type": "json-file"}}}),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("json-file"), "{e}");
        assert!(spec_of(&body(json!({"Cmd": ["x"]}))).is_err());
        // Zero values of unknown fields are what the CLI always sends: accepted.
        assert!(
            spec_of(&body(
                json!({"Image": "x", "HostConfig": {"OomKillDisable": false}})
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_named_network_is_joined_with_its_aliases() {
        let s = spec_of(&body(json!({"Image": "x", "HostConfig": {"NetworkMode": "n1"},
            "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["db"], "IPAMConfig": {"IPv4Address": "10.9.0.5"}}}}})))
        .unwrap();
        assert_eq!(
            s["networks"],
            json!({"n1": {"aliases": ["db"], "ipv4_address": "10.9.0.5"}})
        );
        assert!(s.get("network_mode").is_none());
        let yaml = serde_norway::to_string(&s).unwrap();
        crate::spec::parse(std::path::Path::new("a.yaml"), &yaml).unwrap();
        let s = spec_of(&body(
            json!({"Image": "x", "HostConfig": {"NetworkMode": "n1"}}),
        ))
        .unwrap();
        assert_eq!(s["networks"], json!({"n1": null}));
        let s = spec_of(&body(
            json!({"Image": "x", "HostConfig": {"NetworkMode": "host"}}),
        ))
        .unwrap();
        assert_eq!(s["network_mode"], "host");
    }

    #[test]
    fn init_and_tty_flags() {
        let s = spec_of(&body(
            json!({"Image": "x", "Tty": true, "OpenStdin": true, "HostConfig": {"Init": true}}),
        ))
        .unwrap();
        assert_eq!(s["init"], true);
        assert_eq!(s["tty"], true);
        assert_eq!(s["stdin_open"], true);
        // `docker run --rm -i`: AutoRemove and StdinOnce are kept as labels of the spec.
        let s = spec_of(&body(
            json!({"Image": "x", "OpenStdin": true, "StdinOnce": true,
            "Labels": {"a": "b"}, "HostConfig": {"AutoRemove": true}}),
        ))
        .unwrap();
        assert_eq!(
            s["labels"],
            json!({"a": "b", "berth.docker.auto-remove": "true", "berth.docker.stdin-once": "true"})
        );
    }

    #[test]
    fn restart_policies() {
        let r = |name: &str, n: u32| {
            spec_of(&body(json!({"Image": "x", "HostConfig": {"RestartPolicy": {"Name": name, "MaximumRetryCount": n}}})))
                .unwrap()
                .get("restart")
                .cloned()
        };
        assert_eq!(r("no", 0), None);
        assert_eq!(r("on-failure", 3), Some(json!("on-failure:3")));
        assert_eq!(r("unless-stopped", 0), Some(json!("unless-stopped")));
    }
}

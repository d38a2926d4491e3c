//! `POST /networks/{id}/connect|disconnect`: an API container's spec gets the network added to or
//! taken from its `networks:`, and berthd applies the spec as any edit: the container restarts
//! on its new networks (Docker plugs or unplugs an interface in the running container instead).
//! Containers declared in files are read-only here. Runs in berthd.

use super::networks::{all, resolve};
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_norway::{Mapping, Value as Yaml};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectBody {
    container: String,
    #[serde(default)]
    endpoint_config: Option<Endpoint>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default, rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EndpointIpam {
    #[serde(default, rename = "IPv4Address")]
    ipv4_address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DisconnectBody {
    container: String,
    #[serde(default)]
    force: bool,
}

/// The spec's `networks:` as a map of name to join options (a list becomes a map).
fn networks_of(spec: &Mapping) -> Mapping {
    match spec.get("networks") {
        Some(Yaml::Sequence(names)) => names.iter().map(|n| (n.clone(), Yaml::Null)).collect(),
        Some(Yaml::Mapping(m)) => m.clone(),
        _ => Mapping::new(),
    }
}

/// The spec with `network` joined (`default`: berth's default network, Docker's `bridge`).
pub fn joined(
    mut spec: Mapping,
    network: &str,
    default: &str,
    join: Mapping,
) -> Result<Mapping, DockerError> {
    match spec.get("network_mode").and_then(Yaml::as_str) {
        None | Some("bridge") => {}
        Some(m) => {
            return Err(DockerError::BadRequest(format!(
                "container cannot be connected to network {network}: its network mode is {m}"
            )));
        }
    }
    let mut nets = networks_of(&spec);
    if nets.is_empty() && network != default {
        // On the default network now: it stays there, as a Docker container stays on `bridge`.
        nets.insert(Yaml::from(default), Yaml::Null);
    }
    if nets.contains_key(network) {
        return Err(DockerError::Conflict(format!(
            "endpoint with name {network} already exists in network {network}"
        )));
    }
    nets.insert(
        Yaml::from(network),
        if join.is_empty() {
            Yaml::Null
        } else {
            Yaml::Mapping(join)
        },
    );
    spec.insert(Yaml::from("networks"), Yaml::Mapping(nets));
    Ok(spec)
}

/// The spec with `network` left; with none left, the container has loopback only (`none`).
pub fn left(mut spec: Mapping, network: &str, default: &str) -> Result<Mapping, DockerError> {
    let mut nets = networks_of(&spec);
    let on_default_only = nets.is_empty()
        && matches!(
            spec.get("network_mode").and_then(Yaml::as_str),
            None | Some("bridge")
        );
    if on_default_only && network == default {
        spec.insert(Yaml::from("network_mode"), Yaml::from("none"));
        return Ok(spec);
    }
    if nets.remove(network).is_none() {
        return Err(DockerError::BadRequest(format!(
            "container is not connected to network {network}"
        )));
    }
    if nets.is_empty() {
        spec.remove("networks");
        spec.insert(Yaml::from("network_mode"), Yaml::from("none"));
    } else {
        spec.insert(Yaml::from("networks"), Yaml::Mapping(nets));
    }
    Ok(spec)
}

/// The container's name, spec (as written) and berth's name of the network `id`.
async fn target(
    b: &Shared,
    id: &str,
    container: &str,
) -> Result<(String, Mapping, String, String), DockerError> {
    let net = resolve(all(b).await?, id)?;
    if net.driver != "bridge" {
        return Err(DockerError::BadRequest(format!(
            "container cannot be connected to or disconnected from the {} network",
            net.name
        )));
    }
    let default = all(b)
        .await?
        .into_iter()
        .find_map(|n| n.report.filter(|r| r.default).map(|r| r.name))
        .unwrap_or_default();
    let berth_name = if net.name == "bridge" {
        default.clone()
    } else {
        net.name
    };
    let name = super::lifecycle::find(b, container).await?;
    let inspect = call(b, Request::Inspect { name: name.clone() }).await?;
    let file = inspect["spec_file"].as_str().unwrap_or_default().to_owned();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| DockerError::Internal(format!("reading the spec of {name} ({file}): {e}")))?;
    let spec: Mapping = serde_norway::from_str(&text)
        .map_err(|e| DockerError::Internal(format!("the spec of {name} ({file}): {e}")))?;
    Ok((name, spec, berth_name, default))
}

async fn apply(b: &Shared, name: String, spec: &Mapping) -> Result<StatusCode, DockerError> {
    let yaml = serde_norway::to_string(spec)
        .map_err(|e| DockerError::Internal(format!("spec of {name}: {e}")))?;
    call(
        b,
        Request::Apply {
            name,
            yaml,
            stopped: false,
        },
    )
    .await?;
    Ok(StatusCode::OK)
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<ConnectBody>,
) -> Result<StatusCode, DockerError> {
    let (name, spec, network, default) = target(&b, &id, &body.container).await?;
    let mut join = Mapping::new();
    let ep = body.endpoint_config.unwrap_or_default();
    if let Some(a) = ep.aliases.filter(|a| !a.is_empty()) {
        join.insert(
            Yaml::from("aliases"),
            Yaml::Sequence(a.into_iter().map(Yaml::from).collect()),
        );
    }
    if let Some(ip) = ep.ipam_config.filter(|i| !i.ipv4_address.is_empty()) {
        join.insert(Yaml::from("ipv4_address"), Yaml::from(ip.ipv4_address));
    }
    let spec = joined(spec, &network, &default, join)?;
    apply(&b, name, &spec).await
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Json(body): Json<DisconnectBody>,
) -> Result<StatusCode, DockerError> {
    let _ = body.force;
    let (name, spec, network, default) = target(&b, &id, &body.container).await?;
    let spec = left(spec, &network, &default)?;
    apply(&b, name, &spec).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Mapping {
        serde_norway::from_str(s).unwrap()
    }

    #[test]
    fn connecting_keeps_the_default_network_and_disconnecting_the_last_leaves_none() {
        let s = joined(spec("image: x\n"), "n1", "podman", Mapping::new()).unwrap();
        let nets = networks_of(&s);
        assert!(nets.contains_key("podman") && nets.contains_key("n1"));
        let s = joined(
            spec("image: x\nnetworks: [a]\n"),
            "n1",
            "podman",
            Mapping::new(),
        )
        .unwrap();
        assert_eq!(networks_of(&s).len(), 2);
        assert!(!networks_of(&s).contains_key("podman"));
        assert!(
            joined(
                spec("image: x\nnetworks: [n1]\n"),
                "n1",
                "podman",
                Mapping::new()
            )
            .is_err()
        );
        assert!(
            joined(
                spec("image: x\nnetwork_mode: host\n"),
                "n1",
                "podman",
                Mapping::new()
            )
            .is_err()
        );
        // The result is a spec berth accepts.
        serde_norway::from_str::<crate::spec::Spec>(&serde_norway::to_string(&s).unwrap()).unwrap();

        let s = left(spec("image: x\nnetworks: [a, n1]\n"), "n1", "podman").unwrap();
        assert_eq!(networks_of(&s).len(), 1);
        let s = left(s, "a", "podman").unwrap();
        assert_eq!(s.get("network_mode").and_then(Yaml::as_str), Some("none"));
        assert!(s.get("networks").is_none());
        let s = left(spec("image: x\n"), "podman", "podman").unwrap();
        assert_eq!(s.get("network_mode").and_then(Yaml::as_str), Some("none"));
        assert!(left(spec("image: x\n"), "n1", "podman").is_err());
    }
}

//! What a container inherits from its image's config (ENTRYPOINT, CMD, ENV, WORKDIR, USER,
//! STOPSIGNAL, HEALTHCHECK), taken from oci-spec's `ImageConfiguration` plus Docker's
//! `Healthcheck` extension, and Docker's rule for merging healthchecks. Runs in berthd.

use super::{EffectiveError, HC_INTERVAL_MS, HC_RETRIES, HC_TIMEOUT_MS};
use crate::image::manifest::ImageHealthcheck;
use crate::spec::{HealthTest, Spec};
use berth_proto::HealthCheck;
use oci_spec::image::ImageConfiguration;
use serde::Serialize;
use std::collections::BTreeMap;

/// The parts of an image's config that a container inherits: oci-spec's `Config` plus Docker's
/// `Healthcheck` extension (which the OCI types do not carry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub healthcheck: Option<ImageHealthcheck>,
}

impl ImageConfig {
    /// From the image's configuration as the store parsed it (once per lookup).
    pub fn from_oci(config: &ImageConfiguration, healthcheck: Option<ImageHealthcheck>) -> Self {
        let Some(c) = config.config() else {
            return ImageConfig {
                healthcheck,
                ..Default::default()
            };
        };
        ImageConfig {
            entrypoint: c.entrypoint().clone(),
            cmd: c.cmd().clone(),
            env: c.env().clone(),
            working_dir: c.working_dir().clone(),
            user: c.user().clone(),
            stop_signal: c.stop_signal().clone(),
            exposed_ports: c.exposed_ports().as_ref().map(|p| {
                p.iter()
                    .map(|k| (k.clone(), serde_json::json!({})))
                    .collect()
            }),
            labels: c.labels().as_ref().map(|l| l.clone().into_iter().collect()),
            healthcheck,
        }
    }

    /// From an image config blob (`{"config": {…}, "rootfs": …}`).
    pub fn from_config_blob(json: &[u8]) -> Result<Self, EffectiveError> {
        let (config, healthcheck) = crate::image::manifest::parse_config_blob(json)?;
        Ok(Self::from_oci(&config, healthcheck))
    }
}

/// Docker's rule: the container's healthcheck settings override the image's field by field;
/// `NONE` or `disable` turns checking off.
pub(super) fn merge_healthcheck(
    name: &str,
    spec: &Spec,
    image: &ImageConfig,
) -> Result<Option<HealthCheck>, EffectiveError> {
    let ih = image.healthcheck.clone().unwrap_or_default();
    let sh = spec.healthcheck.clone().unwrap_or_default();
    if sh.disable {
        return Ok(None);
    }
    let test = match (&sh.test, &ih.test) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) if !t.is_empty() => {
            HealthTest::from_docker(t).map_err(|m| EffectiveError::Invalid {
                name: name.into(),
                message: format!("image HEALTHCHECK: {m}"),
            })?
        }
        _ => return Ok(None),
    };
    let Some(command) = test.argv() else {
        return Ok(None);
    };
    let ns_ms = |v: Option<u64>| v.filter(|&n| n > 0).map(|n| n / 1_000_000);
    Ok(Some(HealthCheck {
        command,
        interval_ms: sh
            .interval
            .map(|d| d.0.as_millis() as u64)
            .or(ns_ms(ih.interval))
            .unwrap_or(HC_INTERVAL_MS),
        timeout_ms: sh
            .timeout
            .map(|d| d.0.as_millis() as u64)
            .or(ns_ms(ih.timeout))
            .unwrap_or(HC_TIMEOUT_MS),
        retries: sh
            .retries
            .or(ih.retries.filter(|&r| r > 0))
            .unwrap_or(HC_RETRIES),
        start_period_ms: sh
            .start_period
            .map(|d| d.0.as_millis() as u64)
            .or(ns_ms(ih.start_period))
            .unwrap_or(0),
    }))
}

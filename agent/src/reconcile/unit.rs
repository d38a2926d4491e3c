//! The systemd unit a container runs as, derived from its effective spec. Pure; runs in berthd.

use crate::spec::effective::Effective;
use crate::spec::{Condition, Readiness, Restart};
use crate::systemd::{RestartPolicy, UnitSpec, unit_name};
use std::path::Path;
use std::time::Duration;

/// Pause between a container's exit and systemd's restart of it.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);
/// Start timeout when the unit becomes ready as soon as the container runs.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The unit for a container whose bundle is at `bundle`.
pub fn unit_spec(
    eff: &Effective,
    shim: &Path,
    bundle: &Path,
    spec_file: Option<&Path>,
) -> UnitSpec {
    let mut u = UnitSpec::new(
        &eff.name,
        &eff.image_ref,
        vec![
            shim.display().to_string(),
            "--bundle".into(),
            bundle.display().to_string(),
        ],
    );
    u.memory_max = eff.limits.memory_max;
    u.cpu_quota_per_sec = eff.limits.cpu_quota_per_sec;
    u.tasks_max = eff.limits.tasks_max;
    // systemd sends KillSignal to the shim, which passes the stop signal on. SIGKILL (or SIGSTOP)
    // would kill the shim itself before it could clean up: it gets SIGTERM and sends SIGKILL on.
    u.kill_signal = Some(match eff.stop_signal.number() {
        libc::SIGKILL | libc::SIGSTOP => libc::SIGTERM,
        s => s,
    });
    u.timeout_stop = Some(eff.stop_timeout);
    u.timeout_start = Some(match (eff.readiness, &eff.healthcheck) {
        // Ready after the first passing check: allow the start period and every retry.
        (Readiness::Healthy, Some(h)) => {
            START_TIMEOUT
                + Duration::from_millis(
                    h.start_period_ms
                        + (h.interval_ms + h.timeout_ms) * u64::from(h.retries.max(1)),
                )
        }
        _ => START_TIMEOUT,
    });
    u.restart = match eff.restart {
        Restart::No => RestartPolicy::No,
        Restart::Always | Restart::UnlessStopped => RestartPolicy::Always,
        Restart::OnFailure(n) => RestartPolicy::OnFailure { max_retries: n },
    };
    u.restart_delay = Some(RESTART_DELAY);
    for (dep, d) in &eff.depends_on {
        let unit = unit_name(dep);
        u.after.push(unit.clone());
        match (d.condition, d.required) {
            // A finished job's unit is gone: ordering is all there is to ask for.
            (Condition::ServiceCompletedSuccessfully, _) => {}
            (_, true) => u.requires.push(unit),
            (_, false) => u.wants.push(unit),
        }
    }
    u.log_rate_limit = Some(eff.log_rate_limit);
    u.spec_hash = eff.hash.clone();
    u.log_fields
        .insert("IMAGE_DIGEST".into(), eff.image_digest.clone());
    if let Some(f) = spec_file {
        u.log_fields
            .insert("BERTH_SPEC_FILE".into(), f.display().to_string());
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::effective::{ImageConfig, resolve};

    #[test]
    fn unit_from_spec() {
        let spec = crate::spec::parse(
            Path::new("/x/web.yaml"),
            "image: x\ncommand: [a]\nmem_limit: 64M\ncpus: 0.5\npids_limit: 100\nstop_signal: QUIT\nstop_grace_period: 5s\nrestart: on-failure:2\ndepends_on: {db: {condition: service_healthy}, cache: {condition: service_started, required: false}, init: {condition: service_completed_successfully}}\n",
        )
        .unwrap();
        let e = resolve(
            "web",
            &spec,
            "sha256:1",
            &ImageConfig::default(),
            &Default::default(),
        )
        .unwrap();
        let u = unit_spec(
            &e,
            Path::new("/usr/bin/berth-shim"),
            Path::new("/run/berth/containers/web"),
            None,
        );
        assert_eq!(
            u.exec_start,
            vec![
                "/usr/bin/berth-shim",
                "--bundle",
                "/run/berth/containers/web"
            ]
        );
        assert_eq!(u.memory_max, Some(64 << 20));
        assert_eq!(u.cpu_quota_per_sec, Some(Duration::from_millis(500)));
        assert_eq!(u.tasks_max, Some(100));
        assert_eq!(u.kill_signal, Some(libc::SIGQUIT));
        assert_eq!(u.timeout_stop, Some(Duration::from_secs(5)));
        assert_eq!(
            u.restart,
            RestartPolicy::OnFailure {
                max_retries: Some(2)
            }
        );
        assert_eq!(u.requires, vec!["berth-db.service"]);
        assert_eq!(u.wants, vec!["berth-cache.service"]);
        assert_eq!(u.after.len(), 3);
        assert_eq!(u.spec_hash, e.hash);
        assert!(u.validate().is_ok());
        // `pids_limit: -1` is unlimited: TasksMax=infinity, not systemd's default.
        let unlimited = crate::spec::parse(
            Path::new("/x/u.yaml"),
            "image: x\ncommand: [a]\npids_limit: -1\n",
        )
        .unwrap();
        let ue = resolve(
            "u",
            &unlimited,
            "sha256:1",
            &ImageConfig::default(),
            &Default::default(),
        )
        .unwrap();
        let uu = unit_spec(&ue, Path::new("/b"), Path::new("/r"), None);
        assert_eq!(uu.tasks_max, Some(u64::MAX));
        let kspec = crate::spec::parse(
            Path::new("/x/k.yaml"),
            "image: x\ncommand: [a]\nstop_signal: SIGKILL\n",
        )
        .unwrap();
        let ke = resolve(
            "k",
            &kspec,
            "sha256:1",
            &ImageConfig::default(),
            &Default::default(),
        )
        .unwrap();
        let killed = unit_spec(
            &ke,
            Path::new("/usr/bin/berth-shim"),
            Path::new("/run/berth/containers/k"),
            None,
        );
        assert_eq!(
            killed.kill_signal,
            Some(libc::SIGTERM),
            "the shim must survive it"
        );
    }
}

//! `pause`/`unpause` (systemd's freezer on the container's unit, through berthd's `Pause`, so
//! systemd and `berth status` know), `top` (the processes of the unit's cgroup, as `ps` shows
//! them) and `rename` (of a container that does not run). Runs in berthd.

use super::containers::container_id;
use super::lifecycle::{find, is_down, read_only, status, writable};
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn set_paused(b: &Shared, id: &str, paused: bool) -> Result<StatusCode, DockerError> {
    let name = find(b, id).await?;
    writable(b, &name).await?;
    call(b, Request::Pause { name, paused }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /containers/{id}/pause`.
pub async fn pause(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    set_paused(&b, &id, true).await
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    set_paused(&b, &id, false).await
}

#[derive(Debug, Deserialize)]
pub struct TopQuery {
    #[serde(default)]
    ps_args: Option<String>,
}

/// Whether a process whose `/proc/PID/cgroup` reads `text` is in cgroup `cg` or below it, by
/// the unified hierarchy's line or systemd's own (hybrid hosts). Read from /proc, the paths
/// are in systemd's view, as the unit's `ControlGroup` is.
pub fn in_cgroup(text: &str, cg: &str) -> bool {
    text.lines()
        .filter_map(|l| {
            l.strip_prefix("0::")
                .or_else(|| l.split_once(":name=systemd:").map(|(_, p)| p))
        })
        .any(|p| p == cg || p.strip_prefix(cg).is_some_and(|r| r.starts_with('/')))
}

/// The PIDs of the processes in cgroup `cg` (and below it).
fn cgroup_pids(cg: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|t| in_cgroup(&t, cg)) {
            out.insert(pid);
        }
    }
    out
}

/// `ps` output cut into Docker's `Titles` and `Processes`, keeping the rows of `pids`: every
/// column split on blanks but the last (the command), which keeps its own.
pub fn ps_table(
    out: &str,
    pids: &BTreeSet<i32>,
) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut lines = out.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| format!("Couldn't find PID field in ps output: {titles:?}"))?;
    let mut rows = Vec::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let mut fields: Vec<String> = Vec::new();
        let mut rest = l.trim_start();
        while fields.len() + 1 < titles.len() {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
        fields.push(rest.to_owned());
        if fields
            .get(pid_col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            rows.push(fields);
        }
    }
    Ok((titles, rows))
}

/// `GET /containers/{id}/top`: `ps` (with `ps_args`, `-ef` by default) of the host, keeping the
/// processes of the unit's cgroup, as Docker does.
pub async fn top(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<TopQuery>,
) -> Result<Json<Value>, DockerError> {
    let name = find(&b, &id).await?;
    let st = call(&b, Request::Status { name: name.clone() }).await?;
    let cgroup = st["unit"]["control_group"].as_str().unwrap_or_default();
    if is_down(status(&b, &name).await?.as_ref()) || cgroup.is_empty() {
        return Err(DockerError::Conflict(format!(
            "container {} is not running",
            container_id(&name)
        )));
    }
    let pids = cgroup_pids(cgroup);
    let args = q
        .ps_args
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "-ef".into());
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| DockerError::Internal(format!("running ps: {e}")))?;
    if !out.status.success() {
        return Err(DockerError::Internal(format!(
            "ps {args}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let (titles, rows) =
        ps_table(&String::from_utf8_lossy(&out.stdout), &pids).map_err(DockerError::Internal)?;
    Ok(Json(json!({"Titles": titles, "Processes": rows})))
}

#[derive(Debug, Deserialize)]
pub struct RenameQuery {
    #[serde(default)]
    name: String,
}

/// `POST /containers/{id}/rename`: berth names a container's unit, journal and state after it,
/// so a running container is not renamed (409, saying what to do); a stopped one is made again
/// under the new name from its spec (held stopped) and the old one removed.
pub async fn rename(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<RenameQuery>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    let new = q.name.trim_start_matches('/').to_owned();
    if !crate::spec::is_valid_name(&new) {
        return Err(DockerError::BadRequest(format!(
            "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    writable(&b, &name).await?;
    if new == name {
        return Err(DockerError::BadRequest(format!(
            "Renaming a container with the same name as its current name: {name}"
        )));
    }
    if status(&b, &new).await?.is_some() {
        return Err(DockerError::Conflict(format!(
            "Conflict. The container name \"/{new}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
            container_id(&new)
        )));
    }
    if !is_down(status(&b, &name).await?.as_ref()) {
        return Err(DockerError::Conflict(format!(
            "cannot rename container {name} while it runs: berth names its systemd unit and journal after it; stop it (docker stop {name}), rename it, then start it"
        )));
    }
    let i = call(&b, Request::Inspect { name: name.clone() }).await?;
    let yaml = serde_norway::to_string(&i["spec"])
        .map_err(|e| DockerError::Internal(format!("spec of {name}: {e}")))?;
    call(
        &b,
        Request::Apply {
            name: new.clone(),
            yaml,
            stopped: true,
        },
    )
    .await
    .map_err(read_only)?;
    call(&b, Request::Delete { name: name.clone() })
        .await
        .map_err(read_only)?;
    super::lifecycle::settle(&b, &new, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_of_the_containers_pids() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n\
                   root        4242       1  0 10:01 ?        00:00:00 sleep 3600\n";
        let pids = BTreeSet::from([4242]);
        let (t, rows) = ps_table(out, &pids).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(t[7], "CMD");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][1], "4242");
        assert_eq!(rows[0][7], "sleep 3600");
        assert!(ps_table("USER COMMAND\nroot x\n", &pids).is_err());
    }

    #[test]
    fn processes_of_the_units_cgroup() {
        let cg = "/system.slice/berth-ex.service";
        assert!(in_cgroup(
            "0::/system.slice/berth-ex.service/container\n",
            cg
        ));
        assert!(in_cgroup("0::/system.slice/berth-ex.service\n", cg));
        assert!(!in_cgroup("0::/system.slice/berth-ex2.service\n", cg));
        assert!(!in_cgroup("0::/system.slice/berthd.service\n", cg));
        // Hybrid: the unified line is empty; systemd's own hierarchy has the path.
        let hybrid = "12:pids:/system.slice/berth-ex.service\n1:name=systemd:/system.slice/berth-ex.service/shim\n0::/\n";
        assert!(in_cgroup(hybrid, cg));
        assert!(!in_cgroup("1:name=systemd:/user.slice\n0::/\n", cg));
    }
}

//! A container's life through the Docker API: create (held stopped), start, stop, restart,
//! remove and wait, each carried out by berthd's own requests; the handlers then watch berthd's
//! status until the change is done, as Docker answers only then. Containers declared in
//! `/etc/berth/containers` are read-only here (409 naming the file). Runs in berthd.

use super::containers::{container_id, docker_state, resolve};
use super::create::{CreateBody, spec_of};
use super::{DockerError, Shared, call};
use crate::api::{ErrorKind, Request};
use crate::reconcile::status::{ContainerStatus, Phase};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long a handler watches for a change it asked for before answering with an error.
const SETTLE: Duration = Duration::from_secs(150);
/// The poll interval when berthd reports no changes (and the longest wait for one that does).
const POLL: Duration = Duration::from_millis(100);
const NO_CHANGE: Duration = Duration::from_secs(1);

/// Labels that carry Docker-only settings of a container made through the API, so that they
/// persist with its spec (berthd honours AutoRemove after a restart too).
pub const AUTO_REMOVE: &str = "berth.docker.auto-remove";
pub const STDIN_ONCE: &str = "berth.docker.stdin-once";

/// berthd's status changes, awaited.
pub struct Changes(Option<tokio::sync::watch::Receiver<u64>>);

impl Changes {
    /// Subscribed now: a change after this call is seen by the next [`Self::next`].
    pub fn new(b: &Shared) -> Self {
        Changes(b.changes().map(|mut r| {
            r.mark_unchanged();
            r
        }))
    }
    /// Returns at the next change, or after `at_most`.
    pub async fn next(&mut self, at_most: Duration) {
        match &mut self.0 {
            Some(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout(at_most, rx.changed()).await {
                    self.0 = None;
                }
            }
            None => tokio::time::sleep(at_most.min(POLL)).await,
        }
    }
}

pub(super) async fn all(b: &Shared) -> Result<Vec<ContainerStatus>, DockerError> {
    serde_json::from_value(call(b, Request::Ps).await?)
        .map_err(|e| DockerError::Internal(format!("container list: {e}")))
}

/// The name `id` refers to.
pub async fn find(b: &Shared, id: &str) -> Result<String, DockerError> {
    let names: Vec<String> = all(b).await?.into_iter().map(|s| s.name).collect();
    resolve(&names, id).map(str::to_owned)
}

pub(super) async fn status(b: &Shared, name: &str) -> Result<Option<ContainerStatus>, DockerError> {
    Ok(all(b).await?.into_iter().find(|s| s.name == name))
}

/// Watches `name` until `done` holds for its status (`None`: it is gone).
async fn until(
    b: &Shared,
    name: &str,
    what: &str,
    done: impl Fn(Option<&ContainerStatus>) -> bool,
) -> Result<Option<ContainerStatus>, DockerError> {
    let t0 = Instant::now();
    let mut changes = Changes::new(b);
    loop {
        let s = status(b, name).await?;
        if done(s.as_ref()) {
            return Ok(s);
        }
        if t0.elapsed() > SETTLE {
            let why = s.and_then(|s| s.message).unwrap_or_default();
            return Err(DockerError::Internal(format!(
                "container {name} did not {what} within {}s: {why}",
                SETTLE.as_secs()
            )));
        }
        changes.next(NO_CHANGE).await;
    }
}

pub(super) fn is_down(s: Option<&ContainerStatus>) -> bool {
    s.is_none_or(|s| docker_state(&s.phase) != "running" && s.phase != Phase::Starting)
}

/// Containers declared in berthd's spec directory are changed by editing their file, never
/// through the API: 409, naming the file.
pub(super) async fn writable(b: &Shared, name: &str) -> Result<(), DockerError> {
    let info = call(b, Request::Info).await?;
    let dir = info["spec_dir"].as_str().unwrap_or_default();
    let file = status(b, name).await?.and_then(|s| s.spec_file);
    match file {
        Some(f) if !dir.is_empty() && std::path::Path::new(&f).starts_with(dir) => {
            Err(DockerError::Conflict(format!(
                "container {name} is declared in {f} and is read-only through the Docker API; edit that file or use `berth stop|start|restart {name}`"
            )))
        }
        _ => Ok(()),
    }
}

/// berthd refuses changes to a container declared in /etc with a conflict naming the file.
pub(super) fn read_only(e: DockerError) -> DockerError {
    match e {
        DockerError::Backend {
            kind: ErrorKind::Conflict,
            message,
        } => DockerError::Conflict(format!(
            "{message} (containers declared in files are read-only through the Docker API)"
        )),
        other => other,
    }
}

#[derive(Debug, Deserialize)]
pub struct CreateQuery {
    #[serde(default)]
    name: Option<String>,
}

/// A free name for a container created without one.
fn generated_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = container_id(&format!("{nanos}-{}", std::process::id()));
    format!("berth_{}", &id[..10])
}

/// `POST /containers/create`.
pub async fn create(
    State(b): State<Shared>,
    Query(q): Query<CreateQuery>,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let name = q
        .name
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_else(generated_name);
    if !crate::spec::is_valid_name(&name) {
        return Err(DockerError::BadRequest(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if status(&b, &name).await?.is_some() {
        return Err(DockerError::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
            container_id(&name)
        )));
    }
    let spec = spec_of(&body)?;
    // Docker's 404 for a missing image is what makes the CLI pull it and create again.
    if let Err(DockerError::Backend {
        kind: ErrorKind::NotFound,
        ..
    }) = call(
        &b,
        Request::Image {
            image: body.image.clone(),
        },
    )
    .await
    {
        return Err(DockerError::NoSuchImage(super::images::shown(&body.image)));
    }
    let yaml = serde_norway::to_string(&spec)
        .map_err(|e| DockerError::Internal(format!("spec of {name}: {e}")))?;
    call(
        &b,
        Request::Apply {
            name: name.clone(),
            yaml,
            stopped: true,
        },
    )
    .await
    .map_err(read_only)?;
    // Answered once berthd lists it, so that the `start` that follows finds it.
    until(&b, &name, "appear", |s| s.is_some()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": container_id(&name), "Warnings": []})),
    ))
}

/// `POST /containers/{id}/start`: 204, or 304 when it already runs.
pub async fn start(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    writable(&b, &name).await?;
    if status(&b, &name)
        .await?
        .is_some_and(|s| s.phase == Phase::Running)
    {
        return Ok(StatusCode::NOT_MODIFIED);
    }
    call(&b, Request::Start { name: name.clone() }).await?;
    let s = until(&b, &name, "start", |s| {
        s.is_some_and(|s| {
            !matches!(
                s.phase,
                Phase::Stopped | Phase::Pending | Phase::Starting | Phase::Pulling { .. }
            )
        })
    })
    .await?;
    match s.map(|s| (s.phase, s.message)) {
        Some((Phase::Error | Phase::Invalid, m)) => Err(DockerError::Internal(format!(
            "container {name} did not start: {}",
            m.unwrap_or_default()
        ))),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// `POST /containers/{id}/stop`: 204 once it is down, 304 when it was not running.
pub async fn stop(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    writable(&b, &name).await?;
    let was_up = !is_down(status(&b, &name).await?.as_ref());
    call(&b, Request::Stop { name: name.clone() })
        .await
        .map_err(read_only)?;
    until(&b, &name, "stop", |s| {
        s.is_none_or(|s| s.phase == Phase::Stopped)
    })
    .await?;
    Ok(if was_up {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

/// `POST /containers/{id}/restart`.
pub async fn restart(
    State(b): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    writable(&b, &name).await?;
    call(&b, Request::Restart { name: name.clone() }).await?;
    until(&b, &name, "restart", |s| {
        s.is_some_and(|s| {
            s.phase == Phase::Running || s.phase == Phase::Exited || s.phase == Phase::Failed
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct KillQuery {
    #[serde(default)]
    signal: Option<String>,
}

/// `POST /containers/{id}/kill`: a signal (default `SIGKILL`) to its main process; 409 when it
/// does not run, as in Docker.
pub async fn kill(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<KillQuery>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    writable(&b, &name).await?;
    if is_down(status(&b, &name).await?.as_ref()) {
        return Err(DockerError::Conflict(format!(
            "Cannot kill container: {name}: container {} is not running",
            container_id(&name)
        )));
    }
    let signal = q
        .signal
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "KILL".into());
    // berthd's `invalid` (a bad signal name) is already a 400 (`DockerError::status`).
    call(&b, Request::Kill { name, signal }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct RemoveQuery {
    #[serde(default)]
    force: Option<String>,
}

/// `DELETE /containers/{id}`: a running container only with `force`, as in Docker.
pub async fn remove(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    writable(&b, &name).await?;
    let force = matches!(q.force.as_deref(), Some("1" | "true" | "True"));
    if !force && !is_down(status(&b, &name).await?.as_ref()) {
        return Err(DockerError::Conflict(format!(
            "cannot remove container \"/{name}\": container is running: stop the container before removing or force remove"
        )));
    }
    call(&b, Request::Delete { name: name.clone() })
        .await
        .map_err(read_only)?;
    until(&b, &name, "go away", |s| s.is_none()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    #[serde(default)]
    condition: Option<String>,
}

/// `POST /containers/{id}/wait`: the exit code once it is not running (`not-running`, the
/// default), after its next exit (`next-exit`), or once removed (`removed`). As Docker does, the
/// answer's headers go out at once and the body when the condition is met: the CLI's `run`
/// sends this request before `start` and waits for the headers alone.
pub async fn wait(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Response, DockerError> {
    let name = find(&b, &id).await?;
    let condition = q.condition.unwrap_or_else(|| "not-running".into());
    if !["not-running", "next-exit", "removed"].contains(&condition.as_str()) {
        return Err(DockerError::BadRequest(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    let body = futures_util::stream::once(async move {
        let answer = match wait_for(&b, &name, &condition).await {
            Ok(code) => json!({"StatusCode": code}),
            Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
        };
        Ok::<_, std::convert::Infallible>(answer.to_string())
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

/// Watches `name` until `condition` holds; its last exit code.
async fn wait_for(b: &Shared, name: &str, condition: &str) -> Result<i32, DockerError> {
    let mut seen_running = false;
    let mut last: Option<ContainerStatus> = None;
    let mut changes = Changes::new(b);
    loop {
        let s = status(b, name).await?;
        let down = is_down(s.as_ref());
        seen_running |= !down;
        let done = match condition {
            "next-exit" => down && seen_running,
            "removed" => s.is_none(),
            _ => down,
        };
        if s.is_some() {
            last = s;
        }
        if done {
            return Ok(last.and_then(|s| s.last_exit).map_or(0, |x| x.status));
        }
        changes.next(NO_CHANGE).await;
    }
}

/// Watches until `new` is listed and `old` is gone (a rename).
pub(super) async fn settle(b: &Shared, new: &str, old: &str) -> Result<(), DockerError> {
    until(b, new, "appear", |s| s.is_some()).await?;
    until(b, old, "go away", |s| s.is_none()).await?;
    Ok(())
}

/// Whether a container made with AutoRemove is to go: it ran and is no longer running (held
/// stopped after a run, or ended for good).
pub fn auto_removable(s: &ContainerStatus, auto_remove: bool) -> bool {
    auto_remove
        && s.last_exit.is_some()
        && matches!(s.phase, Phase::Exited | Phase::Failed | Phase::Stopped)
}

/// Removes the containers made with AutoRemove once they ended, for as long as berthd serves
/// the API (a container that ended while berthd was down goes at its start).
pub async fn auto_remove(b: Shared) {
    // The answer per container and spec: its labels are read once.
    let mut labelled: std::collections::HashMap<(String, Option<String>), bool> =
        Default::default();
    let mut changes = Changes::new(&b);
    loop {
        if let Ok(list) = all(&b).await {
            for s in list {
                if !matches!(s.phase, Phase::Exited | Phase::Failed | Phase::Stopped)
                    || s.last_exit.is_none()
                {
                    continue;
                }
                let key = (s.name.clone(), s.spec_hash.clone());
                let auto = match labelled.get(&key) {
                    Some(a) => *a,
                    None => {
                        let Ok(i) = call(
                            &b,
                            Request::Inspect {
                                name: s.name.clone(),
                            },
                        )
                        .await
                        else {
                            continue;
                        };
                        let a = i["spec"]["labels"][AUTO_REMOVE] == "true";
                        labelled.insert(key, a);
                        a
                    }
                };
                if auto_removable(&s, auto) {
                    tracing::info!(container = %s.name, "removing the container (AutoRemove)");
                    if let Err(e) = call(
                        &b,
                        Request::Delete {
                            name: s.name.clone(),
                        },
                    )
                    .await
                    {
                        tracing::warn!(container = %s.name, error = %e, "auto-remove failed");
                    }
                    labelled.retain(|(n, _), _| *n != s.name);
                }
            }
        }
        // Without change reports, a slower poll: this runs for berthd's life.
        changes.next(Duration::from_secs(2)).await;
    }
}

//! Docker's exec: `POST /containers/{id}/exec` records what to run, `POST /exec/{id}/start` runs
//! it through the container's shim (its `Exec` request, as `berth exec` does: berthd forks
//! nothing), on the hijacked connection or detached; `GET /exec/{id}/json` and `POST
//! /exec/{id}/resize`. Exec instances live in berthd's memory, as in Docker. Runs in berthd.

use super::hijack::{ClientIn, ClientOut, hijack, pump_input, send};
use super::lifecycle::{find, is_down, status};
use super::{DockerError, Shared};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_proto::protocol::{ConsoleSize, ExecRequest, ShimClient};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the output of an ended process may take to drain (a background process that keeps
/// the output open is not waited for longer).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);
/// Ended instances kept for their exit code, at most.
const KEEP: usize = 256;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    #[serde(default)]
    attach_stdin: bool,
    #[serde(default)]
    attach_stdout: bool,
    #[serde(default)]
    attach_stderr: bool,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    cmd: Vec<String>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    working_dir: String,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    console_size: Option<[u16; 2]>,
    #[serde(default)]
    detach_keys: String,
}

struct Instance {
    container: String,
    bundle: std::path::PathBuf,
    cfg: ExecConfig,
    started: bool,
    running: bool,
    pid: i32,
    exit_code: Option<i32>,
    /// The terminal's master while it runs (for resize).
    master: Option<Arc<OwnedFd>>,
    seq: u64,
}

static EXECS: LazyLock<Mutex<HashMap<String, Instance>>> = LazyLock::new(Default::default);

fn execs() -> std::sync::MutexGuard<'static, HashMap<String, Instance>> {
    EXECS.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_such_exec(id: &str) -> DockerError {
    DockerError::NotFound(format!("No such exec instance: {id}"))
}

fn new_id(name: &str) -> (String, u64) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (
        super::containers::container_id(&format!("exec-{name}-{nanos}-{seq}")),
        seq,
    )
}

/// `POST /containers/{id}/exec`: 201 with the instance's ID; 409 when the container does not run.
pub async fn create(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Json(cfg): Json<ExecConfig>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let name = find(&b, &id).await?;
    if is_down(status(&b, &name).await?.as_ref()) {
        return Err(DockerError::Conflict(format!(
            "container {} is not running",
            super::containers::container_id(&name)
        )));
    }
    if cfg.cmd.is_empty() {
        return Err(DockerError::BadRequest("No exec command specified".into()));
    }
    if cfg.privileged {
        return Err(DockerError::BadRequest(
            "berth does not support Privileged in an exec's config".into(),
        ));
    }
    let t = super::attach::target(&b, &name).await?;
    // As Docker: a frozen container would freeze the exec's start too.
    if t.paused {
        return Err(DockerError::Conflict(format!(
            "Container {} is paused, unpause the container before exec",
            super::containers::container_id(&name)
        )));
    }
    let (xid, seq) = new_id(&name);
    let mut all = execs();
    if all.len() >= KEEP {
        // The oldest ended instances go first.
        let mut ended: Vec<(u64, String)> = all
            .iter()
            .filter(|(_, i)| !i.running)
            .map(|(k, i)| (i.seq, k.clone()))
            .collect();
        ended.sort();
        for (_, k) in ended.into_iter().take(all.len() + 1 - KEEP) {
            all.remove(&k);
        }
    }
    all.insert(
        xid.clone(),
        Instance {
            container: name,
            bundle: t.bundle,
            cfg,
            started: false,
            running: false,
            pid: 0,
            exit_code: None,
            master: None,
            seq,
        },
    );
    Ok((StatusCode::CREATED, Json(json!({"Id": xid}))))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartBody {
    #[serde(default)]
    detach: bool,
    #[serde(default)]
    tty: Option<bool>,
    #[serde(default)]
    console_size: Option<[u16; 2]>,
}

/// The shim's request for an instance.
fn request(cfg: &ExecConfig, tty: bool, size: Option<[u16; 2]>) -> ExecRequest {
    ExecRequest {
        args: cfg.cmd.clone(),
        env: crate::cli::exec::exec_env(cfg.env.clone().unwrap_or_default(), tty, None),
        cwd: Some(cfg.working_dir.clone()).filter(|w| !w.is_empty()),
        user: Some(cfg.user.clone()).filter(|u| !u.is_empty()),
        tty,
        console_size: size
            .filter(|s| tty && s[0] > 0 && s[1] > 0)
            .map(|[rows, cols]| ConsoleSize { rows, cols }),
    }
}

/// `POST /exec/{id}/start`.
pub async fn start(
    State(_b): State<Shared>,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Result<Response, DockerError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| DockerError::BadRequest(format!("reading the request: {e}")))?;
    let body: StartBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| DockerError::BadRequest(format!("invalid exec start body: {e}")))?
    };
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::empty());
    let (shim_req, bundle, stdin) = {
        let mut all = execs();
        let i = all.get_mut(&id).ok_or_else(|| no_such_exec(&id))?;
        if i.started {
            return Err(DockerError::Conflict(format!(
                "Error: Exec command {id} has already run"
            )));
        }
        i.started = true;
        i.running = true;
        let tty = body.tty.unwrap_or(i.cfg.tty);
        i.cfg.tty = tty;
        let size = body.console_size.or(i.cfg.console_size);
        (
            request(&i.cfg, tty, size),
            i.bundle.clone(),
            i.cfg.attach_stdin && !body.detach,
        )
    };
    let tty = shim_req.tty;
    if body.detach {
        let xid = id.clone();
        tokio::spawn(async move {
            let _ = run(&xid, shim_req, bundle, None, None).await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    // Errors starting the process come before the upgrade where they can (the container gone).
    if !bundle.join(berth_proto::SOCKET_FILE).exists() {
        finish(&id, None);
        return Err(DockerError::Conflict(format!(
            "container of exec {id} is not running"
        )));
    }
    let _ = tty;
    Ok(hijack(req, shim_req.tty, move |input, out| async move {
        let input = stdin.then_some(input);
        let _ = run(&id, shim_req, bundle, input, Some(out)).await;
    }))
}

/// Records the end of an instance.
fn finish(id: &str, code: Option<i32>) {
    if let Some(i) = execs().get_mut(id) {
        i.running = false;
        i.master = None;
        i.exit_code = Some(code.unwrap_or(126));
    }
}

/// Runs the instance to its end: its output to `out` (none when detached), `input` to its
/// stdin. The exit code is recorded before the connection closes, so the client's inspect that
/// follows finds it.
async fn run(
    id: &str,
    req: ExecRequest,
    bundle: std::path::PathBuf,
    input: Option<ClientIn>,
    mut out: Option<ClientOut>,
) -> std::io::Result<()> {
    let r = if req.tty {
        run_tty(id, req, bundle, input, out.as_mut()).await
    } else {
        run_pipes(id, req, bundle, input, out.as_mut()).await
    };
    if let Err(e) = &r {
        tracing::debug!(exec = id, error = %e, "docker exec failed");
        if let Some(o) = out.as_mut() {
            let msg = format!("exec failed: {e}\n");
            let _ = send(o, false, 2, msg.as_bytes()).await;
        }
    }
    finish(id, r.as_ref().ok().copied());
    if let Some(mut o) = out {
        let _ = o.shutdown().await;
    }
    r.map(|_| ())
}

fn started(id: &str, pid: i32, master: Option<Arc<OwnedFd>>) {
    if let Some(i) = execs().get_mut(id) {
        i.pid = pid;
        i.master = master;
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn shim_err(e: berth_proto::protocol::ClientError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Without a terminal: pipes for stdin, stdout and stderr, passed to the shim with the request.
async fn run_pipes(
    id: &str,
    req: ExecRequest,
    bundle: std::path::PathBuf,
    input: Option<ClientIn>,
    out: Option<&mut ClientOut>,
) -> std::io::Result<i32> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (mut client, pid) = tokio::task::spawn_blocking(move || {
        let mut c = ShimClient::for_bundle(&bundle).map_err(shim_err)?;
        let pid = c
            .exec(
                &req,
                [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
            )
            .map_err(shim_err)?;
        // The process has its copies; ours close here, so its end is the pipes' end.
        drop((in_r, out_w, err_w));
        Ok::<_, std::io::Error>((c, pid))
    })
    .await
    .map_err(std::io::Error::other)??;
    started(id, pid, None);
    match input {
        Some(i) => {
            let w = tokio::net::unix::pipe::Sender::from_owned_fd(in_w)?;
            tokio::spawn(pump_input(i, w));
        }
        None => drop(in_w),
    }
    let exit = tokio::task::spawn_blocking(move || client.wait_exit());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    for (stream, fd) in [(1u8, out_r), (2u8, err_r)] {
        let mut r = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 || tx.send((stream, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut out = out;
    let mut exit = std::pin::pin!(exit);
    let mut code = None;
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some((stream, data)) => {
                    if let Some(o) = out.as_mut()
                        && send(o, false, stream, &data).await.is_err()
                    {
                        out = None;
                    }
                }
                None => break,
            },
            c = &mut exit, if code.is_none() => {
                code = Some(c.map_err(std::io::Error::other)?.map_err(shim_err)?);
                // The output left in the pipes, then the end (not waiting on background holders).
                let drain = async {
                    while let Some((stream, data)) = rx.recv().await {
                        if let Some(o) = out.as_mut() && send(o, false, stream, &data).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(OUTPUT_DRAIN, drain).await;
                break;
            }
        }
    }
    match code {
        Some(c) => Ok(c),
        None => exit.await.map_err(std::io::Error::other)?.map_err(shim_err),
    }
}

/// With a terminal: the shim hands back its master; bytes are copied both ways.
async fn run_tty(
    id: &str,
    req: ExecRequest,
    bundle: std::path::PathBuf,
    input: Option<ClientIn>,
    out: Option<&mut ClientOut>,
) -> std::io::Result<i32> {
    let (client, pid, master) = tokio::task::spawn_blocking(move || {
        let mut c = ShimClient::for_bundle(&bundle).map_err(shim_err)?;
        let (pid, master) = c.exec_tty(&req).map_err(shim_err)?;
        Ok::<_, std::io::Error>((c, pid, master))
    })
    .await
    .map_err(std::io::Error::other)??;
    let master = Arc::new(master);
    started(id, pid, Some(master.clone()));
    let mut client = client;
    let exit = tokio::task::spawn_blocking(move || client.wait_exit());
    if let Some(i) = input {
        let w =
            tokio::fs::File::from_std(std::fs::File::from(master.as_fd().try_clone_to_owned()?));
        tokio::spawn(pump_input(i, w));
    }
    let mut r =
        tokio::fs::File::from_std(std::fs::File::from(master.as_fd().try_clone_to_owned()?));
    drop(master);
    let copy = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = out;
        // The master reads EIO once no process holds the terminal.
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Some(o) = out.as_mut()
                && send(o, true, 1, &buf[..n]).await.is_err()
            {
                out = None;
            }
        }
    };
    let mut copy = std::pin::pin!(copy);
    let mut exit = std::pin::pin!(exit);
    let code = tokio::select! {
        _ = &mut copy => exit.await,
        c = &mut exit => {
            let _ = tokio::time::timeout(OUTPUT_DRAIN, copy).await;
            c
        }
    };
    code.map_err(std::io::Error::other)?.map_err(shim_err)
}

/// `GET /exec/{id}/json`.
pub async fn inspect(Path(id): Path<String>) -> Result<Json<Value>, DockerError> {
    let all = execs();
    let i = all.get(&id).ok_or_else(|| no_such_exec(&id))?;
    Ok(Json(json!({
        "ID": id,
        "Running": i.running,
        "ExitCode": i.exit_code,
        "ProcessConfig": {
            "tty": i.cfg.tty,
            "entrypoint": i.cfg.cmd.first(),
            "arguments": i.cfg.cmd.get(1..).unwrap_or_default(),
            "privileged": false,
            "user": i.cfg.user,
        },
        "OpenStdin": i.cfg.attach_stdin,
        "OpenStdout": i.cfg.attach_stdout,
        "OpenStderr": i.cfg.attach_stderr,
        "CanRemove": false,
        "ContainerID": super::containers::container_id(&i.container),
        "DetachKeys": i.cfg.detach_keys,
        "Pid": i.pid,
    })))
}

/// `POST /exec/{id}/resize`: TIOCSWINSZ on the master berthd holds.
pub async fn resize(
    Path(id): Path<String>,
    Query(q): Query<super::attach::ResizeQuery>,
) -> Result<StatusCode, DockerError> {
    let master = {
        let all = execs();
        let i = all.get(&id).ok_or_else(|| no_such_exec(&id))?;
        i.master.clone().ok_or_else(|| {
            DockerError::Conflict(format!("exec {id} has no terminal, or it ended"))
        })?
    };
    let size = ConsoleSize {
        rows: q.h.unwrap_or(0),
        cols: q.w.unwrap_or(0),
    };
    size.set_on(master.as_fd())
        .map_err(|e| DockerError::Internal(format!("resizing exec {id}: {e}")))?;
    Ok(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_docker_exec_sends_becomes_the_shims_request() {
        let cfg: ExecConfig = serde_json::from_value(json!({
            "AttachStdin": true, "AttachStdout": true, "AttachStderr": true, "Tty": true,
            "Env": ["A=1"], "Cmd": ["sh", "-c", "exit 3"], "User": "1000", "WorkingDir": "/tmp",
            "ConsoleSize": [24, 80], "DetachKeys": "", "Privileged": false,
        }))
        .unwrap();
        let r = request(&cfg, true, cfg.console_size);
        assert_eq!(r.args, ["sh", "-c", "exit 3"]);
        assert_eq!(r.env, ["A=1", "TERM=xterm"]);
        assert_eq!(r.cwd.as_deref(), Some("/tmp"));
        assert_eq!(r.user.as_deref(), Some("1000"));
        assert_eq!(r.console_size, Some(ConsoleSize { rows: 24, cols: 80 }));
        let r = request(&cfg, false, Some([0, 0]));
        assert_eq!(r.env, ["A=1"]);
        assert_eq!(r.console_size, None);
        let empty = ExecConfig::default();
        let r = request(&empty, false, None);
        assert_eq!((r.cwd, r.user), (None, None));
    }
}

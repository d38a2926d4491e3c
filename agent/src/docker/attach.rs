//! `POST /containers/{id}/attach` and `/resize`. A container without a terminal writes straight
//! into its unit's journal stream, so its output is followed in the journal from the moment of
//! the attach (journald keeps what was written before berthd could reach the shim, which `docker
//! run` needs: it attaches before it starts the container). The shim writes one last line on that
//! same stream once the container ended, after everything the container wrote: the attach ends
//! there, with every line delivered. A terminal, and stdin, go through the shim's `Attach`. Runs
//! in berthd.

use super::hijack::{ClientIn, ClientOut, hijack, pump_input, send};
use super::lifecycle::{Changes, STDIN_ONCE, find, status};
use super::{DockerError, Shared, call};
use crate::api::Request;
use crate::reconcile::status::{ContainerStatus, Phase};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long the end of a container's output may take to reach the journal file after berthd saw
/// the container end (journald's queue; its followers are told at most every 250 ms).
const CATCH_UP: Duration = Duration::from_secs(3);
const CATCH_UP_STEP: Duration = Duration::from_millis(15);

#[derive(Debug, Default, Deserialize)]
pub struct AttachQuery {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    logs: Option<String>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True"))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What the attach needs to know of the container.
pub struct Target {
    pub name: String,
    pub tty: bool,
    pub stdin_open: bool,
    pub stdin_once: bool,
    pub journal_dir: Option<String>,
    pub bundle: std::path::PathBuf,
    pub paused: bool,
}

pub async fn target(b: &Shared, name: &str) -> Result<Target, DockerError> {
    let i = call(
        b,
        Request::Inspect {
            name: name.to_owned(),
        },
    )
    .await?;
    let info = call(b, Request::Info).await?;
    Ok(Target {
        name: name.to_owned(),
        tty: i["spec"]["tty"].as_bool().unwrap_or(false),
        stdin_open: i["spec"]["stdin_open"].as_bool().unwrap_or(false),
        stdin_once: i["spec"]["labels"][STDIN_ONCE] == "true",
        journal_dir: info["journal_dir"].as_str().map(str::to_owned),
        bundle: std::path::PathBuf::from(i["bundle"].as_str().unwrap_or_default()),
        paused: i["paused"] == true,
    })
}

/// `POST /containers/{id}/attach`.
pub async fn attach(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<AttachQuery>,
    req: axum::extract::Request,
) -> Result<Response, DockerError> {
    let name = find(&b, &id).await?;
    let t = target(&b, &name).await?;
    let since = now_us();
    let (logs, stream) = (truthy(&q.logs), truthy(&q.stream));
    let output = truthy(&q.stdout) || truthy(&q.stderr);
    let stdin = truthy(&q.stdin) && t.stdin_open;
    let tty = t.tty;
    Ok(hijack(req, tty, move |input, mut out| async move {
        if logs && !tty && output {
            // The container's output so far (with a terminal, the journal holds it as lines:
            // only the live output is sent).
            let _ = journal_output(&b, &t, since, History::Before, &mut out).await;
        }
        if !stream {
            let _ = out.shutdown().await;
            return;
        }
        if tty {
            attach_terminal(&b, &t, since, stdin.then_some(input), output, out).await;
            return;
        }
        if stdin {
            let (b2, name) = (b.clone(), t.name.clone());
            let (once, bundle) = (t.stdin_once, t.bundle.clone());
            tokio::spawn(async move {
                if let Some(sock) = shim_attach(&b2, &name, &bundle, since, once).await {
                    pump_input(input, sock).await;
                }
            });
        }
        if output {
            let _ = journal_output(&b, &t, since, History::After, &mut out).await;
        } else {
            // Nothing to send: the connection lasts as long as the container runs.
            wait_end(&b, &t.name, since).await;
        }
        let _ = out.shutdown().await;
    }))
}

/// Whether `s` shows the container ended after `since_us` (or gone).
fn ended(s: Option<&ContainerStatus>, since_us: u64) -> bool {
    match s {
        None => true,
        Some(s) => {
            !matches!(s.phase, Phase::Running | Phase::Starting)
                && s.last_exit
                    .as_ref()
                    .is_some_and(|x| x.finished_at_ms * 1000 >= since_us)
        }
    }
}

async fn wait_end(b: &Shared, name: &str, since_us: u64) {
    let mut changes = Changes::new(b);
    while !ended(status(b, name).await.ok().flatten().as_ref(), since_us) {
        changes.next(Duration::from_secs(1)).await;
    }
}

/// The container's terminal through its shim: raw output to the client, the client's input to
/// the terminal, until the shim closes the connection (the container ended).
async fn attach_terminal(
    b: &Shared,
    t: &Target,
    since_us: u64,
    input: Option<ClientIn>,
    output: bool,
    mut out: ClientOut,
) {
    let Some(sock) = shim_attach(b, &t.name, &t.bundle, since_us, false).await else {
        let _ = out.shutdown().await;
        return;
    };
    let (mut from, to) = sock.into_split();
    // The shim takes a half-closed connection for a closed one: the write side stays open until
    // the output ends, so that the end of the client's input does not end its output.
    let (_done, done) = tokio::sync::oneshot::channel::<()>();
    if let Some(mut i) = input {
        tokio::spawn(async move {
            let mut to = to;
            let _ = tokio::io::copy(&mut i, &mut to).await;
            let _ = done.await;
        });
    }
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        use tokio::io::AsyncReadExt;
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if output => {
                if send(&mut out, true, 1, &buf[..n]).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
        }
    }
    let _ = out.shutdown().await;
}

/// The shim's attach connection, once the container runs; `None` when it ended first.
async fn shim_attach(
    b: &Shared,
    name: &str,
    bundle: &std::path::Path,
    since_us: u64,
    stdin_once: bool,
) -> Option<tokio::net::UnixStream> {
    let mut changes = Changes::new(b);
    loop {
        let s = status(b, name).await.ok().flatten();
        if ended(s.as_ref(), since_us) {
            return None;
        }
        if s.is_some_and(|s| s.phase == Phase::Running) {
            let dir = bundle.to_owned();
            let sock = tokio::task::spawn_blocking(move || {
                berth_proto::protocol::ShimClient::for_bundle(&dir)
                    .and_then(|c| c.attach_with(stdin_once))
                    .ok()
                    .and_then(|s| s.set_nonblocking(true).ok().map(|_| s))
            })
            .await
            .ok()
            .flatten();
            if let Some(s) = sock.and_then(|s| tokio::net::UnixStream::from_std(s).ok()) {
                return Some(s);
            }
            // Its socket may not be there yet: look again soon.
            changes.next(Duration::from_millis(20)).await;
            continue;
        }
        changes.next(Duration::from_secs(1)).await;
    }
}

/// Which part of the journal an attach sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum History {
    /// The lines written before the attach (`logs=1`).
    Before,
    /// The lines written from the attach on, until the container's end.
    After,
}

/// What one journal entry means to an attach.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A line of the container's output, framed.
    Line(Vec<u8>),
    /// The shim's line after the container's last: the output is complete.
    End,
    Skip,
}

/// The shim's last line on the container's stream (`teardown.rs`).
pub fn is_end_line(msg: &str, name: &str) -> bool {
    msg.strip_prefix("berth-shim: container ")
        .and_then(|m| m.strip_prefix(name))
        .is_some_and(|m| m.starts_with(" exited:"))
}

/// [`entry`] of a journal entry read from the journal, whose cursor is where a later read resumes.
fn entry_at(
    v: &Value,
    cursor: &mut Option<String>,
    name: &str,
    since_us: u64,
    history: History,
) -> Entry {
    if let Some(c) = v["__CURSOR"].as_str() {
        *cursor = Some(c.to_owned());
    }
    entry(v, name, since_us, history)
}

/// The decision for one entry of the unit's journal.
pub fn entry(v: &Value, name: &str, since_us: u64, history: History) -> Entry {
    let at: u64 = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let before = at < since_us;
    if before != (history == History::Before) {
        return Entry::Skip;
    }
    if v["MESSAGE"].as_str().is_some_and(|m| is_end_line(m, name)) {
        return if before { Entry::Skip } else { Entry::End };
    }
    match super::logs::frame(v, false, false) {
        Some(f) => Entry::Line(f),
        None => Entry::Skip,
    }
}

fn journalctl(
    t: &Target,
    follow: bool,
    after: Option<&str>,
    since_us: u64,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("journalctl");
    if let Some(d) = &t.journal_dir {
        cmd.arg("-D").arg(d);
    }
    cmd.args([
        "--no-pager",
        "-o",
        "json",
        "--output-fields=MESSAGE,PRIORITY",
    ]);
    cmd.arg(format!(
        "_SYSTEMD_UNIT={}",
        crate::systemd::unit_name(&t.name)
    ));
    cmd.arg("_TRANSPORT=stdout");
    match after {
        Some(c) => {
            cmd.arg(format!("--after-cursor={c}"));
        }
        // A second early: the decision per entry is exact.
        None if since_us > 0 => {
            cmd.arg(format!(
                "--since=@{}",
                (since_us / 1_000_000).saturating_sub(1)
            ));
        }
        None => {}
    }
    if follow {
        cmd.arg("--follow");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Sends the container's output from the journal. `History::Before`: what is there now.
/// `History::After`: followed until the shim's last line, or until the container ended and that
/// line did not come (a shim that was killed).
async fn journal_output(
    b: &Shared,
    t: &Target,
    since_us: u64,
    history: History,
    out: &mut ClientOut,
) -> std::io::Result<()> {
    let follow = history == History::After;
    let from = if follow { since_us } else { 0 };
    let mut child = journalctl(t, follow, None, from).spawn()?;
    let mut lines =
        BufReader::new(child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?).lines();
    let mut cursor: Option<String> = None;
    let mut changes = Changes::new(b);
    let mut ended_seen = false;
    loop {
        tokio::select! {
            l = lines.next_line() => match l? {
                Some(l) => {
                    let Ok(v) = serde_json::from_str::<Value>(&l) else { continue };
                    match entry_at(&v, &mut cursor, &t.name, since_us, history) {
                        Entry::Line(f) => out.write_all(&f).await?,
                        Entry::End => return out.flush().await,
                        Entry::Skip => {}
                    }
                    out.flush().await?;
                }
                None => break,
            },
            _ = changes.next(Duration::from_secs(1)), if follow && !ended_seen => {
                ended_seen = ended(status(b, &t.name).await.ok().flatten().as_ref(), since_us);
                if ended_seen {
                    break;
                }
            }
        }
    }
    drop(lines);
    drop(child);
    if !follow {
        return out.flush().await;
    }
    // The container ended: its last lines (and the shim's) may still be on their way into the
    // journal file, which a read sees at once where a follower is told later.
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let o = journalctl(t, false, cursor.as_deref(), since_us)
            .output()
            .await?;
        for l in o.stdout.split(|c| *c == b'\n') {
            let Ok(v) = serde_json::from_slice::<Value>(l) else {
                continue;
            };
            match entry_at(&v, &mut cursor, &t.name, since_us, history) {
                Entry::Line(f) => out.write_all(&f).await?,
                Entry::End => return out.flush().await,
                Entry::Skip => {}
            }
        }
        out.flush().await?;
        if Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(CATCH_UP_STEP).await;
    }
}

/// Docker's `h`/`w` of a terminal resize (containers' and execs' alike).
#[derive(Debug, Deserialize)]
pub struct ResizeQuery {
    #[serde(default)]
    pub(super) h: Option<u16>,
    #[serde(default)]
    pub(super) w: Option<u16>,
}

/// `POST /containers/{id}/resize`: the container's terminal size, through its shim.
pub async fn resize(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<ResizeQuery>,
) -> Result<StatusCode, DockerError> {
    let name = find(&b, &id).await?;
    let t = target(&b, &name).await?;
    let (rows, cols) = (q.h.unwrap_or(0), q.w.unwrap_or(0));
    let dir = t.bundle.clone();
    let r = tokio::task::spawn_blocking(move || {
        berth_proto::protocol::ShimClient::for_bundle(&dir).and_then(|mut c| c.resize(rows, cols))
    })
    .await
    .map_err(|e| DockerError::Internal(e.to_string()))?;
    match r {
        Ok(()) => Ok(StatusCode::OK),
        Err(e) => Err(DockerError::Conflict(format!(
            "cannot resize the terminal of container {name}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_shims_last_line_ends_the_attach() {
        let e = |msg: &str, at: u64, h| {
            entry(
                &json!({"MESSAGE": msg, "__REALTIME_TIMESTAMP": at.to_string()}),
                "web",
                1000,
                h,
            )
        };
        let end = "berth-shim: container web exited: Exited(0), status 0";
        assert_eq!(e(end, 1001, History::After), Entry::End);
        // An earlier run's end is history: skipped, and no end.
        assert_eq!(e(end, 999, History::Before), Entry::Skip);
        assert_eq!(e(end, 999, History::After), Entry::Skip);
        // Another container's name that starts alike is not the end.
        assert_eq!(
            e("berth-shim: container web2 exited: x", 1001, History::After),
            Entry::Line(b"\x01\0\0\0\0\0\0\x25berth-shim: container web2 exited: x\n".to_vec())
        );
        assert_eq!(
            e("hi", 1000, History::After),
            Entry::Line(b"\x01\0\0\0\0\0\0\x03hi\n".to_vec())
        );
        assert_eq!(e("hi", 1000, History::Before), Entry::Skip);
        assert_eq!(
            e("old", 10, History::Before),
            Entry::Line(b"\x01\0\0\0\0\0\0\x04old\n".to_vec())
        );
    }

    #[test]
    fn ended_after_the_attach_only() {
        let mut s = ContainerStatus::new("web", Phase::Stopped);
        assert!(!ended(Some(&s), 5_000_000));
        s.last_exit = Some(berth_proto::ExitRecord {
            exit: berth_proto::ContainerExit::Exited(0),
            status: 0,
            oom_killed: false,
            unhealthy: false,
            finished_at_ms: 4_000,
        });
        // An exit from before the attach (`docker start -a` of an exited container).
        assert!(!ended(Some(&s), 5_000_000));
        s.last_exit.as_mut().unwrap().finished_at_ms = 6_000;
        s.phase = Phase::Exited;
        assert!(ended(Some(&s), 5_000_000));
        s.phase = Phase::Running;
        assert!(!ended(Some(&s), 5_000_000));
        assert!(ended(None, 5_000_000));
    }
}

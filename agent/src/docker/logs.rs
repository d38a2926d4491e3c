//! `GET /containers/{id}/logs`: the container's lines from journald (`journalctl -o json`, run by
//! berthd and killed when the client goes), in Docker's multiplexed stream format, or raw for a
//! tty container, with `follow`, `tail`, `since`, `until` and `timestamps`. Runs in berthd.

use super::lifecycle::find;
use super::{DockerError, Shared, call};
use crate::api::Request;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
    #[serde(default)]
    follow: Option<String>,
    #[serde(default)]
    timestamps: Option<String>,
    #[serde(default)]
    tail: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("1" | "true" | "True"))
}

/// A Unix time as Docker sends it (`1700000000` or `1700000000.5`; `0`: unset).
fn unix_time(v: &Option<String>) -> Result<Option<String>, DockerError> {
    let Some(s) = v.as_deref().filter(|s| !s.is_empty() && *s != "0") else {
        return Ok(None);
    };
    let secs: f64 = s
        .parse()
        .map_err(|_| DockerError::BadRequest(format!("invalid time {s:?}")))?;
    Ok(Some(format!("@{}", secs.floor() as i64)))
}

/// journalctl's arguments for a logs request: the container's own output lines only.
pub fn journalctl_args(name: &str, q: &LogsQuery) -> Result<Vec<String>, DockerError> {
    let mut a: Vec<String> = ["--no-pager", "-o", "json"].map(String::from).into();
    a.push(format!("_SYSTEMD_UNIT={}", crate::systemd::unit_name(name)));
    a.push("_TRANSPORT=stdout".into());
    if truthy(&q.follow) {
        a.push("--follow".into());
    }
    match q.tail.as_deref() {
        None | Some("" | "all") => {}
        Some(n) => {
            let n: u64 = n
                .parse()
                .map_err(|_| DockerError::BadRequest(format!("invalid tail {n:?}")))?;
            a.push(format!("--lines={n}"));
        }
    }
    if let Some(t) = unix_time(&q.since)? {
        a.push(format!("--since={t}"));
    }
    if let Some(t) = unix_time(&q.until)? {
        a.push(format!("--until={t}"));
    }
    Ok(a)
}

/// One journal entry as Docker sends it: a frame `[stream, 0, 0, 0, len BE32]` + the line, or
/// the line alone for a tty; `None` for entries that are not the container's output.
pub fn frame(entry: &Value, tty: bool, timestamps: bool) -> Option<Vec<u8>> {
    let mut line = match &entry["MESSAGE"] {
        Value::String(s) => s.clone().into_bytes(),
        // journald gives a line that is not UTF-8 as its bytes.
        Value::Array(b) => b
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as u8))
            .collect(),
        _ => return None,
    };
    line.push(b'\n');
    if timestamps {
        let usec: i64 = entry["__REALTIME_TIMESTAMP"].as_str()?.parse().ok()?;
        let t = chrono::DateTime::from_timestamp_micros(usec)?
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        line.splice(0..0, format!("{t} ").into_bytes());
    }
    if tty {
        return Some(line);
    }
    // journald keeps one stream per unit; its stderr lines carry PRIORITY 3 when the shim
    // passes them apart.
    let stream = if entry["PRIORITY"] == "3" { 2 } else { 1 };
    let mut out = vec![stream, 0, 0, 0];
    out.extend_from_slice(&(line.len() as u32).to_be_bytes());
    out.extend_from_slice(&line);
    Some(out)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(
    State(b): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, DockerError> {
    if !truthy(&q.stdout) && !truthy(&q.stderr) {
        return Err(DockerError::BadRequest(
            "Bad parameters: you must choose at least one stream".into(),
        ));
    }
    let name = find(&b, &id).await?;
    let inspect = call(&b, Request::Inspect { name: name.clone() }).await?;
    let tty = inspect["oci_config"]["process"]["terminal"]
        .as_bool()
        .unwrap_or(false);
    let info = call(&b, Request::Info).await?;
    let mut cmd = tokio::process::Command::new("journalctl");
    if let Some(d) = info["journal_dir"].as_str() {
        cmd.arg("-D").arg(d);
    }
    cmd.args(journalctl_args(&name, &q)?)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        // The client hanging up drops the body, and with it journalctl.
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| DockerError::Internal(format!("running journalctl for {name}: {e}")))?;
    let Some(out) = child.stdout.take() else {
        return Err(DockerError::Internal("journalctl has no stdout".into()));
    };
    let timestamps = truthy(&q.timestamps);
    let lines = BufReader::new(out).lines();
    let state = (lines, child, name);
    let body = stream::unfold(state, move |(mut lines, child, name)| async move {
        loop {
            match lines.next_line().await {
                Ok(Some(l)) => {
                    let Ok(v) = serde_json::from_str::<Value>(&l) else {
                        continue;
                    };
                    // The shim's line after each run's last is berth's, not the container's.
                    if v["MESSAGE"]
                        .as_str()
                        .is_some_and(|m| super::attach::is_end_line(m, &name))
                    {
                        continue;
                    }
                    if let Some(f) = frame(&v, tty, timestamps) {
                        let f = Ok::<_, std::io::Error>(Bytes::from(f));
                        return Some((f, (lines, child, name)));
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some((Err(e), (lines, child, name))),
            }
        }
    });
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_are_dockers() {
        let e = json!({"MESSAGE": "hello", "PRIORITY": "6", "__REALTIME_TIMESTAMP": "1700000000000001"});
        assert_eq!(
            frame(&e, false, false).unwrap(),
            b"\x01\0\0\0\0\0\0\x06hello\n"
        );
        assert_eq!(frame(&e, true, false).unwrap(), b"hello\n");
        let t = frame(&e, true, true).unwrap();
        assert_eq!(t, b"2023-11-14T22:13:20.000001000Z hello\n");
        let err = json!({"MESSAGE": [104, 105, 255], "PRIORITY": "3"});
        assert_eq!(
            frame(&err, false, false).unwrap(),
            b"\x02\0\0\0\0\0\0\x04hi\xff\n"
        );
        assert!(frame(&json!({"X": 1}), false, false).is_none());
    }

    #[test]
    fn query_to_journalctl() {
        let q = LogsQuery {
            stdout: Some("1".into()),
            follow: Some("1".into()),
            tail: Some("10".into()),
            since: Some("1700000000.25".into()),
            ..Default::default()
        };
        let a = journalctl_args("web", &q).unwrap();
        assert!(
            a.contains(&"_SYSTEMD_UNIT=berth-web.service".to_owned()),
            "{a:?}"
        );
        assert!(a.contains(&"--follow".to_owned()));
        assert!(a.contains(&"--lines=10".to_owned()));
        assert!(a.contains(&"--since=@1700000000".to_owned()));
        let bad = LogsQuery {
            tail: Some("x".into()),
            ..Default::default()
        };
        assert!(journalctl_args("web", &bad).is_err());
    }
}

//! berthd's native API on `/run/berth/berthd.sock`: one JSON request per line, one JSON response
//! per line, over a root-only unix socket (mode 0600 and a peer-credential check). The types and the
//! client are used by the `berth` CLI; the server runs in berthd (see [`crate::daemon`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Longest request line accepted (specs travel inside `apply`).
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Status of every container.
    Ps,
    /// Status of one container, with systemd's view.
    Status {
        name: String,
    },
    /// Everything known about one container: status, spec, effective config, unit.
    Inspect {
        name: String,
    },
    /// What the next pass would do, per name.
    Diff,
    /// Restart a container (its unit is stopped and started again), held stopped or not.
    Restart {
        name: String,
    },
    /// Stop a container and hold it stopped until `Start`.
    Stop {
        name: String,
    },
    /// Let a container held stopped run again.
    Start {
        name: String,
    },
    /// Send a signal (a name like `HUP` or `SIGHUP`, or a number) to the container's init.
    Kill {
        name: String,
        signal: String,
    },
    /// Freeze a running container's processes (systemd's FreezeUnit), or thaw them.
    Pause {
        name: String,
        #[serde(default)]
        paused: bool,
    },
    /// Pull an image into the store.
    Pull {
        image: String,
    },
    Images,
    /// One stored image, by name or manifest digest: its digest, size and config.
    Image {
        image: String,
    },
    /// Give a stored image a further name.
    Tag {
        image: String,
        name: String,
    },
    Rmi {
        image: String,
        #[serde(default)]
        force: bool,
    },
    /// berthd's settings the CLI needs (journal dir, run dir).
    Info,
    /// Create or replace an API-managed container from spec YAML.
    Apply {
        name: String,
        yaml: String,
        /// Held stopped from the start (Docker's create), until `Start`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stopped: bool,
    },
    /// Remove an API-managed container.
    Delete {
        name: String,
    },
    /// Run a full pass now.
    Reconcile,
    /// Every network: definition, containers on it, problems.
    Networks,
    /// One network.
    Network {
        name: String,
    },
    /// The events berthd keeps (after `since`, Unix time in nanoseconds).
    Events {
        #[serde(default)]
        since: Option<i64>,
    },
    /// Remove the store's blobs and layers that no image or container needs.
    Gc,
    /// Check credentials at a registry (`docker login`); nothing is stored.
    Login {
        server: String,
        username: String,
        password: String,
    },
    /// Declare a network through the API (kept in berthd's state dir), from its file's YAML.
    NetworkCreate {
        name: String,
        yaml: String,
    },
    /// Remove an API-declared network, refused while a container's spec names it.
    NetworkRemove {
        name: String,
    },
    /// Write stored images as one docker-archive at `path` (a file berthd may create).
    ImageSave {
        images: Vec<String>,
        path: String,
    },
    /// Import the docker-archive or oci-archive at `path` under its own name.
    ImageLoad {
        path: String,
    },
    /// The overlay layers of a container (made ready, its upper dir kept, when it has not started
    /// yet), for copies into and out of it.
    Rootfs {
        name: String,
    },
    /// Every named volume, with the containers whose spec mounts it.
    Volumes,
    /// Create a named volume (kept when it exists).
    VolumeCreate {
        name: String,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    },
    /// Remove a named volume and its data, refused while in use unless forced.
    VolumeRemove {
        name: String,
        #[serde(default)]
        force: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    Invalid,
    Conflict,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Ok { ok: Value },
    Error { error: String, kind: ErrorKind },
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot connect to berthd at {path}: {source} (is berthd running? are you root?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("talking to berthd: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad response from berthd: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("berthd closed the connection")]
    Closed,
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
}

/// Decodes one request line (its newline stripped or not); a bad one gets this error answer.
pub fn decode_request(line: &[u8]) -> Result<Request, Response> {
    serde_json::from_slice(line)
        .map_err(|e| Response::err(ErrorKind::Invalid, format!("bad request: {e}")))
}

/// What [`read_request_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line is in the buffer (without its newline).
    Line,
    /// The client closed the connection (a last line without newline is dropped).
    Closed,
    /// The line is longer than [`MAX_LINE`]: answer and close, the rest is never read.
    TooLong,
}

/// Reads one request line into `buf`, never holding more than [`MAX_LINE`] bytes of it.
pub async fn read_request_line(
    r: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(Line::Closed);
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take + usize::from(done));
        if done {
            return Ok(Line::Line);
        }
    }
}

/// A connection to berthd.
pub struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ApiError> {
        let s = UnixStream::connect(path)
            .await
            .map_err(|source| ApiError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (r, w) = s.into_split();
        Ok(Client {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    pub async fn call(&mut self, req: &Request) -> Result<Value, ApiError> {
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        self.writer.write_all(&line).await?;
        let mut resp = String::new();
        if self.reader.read_line(&mut resp).await? == 0 {
            return Err(ApiError::Closed);
        }
        match serde_json::from_str::<Response>(&resp)? {
            Response::Ok { ok } => Ok(ok),
            Response::Error { error, kind } => Err(ApiError::Remote {
                kind,
                message: error,
            }),
        }
    }
}

impl Response {
    pub fn ok(v: impl Serialize) -> Response {
        Response::Ok {
            ok: serde_json::to_value(v).unwrap_or(Value::Null),
        }
    }
    pub fn err(kind: ErrorKind, e: impl std::fmt::Display) -> Response {
        Response::Error {
            error: e.to_string(),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_lines_are_bounded() {
        let big = vec![b'x'; MAX_LINE + 1];
        let mut input: Vec<u8> = b"{\"op\":\"ps\"}\n".to_vec();
        input.extend_from_slice(&big);
        input.push(b'\n');
        let mut r = BufReader::with_capacity(4096, &input[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_request_line(&mut r, &mut buf).await.unwrap(),
            Line::Line
        );
        assert_eq!(decode_request(&buf), Ok(Request::Ps));
        assert_eq!(
            read_request_line(&mut r, &mut buf).await.unwrap(),
            Line::TooLong
        );
        assert!(buf.len() <= MAX_LINE);
        let mut r = BufReader::new(&b"{\"op\":\"ps\"}"[..]);
        assert_eq!(
            read_request_line(&mut r, &mut buf).await.unwrap(),
            Line::Closed
        );
        // not UTF-8, not JSON, unknown op: an answer each, never a closed connection
        for bad in [&b"\xff\xfe"[..], b"{", b"{\"op\":\"nope\"}", b""] {
            assert!(matches!(
                decode_request(bad),
                Err(Response::Error {
                    kind: ErrorKind::Invalid,
                    ..
                })
            ));
        }
    }

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"status","name":"web"}"#).unwrap();
        assert_eq!(r, Request::Status { name: "web".into() });
        assert!(serde_json::from_str::<Request>(r#"{"op":"status","name":"web","x":1}"#).is_err());
        let ok = serde_json::to_string(&Response::ok(1)).unwrap();
        assert_eq!(ok, r#"{"ok":1}"#);
        let e: Response =
            serde_json::from_str(r#"{"error":"no such container","kind":"not_found"}"#).unwrap();
        assert!(matches!(
            e,
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            }
        ));
    }
}

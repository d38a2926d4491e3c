//! Docker's hijacked connections (attach, exec start): the client asks for `Upgrade: tcp`, the
//! answer is `101 Switching Protocols`, and the connection then carries the container's output
//! (Docker's multiplexed frames, or raw bytes with a terminal) one way and its input the other.
//! The older form without the upgrade gets a `200` whose body is the output. Runs in berthd.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the client sends (the process's stdin).
pub type ClientIn = Box<dyn AsyncRead + Send + Unpin>;
/// What the client reads.
pub type ClientOut = Box<dyn AsyncWrite + Send + Unpin>;

const RAW: &str = "application/vnd.docker.raw-stream";
const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

/// Answers `req` by handing its connection to `session` (an upgrade when asked for, else a
/// streamed 200 without input).
pub fn hijack<F, Fut>(mut req: Request, tty: bool, session: F) -> Response
where
    F: FnOnce(ClientIn, ClientOut) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let content_type = if tty { RAW } else { MULTIPLEXED };
    if req.headers().contains_key(header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on.await {
                Ok(up) => {
                    let (r, w) = tokio::io::split(hyper_util::rt::TokioIo::new(up));
                    session(Box::new(r), Box::new(w)).await;
                }
                Err(e) => tracing::debug!(error = %e, "docker api: the upgrade failed"),
            }
        });
        return (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, "Upgrade"),
                (header::UPGRADE, "tcp"),
                (header::CONTENT_TYPE, content_type),
            ],
        )
            .into_response();
    }
    let (w, r) = tokio::io::duplex(64 * 1024);
    tokio::spawn(session(Box::new(tokio::io::empty()), Box::new(w)));
    let body = futures_util::stream::unfold(r, |mut r| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), r))
            }
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response()
}

/// The header of one frame of Docker's multiplexed stream: the stream (1 stdout, 2 stderr),
/// three zero bytes, the length big-endian.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let mut h = [stream, 0, 0, 0, 0, 0, 0, 0];
    h[4..].copy_from_slice(&(len as u32).to_be_bytes());
    h
}

/// Writes `data` of `stream` to the client: framed, or raw with a terminal.
pub async fn send(out: &mut ClientOut, tty: bool, stream: u8, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if !tty {
        out.write_all(&frame_header(stream, data.len())).await?;
    }
    out.write_all(data).await?;
    out.flush().await
}

/// Copies the client's input to `to` until the client ends it, then ends `to`'s input too.
pub async fn pump_input(mut from: ClientIn, mut to: impl AsyncWrite + Unpin) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_dockers() {
        assert_eq!(frame_header(1, 3), [1, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(frame_header(2, 0x0102_0304), [2, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn raw_with_a_terminal_framed_without() {
        let (w, mut r) = tokio::io::duplex(1024);
        let mut out: ClientOut = Box::new(w);
        send(&mut out, false, 2, b"err").await.unwrap();
        send(&mut out, true, 1, b"raw").await.unwrap();
        send(&mut out, false, 1, b"").await.unwrap();
        drop(out);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"\x02\0\0\0\0\0\0\x03errraw");
    }
}

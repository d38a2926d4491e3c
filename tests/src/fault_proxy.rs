//! A fault-injecting loopback proxy in front of a real registry (runs in the test process, one
//! thread per direction of each connection). Modes, each set through an atomic while it runs:
//! cut every connection after N bytes (or stall there while `hold` is set), stall a connection for
//! good after N bytes, flip one byte at an offset, trickle bytes after an offset, and answer the
//! first N requests whose path matches with an error status (and a `Retry-After`). Faults taken
//! from a budget (`*_left`) hit that many connections or requests, then the proxy forwards
//! faithfully. It counts the bytes it forwarded and notes when it answered with an error.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The proxy's settings and counters (shared with its threads).
#[derive(Default)]
pub struct Faults {
    /// Every connection is cut after this many bytes sent downstream (0 is read as no limit).
    pub limit: Arc<AtomicU64>,
    /// At `limit`, wait while this is set instead of cutting, then go on.
    pub hold: Arc<AtomicBool>,
    /// Connections still to stall for good once they sent `stall_after` bytes.
    pub stalls_left: AtomicU64,
    pub stall_after: AtomicU64,
    /// Connections still to get the byte at `corrupt_at` (of the connection's stream) flipped.
    pub corrupts_left: AtomicU64,
    pub corrupt_at: AtomicU64,
    /// Connections still to trickle `trickle_bytes` per 100 ms once past `trickle_after` bytes.
    pub trickles_left: AtomicU64,
    pub trickle_after: AtomicU64,
    pub trickle_bytes: AtomicU64,
    /// Requests still to answer with `status` (those whose request line contains `status_path`).
    pub status_left: AtomicU64,
    pub status: AtomicU64,
    /// Seconds for `Retry-After` with the status (u64::MAX: no header).
    pub retry_after: AtomicU64,
    pub status_path: Mutex<String>,
    /// When each error status was sent.
    pub status_sent: Mutex<Vec<Instant>>,
    /// Bytes forwarded downstream, all connections.
    pub forwarded: Arc<AtomicU64>,
}

/// Takes one from a fault budget; false when it is spent.
fn take(left: &AtomicU64) -> bool {
    left.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

pub struct CutProxy {
    pub port: u16,
    pub faults: Arc<Faults>,
    /// The cut mode's knobs (the same as `faults.limit`, `.hold`, `.forwarded`).
    pub limit: Arc<AtomicU64>,
    pub hold: Arc<AtomicBool>,
    pub forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    /// A proxy to `upstream` that cuts every connection after `limit` bytes (u64::MAX: never).
    pub fn start(upstream: u16, limit: u64) -> CutProxy {
        let faults = Arc::new(Faults {
            limit: Arc::new(AtomicU64::new(limit)),
            retry_after: AtomicU64::new(u64::MAX),
            ..Default::default()
        });
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (faults.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Relaxed) {
                let Ok((down, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = down.set_nonblocking(false);
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (d2, u2) = (
                    down.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                );
                let f2 = f.clone();
                std::thread::spawn(move || requests(d2, u2, &f2));
                let (f, st) = (f.clone(), st.clone());
                std::thread::spawn(move || responses(up, down, &f, &st));
            }
        });
        CutProxy {
            port,
            limit: faults.limit.clone(),
            hold: faults.hold.clone(),
            forwarded: faults.forwarded.clone(),
            faults,
            stop,
        }
    }

    /// Answers the next `n` requests whose path contains `path` with `status` (and
    /// `Retry-After: retry_after` seconds when given).
    pub fn fail_requests(&self, path: &str, status: u16, n: u64, retry_after: Option<u64>) {
        *self.faults.status_path.lock().expect("lock") = path.to_string();
        self.faults.status.store(status.into(), Relaxed);
        self.faults
            .retry_after
            .store(retry_after.unwrap_or(u64::MAX), Relaxed);
        self.faults.status_left.store(n, Relaxed);
    }
}

/// Downstream to upstream, one request head at a time (a pull sends GETs and HEADs, without
/// bodies), answering the ones picked for an error status itself.
fn requests(mut down: TcpStream, mut up: TcpStream, f: &Faults) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match down.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let line = String::from_utf8_lossy(&head[..head.len().min(512)]).into_owned();
            let path = f.status_path.lock().expect("lock").clone();
            if !path.is_empty() && line.contains(&path) && take(&f.status_left) {
                let code = f.status.load(Relaxed);
                let ra = match f.retry_after.load(Relaxed) {
                    u64::MAX => String::new(),
                    s => format!("Retry-After: {s}\r\n"),
                };
                let body = format!("injected {code}\n");
                let _ = write!(
                    down,
                    "HTTP/1.1 {code} Injected\r\n{ra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                f.status_sent.lock().expect("lock").push(Instant::now());
                let _ = down.shutdown(Shutdown::Both);
                let _ = up.shutdown(Shutdown::Both);
                return;
            }
            if up.write_all(&head).is_err() {
                return;
            }
        }
    }
    let _ = up.write_all(&buf);
    let _ = up.shutdown(Shutdown::Write);
}

/// Upstream to downstream, with the byte-level faults.
fn responses(mut up: TcpStream, mut down: TcpStream, f: &Faults, stop: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    let (mut stall, mut corrupt, mut trickle) = (None::<bool>, None::<bool>, None::<bool>);
    'conn: loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &mut buf[..n];
        let end = sent + n as u64;
        // each fault picks the connection when it first reaches the fault's offset
        let at = f.corrupt_at.load(Relaxed);
        if corrupt.is_none() && end > at && sent <= at {
            corrupt = Some(take(&f.corrupts_left));
        }
        if corrupt == Some(true) && end > at && sent <= at {
            data[(at - sent) as usize] ^= 0xff;
        }
        let mut from = 0usize;
        while from < n {
            let pos = sent + from as u64;
            let rest = (n - from) as u64;
            let mut step = rest;
            let stall_at = f.stall_after.load(Relaxed);
            if stall.is_none() && pos + rest > stall_at {
                stall = Some(take(&f.stalls_left));
            }
            if stall == Some(true) {
                if pos >= stall_at {
                    // silent for good: the client has to notice
                    let t = Instant::now();
                    while !stop.load(Relaxed) && t.elapsed() < Duration::from_secs(120) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    break 'conn;
                }
                step = step.min(stall_at - pos);
            }
            let limit = match f.limit.load(Relaxed) {
                0 => u64::MAX,
                l => l,
            };
            if pos >= limit {
                if !f.hold.load(Relaxed) {
                    break 'conn; // cut: close both sides mid-transfer
                }
                while f.hold.load(Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                continue;
            }
            step = step.min(limit - pos);
            let tr_at = f.trickle_after.load(Relaxed);
            if trickle.is_none() && pos + rest > tr_at {
                trickle = Some(take(&f.trickles_left));
            }
            let trickling = trickle == Some(true) && pos >= tr_at;
            if trickling {
                step = step.min(f.trickle_bytes.load(Relaxed).max(1));
            } else if trickle == Some(true) {
                step = step.min(tr_at - pos);
            }
            let step = step as usize;
            if down.write_all(&data[from..from + step]).is_err() {
                break 'conn;
            }
            f.forwarded.fetch_add(step as u64, Relaxed);
            from += step;
            if trickling {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        sent = end;
    }
    let _ = down.shutdown(Shutdown::Both);
    let _ = up.shutdown(Shutdown::Both);
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

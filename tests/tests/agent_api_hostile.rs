//! berthd's sockets against hostile and broken clients, under a real systemd booted in private
//! namespaces: the native API refuses non-root users (the socket's mode, then the peer
//! credentials), and oversized, malformed, truncated and slow requests on the native and Docker
//! API sockets get an error (or are dropped) while berthd keeps answering everyone else.

use berth_tests::agent::Agent;
use berth_tests::docker::{SOCK, with_docker_api};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

fn connect(p: &PathBuf) -> UnixStream {
    let s = UnixStream::connect(p).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Sends `req` on `s` and reads one answer line.
fn ask(s: &mut UnixStream, req: &[u8]) -> serde_json::Value {
    s.write_all(req).unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
}

/// An ordinary request on a fresh connection: berthd still serves.
fn ps_works(p: &PathBuf, what: &str) {
    let v = ask(&mut connect(p), b"{\"op\":\"ps\"}\n");
    assert!(
        v.get("ok").is_some_and(|o| o.is_array()),
        "after {what}: {v}"
    );
}

/// One HTTP/1.1 request on the Docker socket; the status line (empty when the server closed).
fn http(p: &PathBuf, req: &[u8]) -> String {
    let mut s = connect(p);
    // The server may answer and close before reading all of an oversized request.
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs berthd"]
fn agent_api_sockets_refuse_strangers_and_survive_bad_requests() {
    let a: Agent = with_docker_api("api-hostile");
    a.start_berthd(true).unwrap();
    let native = a.sd.root_path().join("run/berth/berthd.sock");
    let docker = a.sd.root_path().join(SOCK.trim_start_matches('/'));
    ps_works(&native, "start");

    // Non-root: refused by the socket's mode 0600 ...
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&native).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let as_nobody = |script: &str| {
        a.sd.exec_inside(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            // Debian's, not one under /root that nobody may run
            "/usr/bin/python3",
            "-c",
            script,
        ])
        .unwrap()
    };
    let probe = r#"
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('/run/berth/berthd.sock')
except OSError as e:
    print('refused', e.errno)
    raise SystemExit
f = s.makefile()
try:
    s.sendall(b'{"op":"ps"}\n')
except OSError:
    pass
print(f.readline().strip())
"#;
    let out = as_nobody(probe);
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        said,
        "refused 13",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and, were the mode opened up, by the peer's credentials (answered at once, unread: the
    // client's write may find the connection closed)
    std::fs::set_permissions(&native, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_nobody(probe);
    std::fs::set_permissions(&native, std::fs::Permissions::from_mode(0o600)).unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let v: serde_json::Value = serde_json::from_str(&said)
        .unwrap_or_else(|e| panic!("{said:?} {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["error"], "berthd's API is for root only", "{v}");
    assert!(v.get("ok").is_none());

    // Native API: each bad line gets an `invalid` answer on a connection that stays usable.
    let mut s = connect(&native);
    for bad in [
        &b"{\n"[..],
        b"not json\n",
        b"\xff\xfe\xfd\n",
        b"{\"op\":\"no_such_op\"}\n",
        b"{\"op\":\"status\"}\n",
        b"{\"op\":\"status\",\"name\":\"x\",\"extra\":1}\n",
        b"[]\n",
        b"\n",
    ] {
        let v = ask(&mut s, bad);
        assert_eq!(
            v["kind"],
            "invalid",
            "{:?}: {v}",
            String::from_utf8_lossy(bad)
        );
        assert!(
            v["error"].as_str().unwrap().starts_with("bad request"),
            "{v}"
        );
    }
    let v = ask(&mut s, b"{\"op\":\"ps\"}\n");
    assert!(
        v["ok"].is_array(),
        "the same connection after bad lines: {v}"
    );

    // A slow client holding a connection open mid-line does not hold up anyone else.
    let mut slow = connect(&native);
    slow.write_all(b"{\"op\":").unwrap();
    ps_works(&native, "a slow client");

    // 100 MB in one line: answered with an error once past 1 MiB, then closed; memory bounded.
    let mut big = connect(&native);
    let writer = {
        let mut w = big.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 0usize;
            for _ in 0..100 {
                if w.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            sent
        })
    };
    let mut line = String::new();
    BufReader::new(&mut big).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["kind"], "invalid", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("longer than 1048576 bytes"),
        "{v}"
    );
    let sent = writer.join().unwrap();
    assert!(
        sent < 100 << 20,
        "berthd read all {sent} bytes of an oversized line"
    );
    // A truncated request (no newline, then closed) is dropped.
    let mut t = connect(&native);
    t.write_all(b"{\"op\":\"ps\"").unwrap();
    drop(t);
    drop(slow);
    ps_works(&native, "oversized and truncated requests");

    // Docker API.
    let ping = |what: &str| {
        let st = http(
            &docker,
            b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        );
        assert!(st.starts_with("HTTP/1.1 200"), "after {what}: {st:?}");
    };
    ping("start");
    let create = |body: &[u8]| {
        let mut req = format!(
            "POST /v1.50/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        http(&docker, &req)
    };
    for (what, body) in [
        ("invalid JSON", &b"{\"Image\": "[..]),
        ("wrong types", b"{\"Image\": 3, \"Cmd\": \"x\"}"),
        ("not UTF-8", b"\xff\xfe"),
    ] {
        // axum's JSON extractor: 400 for syntax, 422 for a well-formed body of the wrong shape
        let st = create(body);
        assert!(
            st.starts_with("HTTP/1.1 400") || st.starts_with("HTTP/1.1 422"),
            "{what}: {st:?}"
        );
    }
    let huge = vec![b' '; 100 << 20];
    let st = create(&huge);
    assert!(st.starts_with("HTTP/1.1 413"), "a 100 MB body: {st:?}");
    ping("bad bodies");
    // A 1 MB header, and 10,000 headers: refused by the HTTP parser.
    let mut req = b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 1 << 20));
    req.extend_from_slice(b"\r\n\r\n");
    let st = http(&docker, &req);
    assert!(
        st.is_empty() || st.starts_with("HTTP/1.1 431"),
        "a 1 MB header: {st:?}"
    );
    let mut req = b"GET /_ping HTTP/1.1\r\nHost: d\r\n".to_vec();
    for n in 0..10_000 {
        req.extend_from_slice(format!("X-H{n}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let st = http(&docker, &req);
    assert!(
        st.is_empty() || st.starts_with("HTTP/1.1 431"),
        "10,000 headers: {st:?}"
    );
    // Garbage, a truncated request, and a slow client that never finishes its headers.
    let st = http(&docker, b"\x00\x01garbage\r\n\r\n");
    assert!(
        st.is_empty() || st.starts_with("HTTP/1.1 400"),
        "garbage: {st:?}"
    );
    let mut t = connect(&docker);
    t.write_all(
        b"POST /v1.50/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n\r\n{\"Im",
    )
    .unwrap();
    drop(t);
    let mut slow = connect(&docker);
    slow.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\n")
        .unwrap();
    ping("a slow client holding a connection");
    drop(slow);
    ps_works(&native, "the Docker API's bad requests");
    assert_eq!(a.show_unit("berthd.service", "NRestarts"), "0");
    assert_eq!(a.show_unit("berthd.service", "ActiveState"), "active");
}

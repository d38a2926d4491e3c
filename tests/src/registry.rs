//! A real OCI registry for image tests (runs in the test process): Debian's `docker-registry`
//! (CNCF distribution) on free loopback ports, plain HTTP, TLS + htpasswd basic auth, or TLS +
//! bearer tokens from a small token server (which also trades identity tokens); test images built with umoci and pushed with skopeo;
//! the fault-injecting proxy (`crate::fault_proxy`). Everything is killed and removed on Drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const USER: &str = "tbuser";
pub const PASS: &str = "tbpass";
/// The identity (OAuth2 refresh) token the token server trades for USER's tokens.
pub const IDENTITY_TOKEN: &str = "tb-refresh-token";
const TOKEN_SERVER: &str = include_str!("token_server.py");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Basic,
    Token,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(script: &str) -> String {
    run(Command::new("bash").arg("-ec").arg(script))
}

pub struct Registry {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub port: u16,
    procs: Vec<Child>,
}

impl Registry {
    pub fn start(kind: Kind) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-reg-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        let port = free_port();
        let tport = free_port();
        let ds = d.display();
        if kind != Kind::Plain {
            sh(&format!(
                "cd {ds}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=berth-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -keyout ca.key -out ca.crt 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -keyout key.pem -out srv.csr 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\nsubjectAltName=IP:127.0.0.1,DNS:localhost\\n' > srv.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile srv.ext -out cert.pem 2>/dev/null
mkdir -p certs.d/127.0.0.1:{port} skopeo-certs && cp ca.crt certs.d/127.0.0.1:{port}/ca.crt && cp ca.crt skopeo-certs/ca.crt
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=berth-token-signer -keyout token.key -out token.crt 2>/dev/null
htpasswd -Bbn {USER} {PASS} > htpasswd"
            ));
        }
        let tls = format!(", tls: {{certificate: {ds}/cert.pem, key: {ds}/key.pem}}");
        let (auth, tls) = match kind {
            Kind::Plain => (String::new(), String::new()),
            Kind::Basic => (
                format!("auth: {{htpasswd: {{realm: berth-test, path: {ds}/htpasswd}}}}\n"),
                tls,
            ),
            Kind::Token => (
                format!(
                    "auth: {{token: {{realm: http://127.0.0.1:{tport}/token, service: berth-test, issuer: tb-issuer, rootcertbundle: {ds}/token.crt}}}}\n"
                ),
                tls,
            ),
        };
        let cfg = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{delete: {{enabled: true}}, filesystem: {{rootdirectory: {ds}/data}}}}\n{auth}http: {{addr: 127.0.0.1:{port}, secret: berth{tls}}}\n"
        );
        std::fs::write(d.join("config.yml"), cfg).expect("write config");
        let mut r = Registry {
            kind,
            dir,
            port,
            procs: Vec::new(),
        };
        if kind == Kind::Token {
            std::fs::write(d.join("token_server.py"), TOKEN_SERVER).expect("write token server");
            let c = Command::new("python3")
                .arg(d.join("token_server.py"))
                .arg(d.join("token.key"))
                .arg(d.join("token.crt"))
                .arg(tport.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start token server");
            r.procs.push(c);
            wait_port(tport);
        }
        r.spawn_registry();
        r
    }

    fn spawn_registry(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("log");
        let c = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt install docker-registry)");
        self.procs.insert(0, c);
        wait_port(self.port);
    }

    /// Kills the registry process (the token server stays).
    pub fn kill(&mut self) {
        let mut c = self.procs.remove(0);
        let _ = c.kill();
        let _ = c.wait();
    }

    pub fn restart(&mut self) {
        self.spawn_registry();
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Directory with `127.0.0.1:<port>/ca.crt` (Docker's certs.d layout).
    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// Writes a Docker config.json with these credentials and returns its path.
    pub fn auth_file(&self, user: &str, pass: &str) -> PathBuf {
        let p = self.dir.path().join(format!("auth-{user}-{pass}.json"));
        let b64 = sh(&format!("printf %s '{user}:{pass}' | base64 -w0"));
        std::fs::write(
            &p,
            format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, self.host()),
        )
        .expect("auth file");
        p
    }

    /// Writes a Docker credential helper `docker-credential-<name>` into `<dir>/helpers` that
    /// answers `get` for this registry with these credentials (and "not found" for any other
    /// server), logging each server address it is asked about to `<dir>/helpers/<name>.log`;
    /// returns the helpers directory.
    pub fn cred_helper(&self, name: &str, user: &str, pass: &str) -> PathBuf {
        let bin = self.dir.path().join("helpers");
        std::fs::create_dir_all(&bin).expect("helpers dir");
        let host = self.host();
        let script = format!(
            r#"#!/bin/sh
[ "$1" = get ] || {{ echo "unsupported: $1"; exit 1; }}
read -r server || true
printf '%s\n' "$server" >> "{log}"
if [ "$server" != "{host}" ]; then echo 'credentials not found in native keychain'; exit 1; fi
printf '{{"ServerURL":"%s","Username":"%s","Secret":"%s"}}\n' "$server" '{user}' '{pass}'
"#,
            log = bin.join(format!("{name}.log")).display()
        );
        let p = bin.join(format!("docker-credential-{name}"));
        // written by a child process, so no fd of this multi-threaded test process is open for
        // writing on it when another test forks (exec would fail with ETXTBSY)
        run(Command::new("sh")
            .args(["-c", r#"printf %s "$2" > "$1" && chmod 755 "$1""#, "sh"])
            .arg(&p)
            .arg(script));
        bin
    }

    /// Writes a Docker config.json with `credHelpers` for this registry (and an optional default
    /// `credsStore`), no inline credentials, and returns its path.
    pub fn helper_config(&self, helper: &str, store: Option<&str>) -> PathBuf {
        let p = self.dir.path().join(format!("config-{helper}.json"));
        let mut v = serde_json::json!({"credHelpers": {self.host(): helper}});
        if let Some(s) = store {
            v["credsStore"] = s.into();
        }
        std::fs::write(&p, v.to_string()).expect("config.json");
        p
    }

    /// Pushes `oci:<layout>:<tag>` to `<host>/<repo_tag>` (`all`: every image of an index).
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str, all: bool) {
        self.push_as(layout, tag, repo_tag, all, None)
    }

    /// Like `push`, converting to a manifest format (`v2s2`: Docker image manifest v2 schema 2).
    pub fn push_as(
        &self,
        layout: &Path,
        tag: &str,
        repo_tag: &str,
        all: bool,
        format: Option<&str>,
    ) {
        let mut c = Command::new("skopeo");
        c.arg("copy").arg("--quiet");
        if let Some(f) = format {
            c.arg("--format").arg(f);
        }
        if all {
            c.arg("--all");
        }
        match self.kind {
            Kind::Plain => {
                c.arg("--dest-tls-verify=false");
            }
            _ => {
                c.arg("--dest-cert-dir")
                    .arg(self.dir.path().join("skopeo-certs"));
                c.arg("--dest-creds").arg(format!("{USER}:{PASS}"));
            }
        }
        c.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()));
        run(&mut c);
    }

    /// The registry's file for a blob (to corrupt or delete it).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds images with umoci into an OCI layout.
pub struct Layout {
    pub dir: tempfile::TempDir,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    pub fn new() -> Layout {
        let dir = tempfile::Builder::new()
            .prefix("berth-oci-")
            .tempdir()
            .expect("tempdir");
        run(Command::new("umoci")
            .arg("init")
            .arg("--layout")
            .arg(dir.path().join("l")));
        Layout { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("l")
    }

    /// A new image `tag` for `arch` with one layer per entry of `layers`, each a list of
    /// (path inside the image, content) files (executable under `bin/`).
    pub fn image(&self, tag: &str, arch: &str, layers: &[Vec<(&str, Vec<u8>)>]) {
        let l = self.path();
        let img = format!("{}:{tag}", l.display());
        run(Command::new("umoci").args(["new", "--image", &img]));
        for (i, files) in layers.iter().enumerate() {
            let src = self.dir.path().join(format!("src-{tag}-{i}"));
            for (p, data) in files {
                let f = src.join(p.trim_start_matches('/'));
                std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
                std::fs::write(&f, data).expect("write");
                if p.trim_start_matches('/').starts_with("bin/") {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755))
                        .expect("chmod");
                }
            }
            run(Command::new("umoci")
                .args(["insert", "--image", &img])
                .arg(&src)
                .arg("/"));
        }
        run(Command::new("umoci").args([
            "config",
            "--image",
            &img,
            "--architecture",
            arch,
            "--os",
            "linux",
            "--config.cmd",
            "/bin/sh",
        ]));
    }

    /// A busybox image for this host's arch (`/bin/busybox`, `/bin/sh`).
    pub fn busybox(&self, tag: &str) {
        let bb = std::fs::read("/bin/busybox").expect("busybox-static installed");
        self.image(tag, "amd64", &[vec![("bin/busybox", bb)]]);
    }

    /// An index `tag` of `amd_tag` (amd64) and a fake arm64 image with /etc/arch = arm64.
    pub fn two_platform_index(&self, tag: &str, amd_tag: &str) {
        self.image(
            &format!("{tag}-arm64"),
            "arm64",
            &[vec![("etc/arch", b"arm64\n".to_vec())]],
        );
        let l = self.path();
        run(Command::new("python3").arg("-c").arg(
            r#"
import json, hashlib, sys
L, tag, tags = sys.argv[1], sys.argv[2], sys.argv[3:]
idx = json.load(open(f'{L}/index.json'))
blob = lambda d: open(f'{L}/blobs/sha256/' + d.split(':')[1], 'rb').read()
ents = []
for m in idx['manifests']:
    if m['annotations']['org.opencontainers.image.ref.name'] not in tags: continue
    cfg = json.loads(blob(json.loads(blob(m['digest']))['config']['digest']))
    ents.append({'mediaType': m['mediaType'], 'digest': m['digest'], 'size': m['size'], 'platform': {'architecture': cfg['architecture'], 'os': cfg['os']}})
raw = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json', 'manifests': ents}).encode()
d = hashlib.sha256(raw).hexdigest(); open(f'{L}/blobs/sha256/{d}', 'wb').write(raw)
idx['manifests'].append({'mediaType': 'application/vnd.oci.image.index.v1+json', 'digest': 'sha256:' + d, 'size': len(raw), 'annotations': {'org.opencontainers.image.ref.name': tag}})
json.dump(idx, open(f'{L}/index.json', 'w'))
"#,
        ).arg(&l).arg(tag).arg(amd_tag).arg(format!("{tag}-arm64")));
    }
}

/// Random bytes (incompressible layer content).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .expect("urandom")
        .read_exact(&mut v)
        .expect("read");
    v
}

pub use crate::fault_proxy::CutProxy;

/// The store is intact: index.json parses, every blob's content matches its name, no temp dirs
/// are left among the layers; returns the names in index.json.
pub fn assert_intact(root: &Path) -> Vec<String> {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap())
            .expect("index.json parses");
    for e in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let out = Command::new("sha256sum").arg(&p).output().unwrap();
        let sum = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            Some(sum.as_str()),
            p.file_name().and_then(|n| n.to_str()),
            "blob {} is corrupt",
            p.display()
        );
    }
    for e in std::fs::read_dir(root.join("layers")).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !n.starts_with(".tmp"),
            "temporary layer dir {n} left behind"
        );
    }
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

pub fn has_blob(root: &Path, digest: &str) -> bool {
    root.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

/// An image of a tiny layer and a `mb` MB layer of random bytes pushed as `test/big:<tag>`;
/// returns its layout and the big layer's digest.
pub fn big_image(reg: &Registry, tag: &str, mb: usize) -> (Layout, String) {
    let l = Layout::new();
    l.image(
        tag,
        "amd64",
        &[
            vec![("small", b"x".to_vec())],
            vec![("big", random_bytes(mb << 20))],
        ],
    );
    reg.push(&l.path(), tag, &format!("test/big:{tag}"), false);
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.path().join("index.json")).unwrap()).unwrap();
    let mdig = idx["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.path().join("blobs/sha256").join(mdig)).unwrap())
            .unwrap();
    let big = m["layers"][1]["digest"].as_str().unwrap().to_string();
    (l, big)
}

/// A loopback HTTP server answering every request with one status (429, 403, 503, …), to check
/// that registry failures become clear errors.
pub struct StatusServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl StatusServer {
    pub fn start(status: u16, reason: &'static str) -> StatusServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        l.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 8192];
                let _ = c.read(&mut buf);
                let body = format!("{reason}\n");
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        StatusServer { port, stop }
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

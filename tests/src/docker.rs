//! The Docker API test harness (runs in the test process, as root): a test systemd whose berthd
//! serves the Docker API, the real `docker` CLI run inside its namespaces, and Debian's
//! docker-registry as a unit there.

use crate::agent::Agent;
use std::process::Output;
use std::time::Duration;

pub const SOCK: &str = "/run/berth/docker.sock";

/// `docker ARGS` inside the namespace, against berthd's socket.
pub fn docker(a: &Agent, args: &[&str]) -> Output {
    let host = format!("DOCKER_HOST=unix://{SOCK}");
    // Bounded: a request that never answers (`wait`) fails the test instead of hanging it.
    let mut argv = vec![
        "timeout",
        "120",
        "env",
        host.as_str(),
        "HOME=/tmp",
        "docker",
    ];
    argv.extend_from_slice(args);
    a.sd.exec_inside(&argv).unwrap()
}

pub fn stdout_ok(a: &Agent, args: &[&str]) -> String {
    let out = docker(a, args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A test systemd whose berthd, once started, serves the Docker API (its /etc/berth/berthd.yaml,
/// where berthd and `berth` look by default).
pub fn with_docker_api(name: &str) -> Agent {
    with_docker_config(name, "")
}

/// [`with_docker_api`] with more of berthd.yaml.
pub fn with_docker_config(name: &str, more: &str) -> Agent {
    let a = Agent::start(name).unwrap();
    let etc = a.sd.root_path().join("etc/berth");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(
        etc.join("berthd.yaml"),
        format!("docker: {{enable: true}}\n{more}"),
    )
    .unwrap();
    a
}

/// Registries inside the namespace (its network is private: any port is free): open, and
/// with basic auth.
pub const REG: &str = "127.0.0.1:5000";
pub const AUTH_REG: &str = "127.0.0.1:5001";
pub const USER: &str = "tbuser";
pub const PASS: &str = "tbpass";

/// Debian's docker-registry as a unit inside the namespace (plain HTTP on `host`; with `auth`,
/// htpasswd basic auth for [`USER`]), holding the test busybox image pushed with skopeo as
/// `tb/busybox:1` and `tb/busybox:2`.
pub fn registry_inside(a: &Agent, host: &str, auth: bool) {
    let port = host.rsplit(':').next().unwrap();
    let dir = a.sd.share_dir().join(format!("reg-{port}"));
    let inside_dir = format!("/srv/tb/reg-{port}");
    std::fs::create_dir_all(&dir).unwrap();
    let auth_cfg = if auth {
        let h = std::process::Command::new("htpasswd")
            .args(["-Bbn", USER, PASS])
            .output()
            .unwrap();
        assert!(h.status.success());
        std::fs::write(dir.join("htpasswd"), h.stdout).unwrap();
        format!("auth: {{htpasswd: {{realm: berth-test, path: {inside_dir}/htpasswd}}}}\n")
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {inside_dir}/data}}}}\n{auth_cfg}http: {{addr: {host}, secret: berth}}\n"
        ),
    )
    .unwrap();
    let inside = |argv: &[&str]| {
        let out = a.sd.exec_inside(argv).unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    inside(&["ip", "link", "set", "lo", "up"]);
    let unit = format!("--unit=test-registry-{port}");
    let cfg = format!("{inside_dir}/config.yml");
    inside(&["systemd-run", &unit, "docker-registry", "serve", &cfg]);
    a.wait(Duration::from_secs(20), "the registry listening", || {
        let probe = format!("exec 3<>/dev/tcp/{}", host.replace(':', "/"));
        a.sd.exec_inside(&["bash", "-c", &probe])
            .is_ok_and(|o| o.status.success())
    })
    .unwrap();
    let creds = format!("--dest-creds={USER}:{PASS}");
    for dest in ["tb/busybox:1", "tb/busybox:2"] {
        let dest = format!("docker://{host}/{dest}");
        let mut argv = vec!["skopeo", "copy", "--quiet", "--dest-tls-verify=false"];
        if auth {
            argv.push(&creds);
        }
        argv.extend(["oci-archive:/srv/tb/busybox.tar", &dest]);
        inside(&argv);
    }
}

//! The real `docker` CLI (28.x, /usr/local/bin/docker) against berthd's Docker API socket, under a
//! real systemd booted in private namespaces: version negotiation, `info`, `ps` with filters,
//! `inspect`, `images`, Docker's error messages and exit codes, and the socket's permissions.

use berth_tests::agent::{Agent, IMAGE};
use std::process::Output;
use std::time::Duration;

const SOCK: &str = "/run/berth/docker.sock";

/// `docker ARGS` inside the namespace, against berthd's socket.
fn docker(a: &Agent, args: &[&str]) -> Output {
    let host = format!("DOCKER_HOST=unix://{SOCK}");
    let mut argv = vec!["env", host.as_str(), "HOME=/tmp", "docker"];
    argv.extend_from_slice(args);
    a.sd.exec_inside(&argv).unwrap()
}

fn stdout_ok(a: &Agent, args: &[&str]) -> String {
    let out = docker(a, args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_reads_berth_containers() {
    let a = Agent::start("docker-cli").unwrap();
    let etc = a.sd.root_path().join("etc/berth");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("berthd.yaml"), "docker: {enable: true}\n").unwrap();
    a.write(
        "web",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\nlabels: {{app: web}}\n\
             command: [httpd, -f, -p, \"8080\"]\n"
        ),
    );
    a.write(
        "job",
        &format!("image_file: {IMAGE}\nnetwork_mode: none\ncommand: [sh, -c, 'exit 3']\n"),
    );
    a.start_berthd(true).unwrap();
    let t = Duration::from_secs(60);
    // A non-zero exit is berth's `failed` and Docker's `exited`.
    a.wait(t, "web running and job ended", || {
        a.phase("web") == "running" && a.phase("job") == "failed"
    })
    .unwrap();

    // The socket: 0660, root's group by default; a user outside the group is refused by the
    // file's permissions before berthd sees anything.
    let st = std::fs::metadata(a.sd.root_path().join(SOCK.trim_start_matches('/'))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(st.permissions().mode() & 0o777, 0o660);
    let host = format!("DOCKER_HOST=unix://{SOCK}");
    let nobody =
        a.sd.exec_inside(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            &host,
            "HOME=/tmp",
            "docker",
            "version",
        ])
        .unwrap();
    assert!(!nobody.status.success());
    assert!(
        String::from_utf8_lossy(&nobody.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );

    // Negotiation: the CLI speaks the newest version berth offers.
    assert_eq!(
        stdout_ok(&a, &["version", "--format", "{{.Server.APIVersion}}"]),
        "1.50"
    );
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "info",
                "--format",
                "{{.ContainersRunning}} {{.ContainersStopped}} {{.CgroupDriver}}"
            ]
        ),
        "1 1 systemd"
    );

    // `ps` shows running containers; `-a` all; filters narrow as Docker's do.
    assert_eq!(
        stdout_ok(
            &a,
            &["ps", "--format", "{{.Names}} {{.State}} {{.Command}}"]
        ),
        "web running \"httpd -f -p 8080\""
    );
    let all = stdout_ok(&a, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    let mut rows: Vec<&str> = all.lines().collect();
    rows.sort();
    assert_eq!(rows, ["job Exited (3)", "web Up"], "{all}");
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "ps",
                "-a",
                "--filter",
                "label=app=web",
                "--format",
                "{{.Names}}"
            ]
        ),
        "web"
    );
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "ps",
                "-a",
                "--filter",
                "status=exited",
                "--format",
                "{{.Names}}"
            ]
        ),
        "job"
    );
    let id = stdout_ok(&a, &["ps", "-q", "--no-trunc"]);
    assert_eq!(id.len(), 64, "{id}");

    // inspect by name and by ID prefix.
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.Config.Labels.app}}",
                "web"
            ]
        ),
        "running web"
    );
    assert_eq!(
        stdout_ok(&a, &["container", "inspect", "-f", "{{.Name}}", &id[..12]]),
        "/web"
    );
    assert_eq!(
        stdout_ok(
            &a,
            &["container", "inspect", "-f", "{{.State.ExitCode}}", "job"]
        ),
        "3"
    );
    let missing = docker(&a, &["container", "inspect", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("No such container: nope"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    // The image store as Docker lists it: the one image, by the digest the container runs.
    let digest = stdout_ok(&a, &["inspect", "-f", "{{.Image}}", "web"]);
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(stdout_ok(&a, &["images", "-q", "--no-trunc"]), digest);

    // What berth does not do is a clear error, never a silent success.
    let ctx = a.sd.share_dir().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    let build = docker(&a, &["build", "-q", "/srv/tb/ctx"]);
    assert!(!build.status.success());
    let err = String::from_utf8_lossy(&build.stderr);
    assert!(err.contains("not supported by berth"), "{err}");
}

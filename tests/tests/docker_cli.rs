//! The real `docker` CLI (28.x, /usr/local/bin/docker) against berthd's Docker API socket, under a
//! real systemd booted in private namespaces: version negotiation, `info`, `ps` with filters,
//! `inspect`, `images`, Docker's error messages and exit codes, and the socket's permissions;
//! `pull`, `image inspect`, `tag`, `rmi` and `run` of an image not pulled yet against Debian's
//! docker-registry run inside the namespace.

use berth_tests::agent::IMAGE;
use berth_tests::docker::{
    AUTH_REG, PASS, REG, SOCK, USER, docker, registry_inside, stdout_ok, with_docker_api,
    with_docker_config,
};
use std::time::Duration;

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_reads_berth_containers() {
    let a = with_docker_api("docker-cli");
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

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_runs_stops_and_removes_containers() {
    let a = with_docker_api("docker-run");
    // A container from a file, whose image import gives the store an image to run by name.
    a.write(
        "web",
        &format!("image_file: {IMAGE}\nnetwork_mode: none\ncommand: [sleep, \"3600\"]\n"),
    );
    a.start_berthd(true).unwrap();
    let t = Duration::from_secs(60);
    a.wait(t, "web running", || a.phase("web") == "running")
        .unwrap();
    let image = stdout_ok(&a, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!image.is_empty() && !image.contains("<none>"), "{image}");

    // `docker run -d`: an ordinary berth container with its unit.
    let id = stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "api1",
            "--network",
            "none",
            "-e",
            "GREETING=hi",
            &image,
            "sh",
            "-c",
            "echo $GREETING; exec sleep 3600",
        ],
    );
    assert_eq!(id.len(), 64, "{id}");
    assert!(a.active("api1"), "its unit runs");
    assert!(a.ps().unwrap().contains_key("api1"), "berth ps lists it");
    assert_eq!(
        stdout_ok(&a, &["inspect", "-f", "{{.Id}} {{.State.Status}}", "api1"]),
        format!("{id} running")
    );
    a.wait(t, "its output in docker logs", || {
        String::from_utf8_lossy(&docker(&a, &["logs", "api1"]).stdout).contains("hi")
    })
    .unwrap();

    // stop and start: held stopped, then running again; the unit follows.
    stdout_ok(&a, &["stop", "api1"]);
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "ps",
                "-a",
                "--filter",
                "name=api1",
                "--format",
                "{{.State}}"
            ]
        ),
        "exited"
    );
    assert!(!a.active("api1"));
    stdout_ok(&a, &["start", "api1"]);
    assert_eq!(
        stdout_ok(&a, &["inspect", "-f", "{{.State.Status}}", "api1"]),
        "running"
    );
    assert!(a.active("api1"));

    // rm refuses a running container without -f, as Docker does.
    let rm = docker(&a, &["rm", "api1"]);
    assert!(!rm.status.success());
    assert!(
        String::from_utf8_lossy(&rm.stderr).contains("container is running"),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    stdout_ok(&a, &["rm", "-f", "api1"]);
    assert!(!a.ps().unwrap().contains_key("api1"), "gone from berth");
    assert_eq!(stdout_ok(&a, &["ps", "-aq", "--filter", "name=api1"]), "");

    // `docker kill` sends the signal to the main process (here a shell that traps it; the
    // signal is sent once the trap is set: a PID 1 without a handler ignores it, as in Docker).
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "victim",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "trap 'exit 9' USR1; echo armed; while :; do sleep 1; done",
        ],
    );
    a.wait(t, "the trap set", || {
        String::from_utf8_lossy(&docker(&a, &["logs", "victim"]).stdout).contains("armed")
    })
    .unwrap();
    stdout_ok(&a, &["kill", "-s", "USR1", "victim"]);
    assert_eq!(
        stdout_ok(&a, &["wait", "victim"]),
        "9",
        "the trap's exit code"
    );
    let again = docker(&a, &["kill", "victim"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not running"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // `docker wait` gives the exit code.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "quick",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(stdout_ok(&a, &["wait", "quick"]), "7");

    // A container declared in a file is read-only here, and says which file to edit.
    let stop = docker(&a, &["stop", "web"]);
    assert!(!stop.status.success());
    let err = String::from_utf8_lossy(&stop.stderr);
    assert!(
        err.contains("web.yaml") && err.contains("read-only"),
        "{err}"
    );
    assert!(a.active("web"), "web untouched");

    // What berth cannot honour is refused by name, with docker's exit code for that (125).
    let p = docker(&a, &["run", "-d", "--privileged", &image, "true"]);
    assert_eq!(p.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&p.stderr).contains("HostConfig.Privileged"),
        "{}",
        String::from_utf8_lossy(&p.stderr)
    );
    // The same name twice is Docker's conflict.
    let again = docker(&a, &["create", "--name", "quick", &image, "true"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is already in use"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs a registry and containers"]
fn docker_cli_pulls_inspects_tags_and_removes_images() {
    let a = with_docker_config(
        "docker-images",
        &format!("registries: {{insecure: [\"{REG}\"]}}\n"),
    );
    a.start_berthd(true).unwrap();
    registry_inside(&a, REG, false);
    let one = format!("{REG}/tb/busybox:1");

    // docker pull: Docker's progress stream, rendered by the CLI.
    let out = stdout_ok(&a, &["pull", &one]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {one}")),
        "{out}"
    );
    assert!(out.contains("Digest: sha256:"), "{out}");
    let again = stdout_ok(&a, &["pull", &one]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {one}")),
        "{again}"
    );

    // The pulled image as Docker shows it.
    let tags = stdout_ok(&a, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(tags.lines().any(|l| l == one), "{tags}");
    // its creation time from the image config, not the epoch
    let created = stdout_ok(&a, &["images", "--format", "{{.CreatedAt}}", &one]);
    assert!(
        !created.is_empty() && !created.starts_with("1970"),
        "{created}"
    );
    assert_eq!(
        stdout_ok(
            &a,
            &["image", "inspect", "-f", "{{.Config.Cmd}} {{.Os}}", &one]
        ),
        "[/bin/sh] linux"
    );
    let id = stdout_ok(&a, &["image", "inspect", "-f", "{{.Id}}", &one]);
    assert!(id.starts_with("sha256:"), "{id}");
    // by ID prefix, and under a further name
    assert_eq!(
        stdout_ok(&a, &["image", "inspect", "-f", "{{.Id}}", &id[7..19]]),
        id
    );
    stdout_ok(&a, &["tag", &one, "mine:v1"]);
    assert_eq!(
        stdout_ok(&a, &["image", "inspect", "-f", "{{.Id}}", "mine:v1"]),
        id
    );
    // By ID, an image with two names stays unless forced, as in Docker.
    let by_id = docker(&a, &["rmi", &id[7..19]]);
    assert_eq!(by_id.status.code(), Some(1));
    let err = String::from_utf8_lossy(&by_id.stderr);
    assert!(err.contains("referenced in multiple repositories"), "{err}");
    let rmi = stdout_ok(&a, &["rmi", "mine:v1"]);
    assert!(rmi.contains("Untagged: mine:v1"), "{rmi}");
    let gone = docker(&a, &["image", "inspect", "mine:v1"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("No such image"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );

    // docker run of an image not in the store: create answers 404, the CLI pulls, creates again.
    let two = format!("{REG}/tb/busybox:2");
    let run = docker(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "fresh",
            "--network",
            "none",
            &two,
            "sleep",
            "3600",
        ],
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("Unable to find image"), "{err}");
    // Its one layer is the first image's: in the store already, not pulled again.
    assert!(
        err.contains("Already exists") && !err.contains("Pulling fs layer"),
        "{err}"
    );
    assert!(a.active("fresh"), "its unit runs");

    // rmi refuses an image a container uses, as Docker does; -f of the container frees it.
    let busy = docker(&a, &["rmi", &two]);
    assert_eq!(busy.status.code(), Some(1));
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        err.contains("conflict: unable to remove repository reference"),
        "{err}"
    );
    stdout_ok(&a, &["rm", "-f", "fresh"]);
    let rmi = stdout_ok(&a, &["rmi", &two]);
    assert!(rmi.contains(&format!("Untagged: {two}")), "{rmi}");

    // A tag the registry does not have: the CLI exits 1 with the registry's message.
    let missing = docker(&a, &["pull", &format!("{REG}/tb/busybox:nope")]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr).to_lowercase();
    assert!(err.contains("manifest unknown"), "{err}");
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs a registry"]
fn docker_cli_pull_uses_the_clients_credentials_for_that_pull_only() {
    let a = with_docker_config(
        "docker-auth",
        &format!("registries: {{insecure: [\"{AUTH_REG}\"]}}\n"),
    );
    a.start_berthd(true).unwrap();
    registry_inside(&a, AUTH_REG, true);
    let image = format!("{AUTH_REG}/tb/busybox:1");
    let pull = |what: &str| {
        let out = docker(&a, &["pull", &image]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        match what {
            "ok" => assert!(out.status.success(), "{err}"),
            _ => {
                assert_eq!(out.status.code(), Some(1), "{err}");
                assert!(err.contains(what), "{err}");
            }
        }
    };
    // berthd has no credentials for the registry of its own.
    pull("no credentials");
    // The CLI's stored login (what `docker login` writes) travels as X-Registry-Auth.
    let b64 = {
        use std::io::Write;
        let mut c = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{USER}:{PASS}").as_bytes())
            .unwrap();
        String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
    };
    let cfg = format!(r#"{{"auths":{{"{AUTH_REG}":{{"auth":"{b64}"}}}}}}"#);
    let write = format!("mkdir -p /tmp/.docker && printf '%s' '{cfg}' > /tmp/.docker/config.json");
    assert!(
        a.sd.exec_inside(&["sh", "-c", &write])
            .unwrap()
            .status
            .success()
    );
    pull("ok");
    // Used for that pull only: without the CLI's login berthd is refused again (the client
    // that authenticated is not reused).
    stdout_ok(&a, &["rmi", &image]);
    assert!(
        a.sd.exec_inside(&["rm", "/tmp/.docker/config.json"])
            .unwrap()
            .status
            .success()
    );
    pull("no credentials");
}

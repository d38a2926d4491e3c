//! The Docker API's interactive endpoints against berthd under a real systemd booted in private
//! namespaces: `docker run` attached (output, exit codes, `--rm`, `-i`, `-it` under a pty),
//! `docker exec` (exit codes, `-i`, `-it`, `-d`), `docker wait`, and bollard (a Docker SDK in Rust)
//! for attach's and exec's streams.

use berth_tests::agent::{Agent, IMAGE};
use berth_tests::docker::{SOCK, docker, stdout_ok, with_docker_api};
use std::process::Output;
use std::time::{Duration, Instant};

/// A shell line inside the namespace, with the docker CLI pointed at berthd (bounded in time).
fn sh(a: &Agent, script: &str) -> Output {
    let line = format!("export DOCKER_HOST=unix://{SOCK} HOME=/tmp; {script}");
    a.sd.exec_inside(&["timeout", "120", "bash", "-c", &line])
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// berthd serving the API, with the test image in its store (imported by a container from a
/// file); its name as `docker` knows it.
fn agent_with_image(name: &str) -> (Agent, String) {
    let a = with_docker_api(name);
    a.write(
        "web",
        &format!("image_file: {IMAGE}\nnetwork_mode: none\ncommand: [sleep, \"3600\"]\n"),
    );
    a.start_berthd(true).unwrap();
    a.wait(Duration::from_secs(60), "web running", || {
        a.phase("web") == "running"
    })
    .unwrap();
    let image = stdout_ok(&a, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!image.is_empty() && !image.contains("<none>"), "{image}");
    (a, image)
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_run_attached_rm_stdin_and_tty() {
    let (a, image) = agent_with_image("docker-attach");
    let img = image.as_str();

    // Attached: the output, then the container's exit code.
    let out = docker(
        &a,
        &[
            "run",
            "--name",
            "hi",
            "--network",
            "none",
            img,
            "echo",
            "hi",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    // docker logs: the container's lines alone (not the shim's line after them).
    assert_eq!(stdout_ok(&a, &["logs", "hi"]), "hi");
    let t0 = Instant::now();
    let out = docker(
        &a,
        &[
            "run",
            "--network",
            "none",
            img,
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    // The container's stderr shares its journal stream with stdout: it comes as stdout.
    assert_eq!(text(&out.stdout), "line1\nline2\nline3\noops\n");
    eprintln!("docker run (attached, exit 3): {:?}", t0.elapsed());

    // --rm: the exit code, and nothing left behind.
    let t0 = Instant::now();
    let out = docker(
        &a,
        &[
            "run",
            "--rm",
            "--name",
            "rm1",
            "--network",
            "none",
            img,
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    eprintln!("docker run --rm (exit 7): {:?}", t0.elapsed());
    assert!(
        !a.ps().unwrap().contains_key("rm1"),
        "berth ps still lists rm1"
    );
    assert_eq!(stdout_ok(&a, &["ps", "-aq", "--filter", "name=rm1"]), "");
    let t0 = Instant::now();
    let out = docker(&a, &["run", "--rm", "--network", "none", img, "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eprintln!("docker run --rm true: {:?}", t0.elapsed());

    // AutoRemove is berthd's: the client gone (run -d), the container still goes once it ends.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "rm2",
            "--network",
            "none",
            img,
            "sh",
            "-c",
            "sleep 1",
        ],
    );
    a.wait(Duration::from_secs(30), "rm2 removed", || {
        !a.ps().unwrap().contains_key("rm2")
    })
    .unwrap();

    // ... and when it ends while berthd is down, berthd removes it at its start.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--rm",
            "--name",
            "rm3",
            "--network",
            "none",
            img,
            "sleep",
            "2",
        ],
    );
    a.kill_berthd().unwrap();
    a.wait(Duration::from_secs(30), "rm3's unit ended", || {
        !a.active("rm3")
    })
    .unwrap();
    a.start_berthd(true).unwrap();
    a.wait(
        Duration::from_secs(30),
        "rm3 removed after the restart",
        || !a.ps().unwrap().contains_key("rm3"),
    )
    .unwrap();

    // -i: the client's input is the container's stdin, and its end ends `cat`.
    let out = sh(
        &a,
        &format!("echo data | docker run --rm -i --network none {img} cat"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "data\n");

    // -it under a pty: the container has a terminal; input reaches it; its exit code returns.
    let out = sh(
        &a,
        &format!(
            "(sleep 2; echo 'echo typed-$((6*7)); exit 4') | script -qec 'docker run --rm -it --network none {img} sh' /dev/null"
        ),
    );
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{shown} {}", text(&out.stderr));
    assert!(shown.contains("typed-42"), "{shown}");

    // docker wait: the exit code of a container that ends later.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "w",
            "--network",
            "none",
            img,
            "sh",
            "-c",
            "sleep 1; exit 5",
        ],
    );
    assert_eq!(stdout_ok(&a, &["wait", "w"]), "5");
    // Once ended, wait answers at once with the same code.
    assert_eq!(stdout_ok(&a, &["wait", "w"]), "5");
    stdout_ok(&a, &["rm", "w", "hi"]);
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_exec_codes_stdin_tty_and_detach() {
    let (a, image) = agent_with_image("docker-exec");
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "ex",
            "--network",
            "none",
            &image,
            "sleep",
            "3600",
        ],
    );
    let out = docker(&a, &["exec", "ex", "sh", "-c", "echo in-exec; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in-exec\n");
    let out = docker(&a, &["exec", "ex", "sh", "-c", "echo to-err >&2"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "to-err\n");
    assert_eq!(text(&out.stdout), "");

    let out = sh(&a, "printf 'a\\nb\\n' | docker exec -i ex wc -l");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2");

    let out = sh(
        &a,
        "script -qec \"docker exec -it ex sh -c 'tty; exit 4'\" /dev/null </dev/null",
    );
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{shown} {}", text(&out.stderr));
    assert!(shown.contains("/dev/pts/"), "{shown}");

    stdout_ok(&a, &["exec", "-d", "ex", "touch", "/tmp/detached"]);
    a.wait(Duration::from_secs(10), "the detached exec's file", || {
        docker(&a, &["exec", "ex", "test", "-f", "/tmp/detached"])
            .status
            .success()
    })
    .unwrap();

    // top: the processes of the unit's cgroup.
    let top = stdout_ok(&a, &["top", "ex"]);
    assert!(top.contains("sleep 3600") && top.contains("PID"), "{top}");
    assert!(!top.contains("berthd"), "{top}");

    // pause: systemd freezes the unit; docker and berth show it.
    stdout_ok(&a, &["pause", "ex"]);
    let state = || {
        stdout_ok(
            &a,
            &["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "ex"],
        )
    };
    assert_eq!(state(), "paused true");
    // systemd freezes the unit where it can (the unified hierarchy); elsewhere the runtime
    // freezes the container's cgroup. Either way its processes are frozen.
    let frozen = a.show_unit("berth-ex.service", "FreezerState") == "frozen"
        || text(&a.berth(&["status", "ex"]).unwrap().stdout).contains("by its runtime");
    assert!(frozen);
    let out = docker(&a, &["exec", "ex", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is paused"),
        "{}",
        text(&out.stderr)
    );
    let ps = stdout_ok(
        &a,
        &["ps", "--filter", "name=ex", "--format", "{{.Status}}"],
    );
    assert!(ps.contains("Paused"), "{ps}");
    let st = a.berth(&["status", "ex"]).unwrap();
    assert!(text(&st.stdout).contains("paused:"), "{}", text(&st.stdout));
    stdout_ok(&a, &["unpause", "ex"]);
    assert_eq!(state(), "running false");
    assert!(docker(&a, &["exec", "ex", "true"]).status.success());

    // rename: refused while it runs (its unit is named after it), done once stopped.
    let out = docker(&a, &["rename", "ex", "ex2"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("while it runs"),
        "{}",
        text(&out.stderr)
    );

    // Docker's errors: an exec in a container that does not run.
    stdout_ok(&a, &["stop", "ex"]);
    let out = docker(&a, &["exec", "ex", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );

    stdout_ok(&a, &["rename", "ex", "ex2"]);
    let names = stdout_ok(&a, &["ps", "-a", "--format", "{{.Names}}"]);
    let names: Vec<&str> = names.lines().collect();
    assert!(
        names.contains(&"ex2") && !names.contains(&"ex"),
        "{names:?}"
    );
    assert!(!a.ps().unwrap().contains_key("ex"));
    stdout_ok(&a, &["start", "ex2"]);
    assert!(
        a.active("ex2"),
        "the renamed container runs under its new unit"
    );
    let out = docker(&a, &["exec", "ex2", "echo", "renamed"]);
    assert_eq!(text(&out.stdout), "renamed\n");
    stdout_ok(&a, &["rm", "-f", "ex2"]);
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn bollard_attach_and_exec_streams() {
    use bollard::container::LogOutput;
    use bollard::exec::StartExecResults;
    use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
    use bollard::query_parameters::{AttachContainerOptions, CreateContainerOptions};
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;

    let (a, image) = agent_with_image("docker-bollard");
    let path = format!("/proc/{}/root{SOCK}", a.sd.pid());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let v = bollard::ClientVersion {
            major_version: 1,
            minor_version: 50,
        };
        let d = bollard::Docker::connect_with_unix(&path, 120, &v).unwrap();
        let none = || {
            Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            })
        };

        // Attach before start, as `docker run -i` does: stdin in, framed stdout out.
        d.create_container(
            Some(CreateContainerOptions {
                name: Some("cat1".into()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["sh".into(), "-c".into(), "cat; echo done >&2".into()]),
                open_stdin: Some(true),
                stdin_once: Some(true),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                host_config: none(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut att = d
            .attach_container(
                "cat1",
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        d.start_container("cat1", None).await.unwrap();
        att.input.write_all(b"hello\nworld\n").await.unwrap();
        att.input.shutdown().await.unwrap();
        let mut got = String::new();
        while let Some(m) = att.output.next().await {
            match m.unwrap() {
                LogOutput::StdOut { message } => got.push_str(&String::from_utf8_lossy(&message)),
                other => panic!("unexpected frame {other:?}"),
            }
        }
        // Every line, in order, the container's last included, then the stream's end.
        assert_eq!(got, "hello\nworld\ndone\n");
        let code = d
            .wait_container("cat1", None)
            .next()
            .await
            .unwrap()
            .unwrap()
            .status_code;
        assert_eq!(code, 0);

        // A terminal: the end of the client's input does not end its output.
        d.create_container(
            Some(CreateContainerOptions {
                name: Some("tty1".into()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["sh".into(), "-c".into(), "sleep 1; echo late".into()]),
                tty: Some(true),
                open_stdin: Some(true),
                host_config: none(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut att = d
            .attach_container(
                "tty1",
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: true,
                    stdout: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        d.start_container("tty1", None).await.unwrap();
        att.input.shutdown().await.unwrap();
        let mut shown = String::new();
        while let Some(m) = att.output.next().await {
            shown.push_str(&String::from_utf8_lossy(&m.unwrap().into_bytes()));
        }
        assert!(shown.contains("late"), "{shown:?}");

        // Exec: stdout and stderr apart, then the exit code.
        d.create_container(
            Some(CreateContainerOptions {
                name: Some("ex1".into()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                host_config: none(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        d.start_container("ex1", None).await.unwrap();
        let x = d
            .create_exec(
                "ex1",
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "echo o; echo e >&2; exit 3".into(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let (mut out, mut err) = (String::new(), String::new());
        match d.start_exec(&x.id, None).await.unwrap() {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(m) = output.next().await {
                    match m.unwrap() {
                        LogOutput::StdOut { message } => {
                            out.push_str(&String::from_utf8_lossy(&message))
                        }
                        LogOutput::StdErr { message } => {
                            err.push_str(&String::from_utf8_lossy(&message))
                        }
                        other => panic!("unexpected frame {other:?}"),
                    }
                }
            }
            StartExecResults::Detached => panic!("detached"),
        }
        assert_eq!((out.as_str(), err.as_str()), ("o\n", "e\n"));
        let i = d.inspect_exec(&x.id).await.unwrap();
        assert_eq!((i.exit_code, i.running), (Some(3), Some(false)));
        let e = d.inspect_exec("nope").await.unwrap_err().to_string();
        assert!(e.contains("No such exec instance"), "{e}");
    });
}

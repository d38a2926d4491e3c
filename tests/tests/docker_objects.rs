//! The real `docker` CLI (28.x) against berthd's Docker API for the objects beside containers,
//! under a real systemd booted in private namespaces: volumes (berth's named volumes) created,
//! mounted by `docker run -v`, refused removal while in use, pruned; `docker cp` both ways for
//! running and stopped containers, through a volume and never out of the container's root;
//! `docker export`; networks (berth's named networks) created with IPAM settings, joined by
//! `docker run --network`, resolved by name between containers, connected and disconnected,
//! kept across a berthd restart, and the files in /etc read-only.

use berth_tests::agent::{Agent, IMAGE};
use berth_tests::docker::{docker, stdout_ok, with_docker_api};
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

fn stderr_of(a: &Agent, args: &[&str]) -> String {
    let out = docker(a, args);
    assert!(!out.status.success(), "docker {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Starts berthd with one file container (whose image import gives the store an image to run by
/// name) and returns that image's name.
fn start_with_image(a: &Agent) -> String {
    a.write(
        "base",
        &format!("image_file: {IMAGE}\nnetwork_mode: none\ncommand: [sleep, \"3600\"]\n"),
    );
    a.start_berthd(true).unwrap();
    a.wait(T, "base running", || a.phase("base") == "running")
        .unwrap();
    let image = stdout_ok(a, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(!image.is_empty() && !image.contains("<none>"), "{image}");
    image
}

/// `cat PATH` in a running container, through berth.
fn cat(a: &Agent, name: &str, path: &str) -> String {
    let out = a.berth(&["exec", name, "cat", path]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_volumes_cp_and_export() {
    let a = with_docker_api("docker-vol");
    let image = start_with_image(&a);
    let share = a.sd.share_dir();

    // A volume with a label: Docker's Volume object, on berth's named volume directory.
    assert_eq!(
        stdout_ok(&a, &["volume", "create", "--label", "team=a", "data1"]),
        "data1"
    );
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "volume",
                "inspect",
                "-f",
                "{{.Mountpoint}} {{.Driver}} {{.Scope}} {{index .Labels \"team\"}}",
                "data1"
            ]
        ),
        "/srv/tb/state/volumes/data1/_data local local a"
    );
    assert!(
        stdout_ok(&a, &["volume", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|l| l == "data1")
    );
    let e = stderr_of(&a, &["volume", "create", "-d", "nfs", "remote"]);
    assert!(e.contains("volume driver nfs is not supported"), "{e}");
    let e = stderr_of(&a, &["volume", "inspect", "nosuch"]);
    assert!(e.contains("no such volume"), "{e}");

    // `docker run -v` mounts it; berth sees the data in the volume's directory.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "v1",
            "--network",
            "none",
            "-v",
            "data1:/data",
            &image,
            "sh",
            "-c",
            "echo hello > /data/f; ln -s ../../../../srv /escape; echo ready; exec sleep 3600",
        ],
    );
    let in_volume = share.join("state/volumes/data1/_data/f");
    a.wait(T, "the file in the volume", || {
        std::fs::read_to_string(&in_volume).is_ok_and(|s| s == "hello\n")
    })
    .unwrap();
    a.wait(T, "the symlink made", || {
        String::from_utf8_lossy(&docker(&a, &["logs", "v1"]).stdout).contains("ready")
    })
    .unwrap();
    let e = stderr_of(&a, &["volume", "rm", "data1"]);
    assert!(e.contains("volume is in use") && e.contains("v1"), "{e}");

    // docker cp out of a running container, through the volume and from its root.
    stdout_ok(&a, &["cp", "v1:/data/f", "/srv/tb/f1"]);
    assert_eq!(
        std::fs::read_to_string(share.join("f1")).unwrap(),
        "hello\n"
    );
    stdout_ok(&a, &["cp", "v1:/etc/passwd", "/srv/tb/passwd"]);
    assert!(
        std::fs::read_to_string(share.join("passwd"))
            .unwrap()
            .starts_with("root:")
    );
    // ... and into it: the running container sees the file.
    std::fs::write(share.join("in.txt"), "copied in\n").unwrap();
    stdout_ok(&a, &["cp", "/srv/tb/in.txt", "v1:/tmp/"]);
    assert_eq!(cat(&a, "v1", "/tmp/in.txt"), "copied in\n");
    // A symlink to the host's /srv resolves inside the container's root: nothing of the host
    // is read, nothing is written there.
    std::fs::write(share.join("marker"), "host only\n").unwrap();
    let e = stderr_of(&a, &["cp", "v1:/escape/tb/marker", "/srv/tb/leaked"]);
    assert!(e.contains("Could not find the file"), "{e}");
    assert!(!share.join("leaked").exists());
    let e = stderr_of(&a, &["cp", "/srv/tb/in.txt", "v1:/escape/tb/planted"]);
    assert!(e.contains("Could not find the file /escape/tb"), "{e}");
    assert!(!share.join("planted").exists());
    // A copy refused early gets its answer also while the client still writes a body larger than
    // the socket's buffers.
    std::fs::write(share.join("big"), vec![7u8; 8 << 20]).unwrap();
    let e = stderr_of(&a, &["cp", "/srv/tb/big", "v1:/escape/tb/planted"]);
    assert!(e.contains("Could not find the file /escape/tb"), "{e}");
    let e = stderr_of(&a, &["cp", "v1:/no/such/file", "/srv/tb/x"]);
    assert!(e.contains("Could not find the file /no/such/file"), "{e}");

    // A stopped container: copies both ways, seen once it runs again.
    stdout_ok(&a, &["stop", "v1"]);
    stdout_ok(&a, &["cp", "v1:/tmp/in.txt", "/srv/tb/back.txt"]);
    assert_eq!(
        std::fs::read_to_string(share.join("back.txt")).unwrap(),
        "copied in\n"
    );
    std::fs::write(share.join("in2.txt"), "while stopped\n").unwrap();
    stdout_ok(&a, &["cp", "/srv/tb/in2.txt", "v1:/etc/"]);
    stdout_ok(&a, &["export", "v1", "-o", "/srv/tb/v1.tar"]);
    stdout_ok(&a, &["start", "v1"]);
    assert_eq!(cat(&a, "v1", "/etc/in2.txt"), "while stopped\n");

    // A read-only volume takes no copies, as with Docker.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "ro",
            "--network",
            "none",
            "-v",
            "data1:/data:ro",
            &image,
            "sleep",
            "3600",
        ],
    );
    let e = stderr_of(&a, &["cp", "/srv/tb/in.txt", "ro:/data/"]);
    assert!(e.contains("mounted volume is marked read-only"), "{e}");
    stdout_ok(&a, &["rm", "-f", "ro"]);

    // Created, never started: the copy is there at its first start.
    stdout_ok(
        &a,
        &[
            "create",
            "--name",
            "c0",
            "--network",
            "none",
            &image,
            "cat",
            "/etc/created.txt",
        ],
    );
    stdout_ok(&a, &["cp", "/srv/tb/in.txt", "c0:/etc/created.txt"]);
    stdout_ok(&a, &["start", "c0"]);
    assert_eq!(stdout_ok(&a, &["wait", "c0"]), "0");
    assert_eq!(
        stdout_ok(&a, &["logs", "c0"]).lines().next(),
        Some("copied in")
    );

    // docker export: the whole root, with what was copied in.
    let list = std::process::Command::new("tar")
        .args(["tf"])
        .arg(share.join("v1.tar"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for want in ["etc/in2.txt", "tmp/in.txt", "bin/busybox"] {
        assert!(list.lines().any(|l| l == want), "{want} not in {list}");
    }

    // Removal: forced while in use; prune takes only unused anonymous volumes unless -a.
    stdout_ok(&a, &["rm", "-f", "v1"]);
    stdout_ok(&a, &["volume", "create", "data2"]);
    let anon = stdout_ok(&a, &["volume", "create"]);
    assert_eq!(anon.len(), 64, "{anon}");
    let pruned = stdout_ok(&a, &["volume", "prune", "-f"]);
    assert!(
        pruned.contains(&anon) && !pruned.contains("data2"),
        "{pruned}"
    );
    let pruned = stdout_ok(&a, &["volume", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("data1") && pruned.contains("data2"),
        "{pruned}"
    );
    assert_eq!(stdout_ok(&a, &["volume", "ls", "-q"]), "");
    assert!(!share.join("state/volumes/data1").exists());
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark and aardvark-dns"]
fn docker_cli_networks() {
    let a = with_docker_api("docker-net");
    let share = a.sd.share_dir();
    std::fs::create_dir_all(share.join("networks")).unwrap();
    std::fs::write(share.join("networks/etcnet.yaml"), "subnet: 10.89.7.0/24\n").unwrap();
    let image = start_with_image(&a);

    // Docker's predefined networks and the one declared in a file.
    let ls = stdout_ok(&a, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in ["bridge bridge", "host host", "none null", "etcnet bridge"] {
        assert!(ls.lines().any(|l| l == want), "{want} not in {ls}");
    }

    let id = stdout_ok(
        &a,
        &[
            "network",
            "create",
            "--subnet",
            "10.89.8.0/24",
            "--gateway",
            "10.89.8.254",
            "--label",
            "team=a",
            "n1",
        ],
    );
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{.Internal}} {{index .Labels \"team\"}}",
                &id[..12]
            ]
        ),
        "10.89.8.0/24 10.89.8.254 false a"
    );
    assert!(share.join("state/networks/n1.yaml").exists());
    assert_eq!(
        stdout_ok(
            &a,
            &[
                "network",
                "ls",
                "--filter",
                "label=team=a",
                "--format",
                "{{.Name}}"
            ]
        ),
        "n1"
    );
    let e = stderr_of(&a, &["network", "create", "-d", "overlay", "o1"]);
    assert!(e.contains("overlay"), "{e}");
    let e = stderr_of(
        &a,
        &["network", "create", "--subnet", "10.89.8.0/25", "clash"],
    );
    assert!(e.contains("overlap"), "{e}");
    let e = stderr_of(&a, &["network", "create", "n1"]);
    assert!(e.contains("already exists"), "{e}");

    // Two containers on n1: one finds the other by name.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "n1",
            &image,
            "sh",
            "-c",
            "echo from-srv > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
        ],
    );
    let addr = stdout_ok(
        &a,
        &[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.n1.IPAddress}}",
            "srv",
        ],
    );
    assert!(addr.starts_with("10.89.8."), "{addr}");
    // busybox's own resolver and nc (see agent_networks_named.rs for why not wget).
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "cli",
            "--network",
            "n1",
            &image,
            "sh",
            "-c",
            "for i in $(seq 30); do h=$(nslookup srv | awk '/^Address/ && !/:53$/ {print $2}' | tail -n1); \
             [ -n \"$h\" ] && printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $h 80 && break; sleep 1; done; \
             exec sleep 3600",
        ],
    );
    a.wait(T, "cli reaching srv by name", || {
        String::from_utf8_lossy(&docker(&a, &["logs", "cli"]).stdout).contains("from-srv")
    })
    .unwrap();
    let members = stdout_ok(
        &a,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            "n1",
        ],
    );
    assert!(
        members.contains("srv") && members.contains("cli"),
        "{members}"
    );

    // Removal refused while in use, for predefined networks, and for a file's network.
    let e = stderr_of(&a, &["network", "rm", "n1"]);
    assert!(e.contains("active endpoints"), "{e}");
    let e = stderr_of(&a, &["network", "rm", "bridge"]);
    assert!(e.contains("pre-defined"), "{e}");
    let e = stderr_of(&a, &["network", "rm", "etcnet"]);
    assert!(e.contains("etcnet.yaml") && e.contains("read-only"), "{e}");

    // connect and disconnect change the spec: the container restarts on its new networks.
    stdout_ok(&a, &["network", "create", "n2"]);
    stdout_ok(&a, &["network", "connect", "--alias", "web", "n2", "srv"]);
    let nets = |a: &Agent| {
        stdout_ok(
            a,
            &[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                "srv",
            ],
        )
    };
    a.wait(T, "srv on n1 and n2", || nets(&a) == "n1 n2")
        .unwrap();
    stdout_ok(&a, &["network", "disconnect", "n2", "srv"]);
    a.wait(T, "srv on n1 alone", || nets(&a) == "n1").unwrap();

    // API networks persist across a berthd restart.
    a.kill_berthd().unwrap();
    a.start_berthd(true).unwrap();
    let ls = stdout_ok(&a, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        ls.lines().any(|l| l == "n1") && ls.lines().any(|l| l == "n2"),
        "{ls}"
    );

    // prune: the unused API networks go; files' networks and those in use stay.
    let pruned = stdout_ok(&a, &["network", "prune", "-f"]);
    assert!(pruned.contains("n2") && !pruned.contains("n1"), "{pruned}");
    stdout_ok(&a, &["rm", "-f", "srv", "cli"]);
    stdout_ok(&a, &["network", "rm", "n1"]);
    let ls = stdout_ok(&a, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(!ls.contains("n1") && ls.contains("etcnet"), "{ls}");
    assert!(!share.join("state/networks/n1.yaml").exists());
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_saves_and_loads_images() {
    let a = with_docker_api("docker-save");
    let image = start_with_image(&a);
    let share = a.sd.share_dir();

    // save: a docker-archive that names the image, readable by another tool (skopeo).
    stdout_ok(&a, &["tag", &image, "copy:1"]);
    stdout_ok(&a, &["save", "-o", "/srv/tb/copy.tar", "copy:1"]);
    let listing = std::process::Command::new("tar")
        .args(["xOf"])
        .arg(share.join("copy.tar"))
        .arg("manifest.json")
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "copy:1", "{manifest}");
    let skopeo = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!(
            "docker-archive:{}",
            share.join("copy.tar").display()
        ))
        .output()
        .unwrap();
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );

    // load: gone from the store, back from the archive, and it runs.
    // The name goes (its layers stay: the base container uses the same image).
    stdout_ok(&a, &["rmi", "-f", "copy:1"]);
    assert!(!stdout_ok(&a, &["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains("copy:1"));
    assert_eq!(
        stdout_ok(&a, &["load", "-i", "/srv/tb/copy.tar"]),
        "Loaded image: copy:1"
    );
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "loaded",
            "--network",
            "none",
            "copy:1",
            "sh",
            "-c",
            "echo from-loaded; exec sleep 3600",
        ],
    );
    a.wait(T, "the loaded image running", || {
        String::from_utf8_lossy(&docker(&a, &["logs", "loaded"]).stdout).contains("from-loaded")
    })
    .unwrap();
    // An OCI archive loads too; garbage is a clear error.
    let out = stdout_ok(&a, &["load", "-i", IMAGE]);
    assert!(out.starts_with("Loaded image: "), "{out}");
    std::fs::write(share.join("junk.tar"), b"not a tar at all").unwrap();
    let e = stderr_of(&a, &["load", "-i", "/srv/tb/junk.tar"]);
    assert!(e.contains("manifest.json") || e.contains("archive"), "{e}");
    let e = stderr_of(&a, &["save", "-o", "/srv/tb/none.tar", "nosuch:1"]);
    assert!(e.contains("No such image: nosuch:1"), "{e}");
}

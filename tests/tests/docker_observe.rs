//! The Docker API's observing endpoints against berthd under a real systemd: `docker events`
//! (with `--since`/`--until` and filters) for changes made through the Docker API, the native
//! CLI, a spec file and systemd alone; `docker stats`, `docker system df`, the prunes and
//! `docker login` against Debian's docker-registry with the real docker CLI; the event and stats
//! streams with bollard.

use berth_tests::agent::{Agent, IMAGE};
use berth_tests::docker::{
    AUTH_REG, PASS, SOCK, USER, docker, registry_inside, stdout_ok, with_docker_api,
    with_docker_config,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T: Duration = Duration::from_secs(60);

fn now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// The events between `since` and now, one `Type Action name exitCode` line each.
fn events(a: &Agent, since: &str, filters: &[&str]) -> Vec<String> {
    let until = now();
    let mut args = vec![
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes \"exitCode\"}}",
    ];
    for f in filters {
        args.extend(["--filter", f]);
    }
    stdout_ok(a, &args)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

/// A running container from the test image declared in a file, and the image's name.
fn web(a: &Agent) -> String {
    a.write(
        "web",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\nlabels: {{app: web}}\n\
             command: [sleep, \"3600\"]\n"
        ),
    );
    a.start_berthd(true).unwrap();
    a.wait(T, "web running", || a.phase("web") == "running")
        .unwrap();
    stdout_ok(a, &["images", "--format", "{{.Repository}}:{{.Tag}}"])
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_events_from_every_source() {
    let a = with_docker_api("docker-events");
    let image = web(&a);
    let t0 = now();

    // Through the Docker API: create, start, die with its exit code.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "job",
            "--label",
            "tier=batch",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "sleep 1; exit 3",
        ],
    );
    assert_eq!(stdout_ok(&a, &["wait", "job"]), "3");
    let seen = std::cell::RefCell::new(Vec::new());
    a.wait(T, "job's die event", || {
        *seen.borrow_mut() = events(&a, &t0, &["container=job"]);
        seen.borrow().iter().any(|l| l == "container die job 3")
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", seen.borrow()));
    let seen = seen.into_inner();
    let job: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(
        job,
        [
            "container create job",
            "container start job",
            "container die job 3"
        ],
        "in order, and only job's"
    );
    // The native CLI reads the same bus.
    let native = a.berth(&["events", "--since", "600"]).unwrap();
    let native = String::from_utf8_lossy(&native.stdout);
    let job_id = stdout_ok(&a, &["inspect", "-f", "{{.Id}}", "job"]);
    assert!(
        native
            .lines()
            .any(|l| l.contains(&format!(" container die {job_id} (")) && l.contains("exitCode=3")),
        "{native}"
    );
    // Filters: by action, by label (the container's labels are the event's attributes).
    assert_eq!(
        events(&a, &t0, &["event=die", "label=tier=batch"]),
        ["container die job 3"]
    );
    assert!(events(&a, &t0, &["label=tier=other"]).is_empty());
    assert!(events(&a, &t0, &["type=image"]).is_empty());

    // Through the native CLI: berth stop is a die and a stop.
    let t1 = now();
    let out = a.berth(&["stop", "web"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.wait(T, "web's stop event", || {
        events(&a, &t1, &["container=web"])
            .iter()
            .any(|l| l == "container stop web")
    })
    .unwrap();
    assert!(
        events(&a, &t1, &["container=web", "event=die"])
            .iter()
            .all(|l| l.starts_with("container die web")),
    );

    // A spec file, and systemd alone: the container's process ends by itself.
    let t2 = now();
    a.write(
        "crash",
        &format!(
            "image_file: {IMAGE}\nnetwork_mode: none\nrestart: \"no\"\n\
             command: [sh, -c, \"sleep 2; exit 5\"]\n"
        ),
    );
    let seen = std::cell::RefCell::new(Vec::new());
    a.wait(T, "crash's die event", || {
        *seen.borrow_mut() = events(&a, &t2, &["container=crash"]);
        seen.borrow().iter().any(|l| l == "container die crash 5")
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", seen.borrow()));
    let seen = seen.into_inner();
    assert!(
        seen.contains(&"container start crash".to_owned()),
        "{seen:?}"
    );
    a.rm("crash");
    a.wait(T, "crash's destroy event", || {
        events(&a, &t2, &["container=crash", "event=destroy"]) == ["container destroy crash"]
    })
    .unwrap();

    // Image operations.
    let t3 = now();
    stdout_ok(&a, &["tag", &image, "tb/copy:1"]);
    stdout_ok(&a, &["rmi", "-f", "tb/copy:1"]);
    let img = events(&a, &t3, &["type=image"]);
    assert_eq!(img.len(), 3, "{img:?}");
    assert!(img[0].starts_with("image tag"), "{img:?}");
    assert!(img[1].starts_with("image untag"), "{img:?}");
    assert!(img[2].starts_with("image delete"), "{img:?}");

    // A network declared and removed (a file in the network directory).
    let t4 = now();
    let nets = a.specs.parent().unwrap().join("networks");
    std::fs::create_dir_all(&nets).unwrap();
    std::fs::write(nets.join("back.yaml"), "subnet: 10.89.7.0/24\n").unwrap();
    a.wait(T, "the network's create event", || {
        events(&a, &t4, &["type=network", "network=back"]) == ["network create back"]
    })
    .unwrap();
    // A container joining it and leaving it.
    a.write(
        "member",
        &format!("image_file: {IMAGE}\nnetworks: [back]\ncommand: [sleep, \"3600\"]\n"),
    );
    let joined = |what: &str| {
        events(&a, &t4, &["type=network", &format!("event={what}")])
            == [format!("network {what} back")]
    };
    a.wait(T, "member's connect event", || joined("connect"))
        .unwrap();
    a.rm("member");
    a.wait(T, "member's disconnect event", || joined("disconnect"))
        .unwrap();
    std::fs::remove_file(nets.join("back.yaml")).unwrap();
    a.wait(T, "the network's destroy event", || {
        events(&a, &t4, &["type=network"])
            .last()
            .map(String::as_str)
            == Some("network destroy back")
    })
    .unwrap();

    // An unknown filter is a clear error.
    let bad = docker(&a, &["events", "--until", &now(), "--filter", "volume=x"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid filter 'volume'"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn docker_cli_stats_df_and_prunes() {
    let a = with_docker_api("docker-stats");
    let image = web(&a);
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "busy",
            "--network",
            "none",
            "--memory",
            "64m",
            &image,
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    // CPU % from two samples a second apart; memory against the container's limit.
    let line = stdout_ok(
        &a,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}",
            "busy",
        ],
    );
    eprintln!("docker stats --no-stream: {line}");
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f[0], "busy", "{line}");
    let cpu: f64 = f[1].trim_end_matches('%').parse().unwrap();
    // Other work on the machine may share its CPUs: well above zero is what is asked.
    assert!(cpu > 5.0, "a busy loop uses a CPU: {line}");
    assert!(f[2].ends_with("/ 64MiB"), "{line}");
    let used = f[2].split(' ').next().unwrap();
    assert!(!used.starts_with("0B"), "{line}");
    assert!(f[3].parse::<u32>().unwrap() >= 2, "shim and loop: {line}");

    // An ended container made through the API (leaving 100 kB in its writable layer), and one
    // declared in a file.
    stdout_ok(
        &a,
        &[
            "run",
            "-d",
            "--name",
            "done1",
            "--network",
            "none",
            &image,
            "sh",
            "-c",
            "head -c 100000 /dev/zero > /big",
        ],
    );
    assert_eq!(stdout_ok(&a, &["wait", "done1"]), "0");
    a.write(
        "filedone",
        &format!("image_file: {IMAGE}\nnetwork_mode: none\nrestart: \"no\"\ncommand: [\"true\"]\n"),
    );
    a.wait(T, "filedone ended", || a.phase("filedone") == "exited")
        .unwrap();

    let df = stdout_ok(
        &a,
        &[
            "system",
            "df",
            "--format",
            "{{.Type}} {{.TotalCount}} {{.Active}}",
        ],
    );
    assert!(df.contains("Images 1 1"), "{df}");
    assert!(df.contains("Containers 4 2"), "{df}");
    let size = stdout_ok(&a, &["system", "df", "--format", "{{.Type}} {{.Size}}"]);
    assert!(size.contains("Containers 100kB"), "{size}");

    // Container prune: the API's ended container goes; the file's stays, as do running ones.
    let done1 = stdout_ok(&a, &["inspect", "-f", "{{.Id}}", "done1"]);
    let out = stdout_ok(&a, &["container", "prune", "-f"]);
    assert!(out.contains(&done1), "{out}");
    assert!(out.contains("Total reclaimed space: 100kB"), "{out}");
    let left = stdout_ok(&a, &["ps", "-a", "--format", "{{.Names}}"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    assert_eq!(left, ["busy", "filedone", "web"]);

    // Image prune: nothing while containers use the image; all unused ones with -a.
    let out = stdout_ok(&a, &["image", "prune", "-a", "-f"]);
    assert!(!out.contains("Deleted Images"), "{out}");
    assert_eq!(stdout_ok(&a, &["images", "-q"]).lines().count(), 1);
    stdout_ok(&a, &["rm", "-f", "busy"]);
    a.rm("web");
    a.rm("filedone");
    a.wait(T, "no containers", || a.ps().unwrap().is_empty())
        .unwrap();
    let out = stdout_ok(&a, &["image", "prune", "-a", "-f"]);
    assert!(out.contains("Deleted Images"), "{out}");
    assert!(out.contains("untagged: "), "{out}");
    assert_eq!(stdout_ok(&a, &["images", "-q"]), "");
    // The layers went too: the store reports what it freed.
    let reclaimed = out.lines().last().unwrap_or_default();
    assert!(
        reclaimed.starts_with("Total reclaimed space: ") && !reclaimed.ends_with(" 0B"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs a registry"]
fn docker_cli_login_checks_credentials_at_the_registry() {
    let a = with_docker_config(
        "docker-login",
        &format!("registries: {{insecure: [\"{AUTH_REG}\"]}}\n"),
    );
    a.start_berthd(true).unwrap();
    registry_inside(&a, AUTH_REG, true);
    let out = stdout_ok(&a, &["login", "-u", USER, "-p", PASS, AUTH_REG]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let bad = docker(&a, &["login", "-u", USER, "-p", "wrong", AUTH_REG]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("401 Unauthorized"), "{err}");
    // Nothing kept by berthd: a pull without the CLI's stored login is refused.
    stdout_ok(&a, &["logout", AUTH_REG]);
    let pull = docker(&a, &["pull", &format!("{AUTH_REG}/tb/busybox:1")]);
    assert!(!pull.status.success());
    assert!(
        String::from_utf8_lossy(&pull.stderr).contains("no credentials"),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn bollard_streams_events_and_stats() {
    use bollard::query_parameters::{EventsOptions, StatsOptions};
    use futures_util::StreamExt;
    let a = with_docker_api("docker-bollard");
    let image = web(&a);
    let sock = a.sd.root_path().join(SOCK.trim_start_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let d = bollard::Docker::connect_with_unix(
            sock.to_str().unwrap(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        // The stream starts from now: it sees the create and start of a container run after
        // it began (from the history, as the first poll sends the request) and its die.
        let filters =
            std::collections::HashMap::from([("container".to_owned(), vec!["short".to_owned()])]);
        let mut ev = d.events(Some(EventsOptions {
            since: Some(now()),
            filters: Some(filters),
            ..Default::default()
        }));
        stdout_ok(
            &a,
            &[
                "run",
                "-d",
                "--name",
                "short",
                "--network",
                "none",
                &image,
                "sh",
                "-c",
                "sleep 1; exit 4",
            ],
        );
        let mut actions = Vec::new();
        while !actions.contains(&"die".to_owned()) {
            let e = tokio::time::timeout(T, ev.next())
                .await
                .expect("an event within a minute")
                .expect("the stream goes on")
                .expect("an event");
            let attrs = e
                .actor
                .as_ref()
                .and_then(|x| x.attributes.clone())
                .unwrap_or_default();
            assert_eq!(attrs.get("name").map(String::as_str), Some("short"));
            let action = e.action.clone().unwrap_or_default();
            if action == "die" {
                assert_eq!(attrs.get("exitCode").map(String::as_str), Some("4"));
            }
            actions.push(action);
        }
        assert_eq!(actions, ["create", "start", "die"]);

        // Stats of a busy container: samples a second apart, CPU time rising.
        stdout_ok(
            &a,
            &[
                "run",
                "-d",
                "--name",
                "spin",
                "--network",
                "none",
                &image,
                "sh",
                "-c",
                "while :; do :; done",
            ],
        );
        let mut st = d.stats(
            "spin",
            Some(StatsOptions {
                stream: true,
                one_shot: false,
            }),
        );
        let mut usage = Vec::new();
        for _ in 0..3 {
            let s = tokio::time::timeout(T, st.next())
                .await
                .expect("a sample within a minute")
                .expect("the stream goes on")
                .expect("a sample");
            let cpu = s
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage);
            usage.push(cpu.unwrap_or(0));
            assert!(s.memory_stats.and_then(|m| m.usage).unwrap_or(0) > 0);
        }
        assert!(
            usage[0] < usage[1] && usage[1] < usage[2],
            "cpu usage rises: {usage:?}"
        );
        eprintln!("cpu usage of three samples (ns): {usage:?}");
        // Up to a second of a CPU between samples (less when the machine is busy).
        assert!(usage[2] - usage[1] > 50_000_000, "{usage:?}");
    });
}

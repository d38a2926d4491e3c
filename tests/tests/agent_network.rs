//! Bridge networking end to end under a real systemd, in the network namespace the test systemd
//! runs in (no traffic leaves it): berthd's shim sets up the container's namespace with netavark,
//! a busybox httpd is published on host ports and fetched from the namespace's host side, a UDP
//! port answers, a host port already taken fails that container alone, and after the containers
//! stop no veth, namespace, lease or forwarding rule of theirs is left.

use berth_tests::agent::{Agent, IMAGE};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The host's python3 through its dynamic loader (the image is busybox only).
const PY: &str = "/host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, --library-path, \
    /host/usr/lib/x86_64-linux-gnu, /host/usr/bin/python3";
/// A UDP echo server on port 5353 that answers `pong <what came>`.
const UDP_ECHO: &str = "import socket; s = socket.socket(2, 2); s.bind(('', 5353)); \
    [s.sendto(b'pong ' + d, a) for d, a in iter(lambda: s.recvfrom(64), None)]";

/// Runs `argv` in the test systemd's namespaces (its network namespace is the containers' host).
fn inside(a: &Agent, argv: &[&str]) -> (bool, String) {
    let out = a.sd.exec_inside(argv).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// What a container's network leaves on the host side: links other than loopback, the berth
/// namespaces and leases, and the NAT rules that name the bridge subnet (netavark's empty base
/// chains are shared and stay, as with podman).
fn leftovers(a: &Agent) -> Vec<String> {
    let mut v = Vec::new();
    let (_, links) = inside(a, &["ip", "-o", "link", "show"]);
    v.extend(
        links
            .lines()
            .filter(|l| l.contains("veth") || l.contains("berth0"))
            .map(|l| format!("link: {l}")),
    );
    let (_, rules) = inside(a, &["iptables-save"]);
    v.extend(
        rules
            .lines()
            .filter(|l| l.contains("10.87.") || l.contains("dnat name"))
            .map(|l| format!("rule: {l}")),
    );
    let (_, files) = inside(
        a,
        &[
            "sh",
            "-c",
            "ls -A /run/berth/netns /run/berth/network/leases/berth 2>/dev/null",
        ],
    );
    v.extend(
        files
            .lines()
            .filter(|l| !l.is_empty() && !l.ends_with(':'))
            .map(|l| format!("file: {l}")),
    );
    v
}

fn fetch(a: &Agent, url: &str) -> (bool, String) {
    inside(a, &["curl", "-sS", "-m", "5", url])
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_publishes_ports_and_cleans_up() {
    let a = Agent::start("agent-net").unwrap();
    a.start_berthd(false).unwrap();
    let before = leftovers(&a);
    assert!(before.is_empty(), "{before:?}");
    a.write(
        "web",
        &format!(
            "image_file: {IMAGE}\nports: [\"18080:80\", \"80\"]\n\
             command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && \
             exec httpd -f -p 80 -h /www']\n"
        ),
    );
    a.wait(T, "web running", || a.phase("web") == "running")
        .unwrap();
    let web = a.ps().unwrap()["web"].clone();
    let net = &web["network"];
    assert!(
        net["networks"][0]["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("10.87."),
        "{web}"
    );
    let running = leftovers(&a);
    assert!(
        running.iter().any(|l| l.contains("veth")) && running.iter().any(|l| l.contains("rule:")),
        "the listing sees a running container's network: {running:?}"
    );
    let ephemeral = net["ports"][1]["host_port"].as_u64().unwrap_or(0);
    assert!(ephemeral > 0 && ephemeral != 80, "{web}");

    // TCP through the published port, on the host's loopback and through the ephemeral one
    // (httpd may still be starting when the unit is active).
    a.wait(T, "web answering on 18080", || {
        fetch(&a, "http://127.0.0.1:18080/").0
    })
    .unwrap_or_else(|e| {
        let (_, rules) = inside(&a, &["iptables-save", "-t", "nat"]);
        let (_, direct) = fetch(
            &a,
            &format!(
                "http://{}/",
                net["networks"][0]["address"].as_str().unwrap_or("")
            ),
        );
        panic!("{e}\nnat:\n{rules}\ndirect: {direct}")
    });
    let (ok, body) = fetch(&a, "http://127.0.0.1:18080/");
    assert!(ok && body.trim() == "web", "{body}");
    let (ok, body) = fetch(&a, &format!("http://127.0.0.1:{ephemeral}/"));
    assert!(ok && body.trim() == "web", "{body}");
    // UDP on 127.0.0.1 through a second container's echo server (the host's python3: busybox has
    // no UDP server).
    a.write(
        "echo",
        &format!(
            "image_file: {IMAGE}\nports: [\"127.0.0.1:15353:5353/udp\"]\n\
             volumes: [\"/usr:/host/usr:ro\"]\nenvironment: {{PYTHONHOME: /host/usr}}\n\
             command: [{PY}, -c, \"{UDP_ECHO}\"]\n"
        ),
    );
    let udp = || {
        inside(
            &a,
            &[
                "python3",
                "-c",
                "import socket; s = socket.socket(2, 2); s.settimeout(1); \
               s.sendto(b'ping', ('127.0.0.1', 15353)); print(s.recv(64).decode())",
            ],
        )
        .1
    };
    a.wait(T, "a UDP answer through 127.0.0.1:15353", || {
        udp().contains("pong ping")
    })
    .unwrap();
    a.rm("echo");
    // The container's /etc files: its name on its address, resolvers without loopback ones.
    let out = a.berth(&["exec", "web", "cat", "/etc/hosts"]).unwrap();
    let hosts = String::from_utf8_lossy(&out.stdout).into_owned();
    let addr = net["networks"][0]["address"].as_str().unwrap();
    assert!(hosts.contains(&format!("{addr}\tweb")), "{hosts}");
    let out = a
        .berth(&["exec", "web", "cat", "/etc/resolv.conf"])
        .unwrap();
    let resolv = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        resolv.contains("nameserver") && !resolv.contains("nameserver 127."),
        "{resolv}"
    );

    // A second container asking for a taken host port fails, with the port in its status;
    // web keeps serving.
    a.write(
        "clash",
        &format!("image_file: {IMAGE}\nports: [\"18080:80\"]\ncommand: [sleep, '3600']\n"),
    );
    a.wait(T, "clash reported failing on its port", || {
        a.ps().ok().is_some_and(|m| {
            m.get("clash").is_some_and(|s| {
                s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("18080") && m.contains("already in use"))
            })
        })
    })
    .unwrap();
    let (ok, body) = fetch(&a, "http://127.0.0.1:18080/");
    assert!(ok && body.trim() == "web", "{body}");

    // Stopped: nothing of either container's network is left.
    a.rm("clash");
    a.rm("web");
    a.wait(T, "both containers gone", || {
        a.ps().is_ok_and(|m| m.is_empty()) && !a.active("web")
    })
    .unwrap();
    a.wait(T, "network torn down", || leftovers(&a).is_empty())
        .unwrap_or_else(|e| panic!("{e}\nleft: {:?}", leftovers(&a)));
    let (ok, _) = fetch(&a, "http://127.0.0.1:18080/");
    assert!(!ok, "the port still answers after the container stopped");
}

/// web's forwarding rules (one per published port; netavark names the container by its id, and
/// web is the only container).
fn dnat_rules(a: &Agent) -> usize {
    let (_, nat) = inside(a, &["iptables-save", "-t", "nat"]);
    nat.lines()
        .filter(|l| l.contains("dnat name: berth id: "))
        .count()
}

/// web's ephemeral host port, from `berth ps`.
fn host_port(a: &Agent) -> u64 {
    a.ps()
        .ok()
        .and_then(|m| m.get("web")?["network"]["ports"][0]["host_port"].as_u64())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_shim_killed_then_restarted_by_systemd_cleans_up() {
    let a = Agent::start("agent-net-kill").unwrap();
    a.start_berthd(false).unwrap();
    a.write(
        "web",
        &format!(
            "image_file: {IMAGE}\nrestart: always\nports: [\"80\"]\n\
             command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && \
             exec httpd -f -p 80 -h /www']\n"
        ),
    );
    let serving = |port: u64| fetch(&a, &format!("http://127.0.0.1:{port}/")).1.trim() == "web";
    a.wait(T, "web published", || host_port(&a) != 0).unwrap();
    let first = host_port(&a);
    a.wait(T, "web answering", || serving(first)).unwrap();
    assert_eq!(dnat_rules(&a), 1);
    // The shim dies without its clean-up; systemd alone (berthd is stopped) restarts it, and the
    // new shim's ephemeral port is another one.
    a.kill_berthd().unwrap();
    let pid = a.show("web", "MainPID");
    let out = a.sd.exec_inside(&["kill", "-9", &pid]).unwrap();
    assert!(out.status.success(), "{out:?}");
    a.wait(T, "a new shim", || {
        let p = a.show("web", "MainPID");
        p != pid && p != "0" && a.active("web")
    })
    .unwrap();
    a.start_berthd(true).unwrap();
    a.wait(T, "web published again", || host_port(&a) != 0)
        .unwrap();
    let second = host_port(&a);
    a.wait(T, "web answering again", || serving(second))
        .unwrap();
    // The earlier run's rule (for its own port) was torn down by the new shim.
    assert_eq!(dnat_rules(&a), 1, "first port {first}, second {second}");
    a.rm("web");
    a.wait(T, "web gone", || {
        a.ps().is_ok_and(|m| m.is_empty()) && !a.active("web")
    })
    .unwrap();
    a.wait(T, "network torn down", || leftovers(&a).is_empty())
        .unwrap_or_else(|e| panic!("{e}\nleft: {:?}", leftovers(&a)));
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_first_containers_on_the_bridge_start_at_once() {
    // Started together on a bridge that does not exist yet, their netavark runs would each try to
    // create its firewall chains and some fail ("Chain already exists") without the shims' lock.
    // With release builds berthd starts the ten within a few ms and the first round or two failed;
    // debug builds spread the starts more, so the race is rarer there.
    let a = Agent::start("agent-net-burst").unwrap();
    a.start_berthd(false).unwrap();
    let names: Vec<String> = (1..=10).map(|i| format!("c{i}")).collect();
    // The race is a matter of timing: a few rounds, each on a bridge that is gone again.
    for round in 0..3 {
        burst(&a, &names, round);
    }
}

fn burst(a: &Agent, names: &[String], round: usize) {
    for (i, n) in names.iter().enumerate() {
        a.write(
            n,
            &format!(
                "image_file: {IMAGE}\nports: [\"{}:80\"]\ncommand: [sleep, '3600']\n\
                 stop_signal: SIGKILL\n",
                18101 + i
            ),
        );
    }
    let phases = || -> Vec<(String, String, String)> {
        let ps = a.ps().unwrap_or_default();
        names
            .iter()
            .map(|n| {
                let s = ps.get(n.as_str());
                let field = |k: &str| s.and_then(|s| s[k].as_str()).unwrap_or_default().to_owned();
                (n.clone(), field("phase"), field("message"))
            })
            .collect()
    };
    a.wait(T, "all running or one failed", || {
        let p = phases();
        p.iter().all(|(_, ph, _)| ph == "running") || p.iter().any(|(_, ph, _)| ph == "failed")
    })
    .unwrap_or_else(|e| panic!("round {round}: {e}\n{:?}", phases()));
    let p = phases();
    assert!(
        p.iter().all(|(_, ph, _)| ph == "running"),
        "round {round}: {p:?}"
    );
    let ps = a.ps().unwrap();
    let mut addrs: Vec<&str> = names
        .iter()
        .filter_map(|n| ps[n.as_str()]["network"]["networks"][0]["address"].as_str())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), names.len(), "{ps:?}");
    for n in names {
        a.rm(n);
    }
    a.wait(T, "all gone", || a.ps().is_ok_and(|m| m.is_empty()))
        .unwrap();
    a.wait(T, "network torn down", || leftovers(a).is_empty())
        .unwrap_or_else(|e| panic!("{e}\nleft: {:?}", leftovers(a)));
}

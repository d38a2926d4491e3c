//! Named networks end to end under a real systemd, in the network namespace the test systemd runs
//! in (no traffic leaves it): containers on a network reach each other by name and alias through
//! aardvark-dns, a container on another network cannot reach them, an `internal` network has no
//! way out (to an address made inside the namespace), an overlapping subnet is an error on that
//! network alone, and a network edited or removed while in use is reported while its containers
//! keep running.

use berth_tests::agent::{Agent, IMAGE};
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);
/// A listener on an address of the test namespace's loopback: the "outside" a bridge container
/// reaches through its gateway and an internal one must not.
const TARGET: &str = "10.99.0.1";

fn inside(a: &Agent, argv: &[&str]) -> (bool, String) {
    let out = a.sd.exec_inside(argv).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn berth(a: &Agent, args: &[&str]) -> (bool, String) {
    let out = a.berth(args).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `sh -c CMD` in a running container.
fn exec(a: &Agent, name: &str, cmd: &str) -> (bool, String) {
    berth(a, &["exec", name, "sh", "-c", cmd])
}

/// An HTTP GET of `path` from `host` (a name or an address) inside container `from`. The image's
/// busybox is static glibc, whose resolver cannot work without NSS modules (its wget crashes,
/// even on an address): names go through busybox's own DNS client (`nslookup`, which uses the
/// container's resolv.conf, so aardvark-dns), the request through `nc`. The body, when it came.
fn get(a: &Agent, from: &str, host: &str, path: &str) -> Option<String> {
    let script = format!(
        "h={host}; case $h in [0-9]*) ;; *) h=$(nslookup $h | awk '/^Address/ && !/:53$/ {{print $2}}' | tail -n1);; esac; \
         [ -n \"$h\" ] || exit 2; printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $h 80"
    );
    let (ok, out) = exec(a, from, &script);
    let body = out.split("\r\n\r\n").nth(1)?.trim().to_owned();
    (ok && out.starts_with("HTTP/1.")).then_some(body)
}

fn network(a: &Agent, name: &str) -> Value {
    let (ok, out) = berth(a, &["network", "inspect", name, "--json"]);
    assert!(ok, "network inspect {name}: {out}");
    serde_json::from_str(&out).unwrap()
}

fn write_network(a: &Agent, name: &str, yaml: &str) {
    let dir = a.specs.parent().unwrap().join("networks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
}

fn sleeper(nets: &str) -> String {
    format!("image_file: {IMAGE}\nnetworks: {nets}\ncommand: [sleep, \"3600\"]\n")
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark and aardvark-dns"]
fn agent_networks_named_dns_isolation_internal_and_edits() {
    let a = Agent::start("agent-netnamed").unwrap();
    write_network(
        &a,
        "front",
        "subnet: 10.88.1.0/24\nipv6_subnet: fd00:88:1::/64\nlabels: {team: web}\n",
    );
    write_network(&a, "other", "subnet: 10.88.2.0/24\n");
    write_network(&a, "intern", "subnet: 10.88.3.0/24\ninternal: true\n");
    // Inside the default network's 10.87.0.0/16: refused, the others unaffected.
    write_network(&a, "clash", "subnet: 10.87.5.0/24\n");
    std::fs::write(
        a.specs.parent().unwrap().join("berthd.yaml"),
        "spec_dir: /srv/tb/specs\nstate_dir: /srv/tb/state\n",
    )
    .unwrap();
    // The outside: a listener on an address of the test namespace's own loopback.
    for cmd in [
        vec!["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"],
        vec![
            "systemd-run",
            "--unit=target",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "10.99.0.1:8099",
            "-h",
            "/srv/tb",
        ],
    ] {
        let (ok, out) = inside(&a, &cmd);
        assert!(ok, "{cmd:?}: {out}");
    }
    std::fs::write(a.specs.parent().unwrap().join("index.html"), "outside\n").unwrap();
    a.start_berthd(false).unwrap();

    a.write(
        "web",
        &format!(
            "image_file: {IMAGE}\nnetworks: {{front: {{aliases: [www]}}}}\n\
             command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && \
             exec httpd -f -p 80 -h /www']\n"
        ),
    );
    a.write(
        "client",
        &format!(
            "image_file: {IMAGE}\nnetworks:\n  front:\n    ipv4_address: 10.88.1.50\n\
             command: [sleep, \"3600\"]\n"
        ),
    );
    a.write("stranger", &sleeper("[other]"));
    a.write("shut", &sleeper("[intern]"));
    a.write("bad", &sleeper("[clash]"));
    for n in ["web", "client", "stranger", "shut"] {
        a.wait(T, &format!("{n} running"), || a.phase(n) == "running")
            .unwrap_or_else(|e| panic!("{e}: {}", berth(&a, &["status", n]).1));
    }
    // The bad network's container fails alone, saying why.
    a.wait(T, "bad refused", || {
        berth(&a, &["status", "bad"])
            .1
            .contains("network clash is not usable")
    })
    .unwrap_or_else(|e| panic!("{e}: {}", berth(&a, &["status", "bad"]).1));
    let clash = network(&a, "clash");
    assert!(
        clash["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains("overlaps the default network berth"),
        "{clash}"
    );
    // A static address another container holds: that container fails, saying who holds it,
    // and `berth check` names the clash.
    a.write("twin", &sleeper("{front: {ipv4_address: 10.88.1.50}}"));
    a.wait(T, "twin refused its address", || {
        a.ps().ok().is_some_and(|m| {
            m.get("twin").is_some_and(|s| {
                s["message"].as_str().is_some_and(|m| {
                    m.contains("address 10.88.1.50 is already taken by container client")
                })
            })
        })
    })
    .unwrap_or_else(|e| panic!("{e}: {}", berth(&a, &["status", "twin"]).1));
    let (ok, out) = berth(&a, &["network", "ls"]);
    assert!(ok && out.contains("overlaps the default network"), "{out}");
    let (ok, out) = berth(&a, &["--config", "/srv/tb/berthd.yaml", "check"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("/srv/tb/networks/clash.yaml: network clash: subnet 10.87.5.0/24 overlaps"),
        "{out}"
    );
    assert!(out.contains("/srv/tb/specs/bad.yaml:2:"), "{out}");
    assert!(out.contains("ok      /srv/tb/specs/web.yaml"), "{out}");
    assert!(
        out.contains("ipv4_address 10.88.1.50 on network front is container client's too"),
        "{out}"
    );
    a.rm("twin");

    // ps and network inspect show the attachments; the static address is the one asked for.
    let ps = a.ps().unwrap();
    assert_eq!(
        ps["client"]["network"]["networks"][0]["address"], "10.88.1.50",
        "{ps:?}"
    );
    let front = network(&a, "front");
    assert_eq!(front["subnet"], "10.88.1.0/24");
    assert_eq!(front["interface"], "br-front");
    assert_eq!(front["labels"]["team"], "web");
    assert_eq!(
        front["containers"].as_array().map(Vec::len),
        Some(2),
        "{front}"
    );

    // By name and by alias through aardvark-dns (httpd may still be starting).
    a.wait(T, "client reaches web by name", || {
        get(&a, "client", "web", "/").as_deref() == Some("web")
    })
    .unwrap_or_else(|e| {
        let (_, resolv) = exec(
            &a,
            "client",
            "cat /etc/resolv.conf; nslookup web; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.88.1.2 80",
        );
        panic!("{e}\n{resolv}")
    });
    assert_eq!(get(&a, "client", "www", "/").as_deref(), Some("web"));
    // IPv6 on the same network: an address from its subnet, reachable from the other container.
    let web6 = ps["web"]["network"]["networks"][0]["address6"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(web6.starts_with("fd00:88:1::"), "{ps:?}");
    let (ok, out) = exec(&a, "client", &format!("ping -c 1 -W 3 {web6}"));
    assert!(ok, "{out}");
    let (_, resolv) = exec(&a, "client", "cat /etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 10.88.1.1") && resolv.contains("search dns.podman"),
        "{resolv}"
    );

    // Another network: neither the name nor the address reaches web.
    let web_addr = ps["web"]["network"]["networks"][0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(&a, "stranger", &web_addr, "/"),
        None,
        "another network reached web"
    );
    let (_, out) = exec(&a, "stranger", "nslookup web");
    assert!(!out.contains(&web_addr), "{out}");
    // The outside: reachable from a bridge network, not from an internal one.
    let outside = |from: &str| {
        let get = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {TARGET} 8099");
        exec(&a, from, &get).1
    };
    let out = outside("stranger");
    assert!(out.trim_end().ends_with("outside"), "{out}");
    let out = outside("shut");
    assert!(
        !out.contains("outside"),
        "an internal network reached the outside: {out}"
    );

    // Edited while in use: reported, nothing restarted. Removed while in use: reported, kept.
    let pid = |n: &str| a.show(n, "MainPID");
    let (web_pid, stranger_pid) = (pid("web"), pid("stranger"));
    write_network(&a, "front", "subnet: 10.88.1.0/24\ninternal: true\n");
    std::fs::remove_file(a.specs.parent().unwrap().join("networks/other.yaml")).unwrap();
    let front = network(&a, "front");
    assert!(
        front["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p == "network front changed since client, web joined; restart them to apply"),
        "{front}"
    );
    let other = network(&a, "other");
    assert!(
        other["problems"][0]
            .as_str()
            .unwrap_or("")
            .contains("no longer declared but stranger still use it"),
        "{other}"
    );
    let (_, status) = berth(&a, &["status", "web"]);
    assert!(status.contains("network front changed since"), "{status}");
    // A full pass later, they still run, unrestarted.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((pid("web"), pid("stranger")), (web_pid, stranger_pid));
    assert_eq!(get(&a, "client", "www", "/").as_deref(), Some("web"));

    for n in ["web", "client", "stranger", "shut", "bad"] {
        a.rm(n);
    }
    a.wait(T, "all gone", || {
        a.ps().map(|p| p.is_empty()).unwrap_or(false)
    })
    .unwrap();
    let (_, links) = inside(&a, &["ip", "-o", "link", "show"]);
    assert!(
        !links.contains("veth") && !links.contains("br-front"),
        "{links}"
    );
    let (_, leases) = inside(
        &a,
        &["sh", "-c", "ls -A /run/berth/network/leases/*/ 2>/dev/null"],
    );
    assert!(
        leases.lines().all(|l| l.is_empty() || l.ends_with(':')),
        "{leases}"
    );
}

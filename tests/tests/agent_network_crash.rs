//! Crashes at the worst moments of bridge networking, under a real systemd in the network
//! namespace the test systemd runs in (no traffic leaves it): berthd SIGKILLed while it starts
//! several containers with published ports, a shim SIGKILLed inside its netavark set-up (with
//! berthd up and with berthd down) and its container removed so no next shim cleans up. After
//! convergence the veths, netavark's rules, leases, namespaces, records and locks are those of
//! before, and no address was given to two containers.

use berth_tests::agent::{Agent, IMAGE};
use berth_tests::inventory::NetworkInventory as Inventory;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// The netavark berthd.yaml names: the real one, except that a `setup` of a container with a
/// file `/srv/tb/hold/<name>` waits while that file exists, before running netavark (`before`)
/// or after it (`after`), and says so in `<name>.in-setup`.
const WRAPPER: &str = r#"#!/bin/sh
name=$(basename "$4")
hold=/srv/tb/hold/$name
if [ "$3" = setup ] && [ -e "$hold" ]; then
  if [ "$(cat "$hold")" = after ]; then
    /usr/lib/podman/netavark "$@" > "$hold.out"; rc=$?
    touch "$hold.in-setup"
    while [ -e "$hold" ]; do sleep 0.1; done
    cat "$hold.out"; exit $rc
  fi
  touch "$hold.in-setup"
  while [ -e "$hold" ]; do sleep 0.1; done
fi
exec /usr/lib/podman/netavark "$@"
"#;

const HTTPD: &str = "stop_grace_period: 1s\ncommand: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && \
    exec httpd -f -p 80 -h /www']";

fn inside(a: &Agent, argv: &[&str]) -> String {
    let out = a.sd.exec_inside(argv).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inventory(a: &Agent) -> Inventory {
    berth_tests::inventory::network(a)
}

/// The lease files by address, with the container each names.
fn leases(a: &Agent) -> BTreeMap<String, String> {
    let out = inside(
        a,
        &[
            "sh",
            "-c",
            "cd /run/berth/network/leases/berth 2>/dev/null && for f in *; do \
             [ -f \"$f\" ] && echo \"$f $(cat \"$f\")\"; done",
        ],
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, n)| (a.to_owned(), n.to_owned()))
        .collect()
}

struct Setup {
    a: Agent,
    hold: PathBuf,
}

const CONFIG: &str = "/srv/tb/berthd.yaml";

/// A test systemd with berthd on the wrapped netavark, and the inventory of a host where one
/// container has come and gone cleanly (netavark's empty base chains stay: they are shared).
fn boot(name: &str) -> (Setup, Inventory) {
    use std::os::unix::fs::PermissionsExt;
    let a = Agent::start(name).unwrap();
    let share = a.sd.share_dir();
    let wrapper = share.join("netavark-wrap.sh");
    std::fs::write(&wrapper, WRAPPER).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        share.join("berthd.yaml"),
        "network: {netavark: /srv/tb/netavark-wrap.sh}\n",
    )
    .unwrap();
    let hold = share.join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    a.start_berthd_with(true, Some(CONFIG)).unwrap();
    let empty = inventory(&a);
    a.write(
        "warm",
        &format!("image_file: {IMAGE}\nports: [\"18000:80\"]\n{HTTPD}\n"),
    );
    a.wait(T, "warm running", || a.phase("warm") == "running")
        .unwrap();
    let running = inventory(&a);
    // The inventory sees a container's network (or its comparisons could not fail).
    assert!(
        running.links.len() >= 2
            && running.rules.len() > empty.rules.len()
            && running.leases.len() == 1
            && running.netns == ["warm"]
            && running.records == ["warm.json"]
            && running.locks == ["warm"],
        "{running:?}"
    );
    a.rm("warm");
    a.wait(T, "warm gone", || !a.ps().unwrap().contains_key("warm"))
        .unwrap();
    a.wait(T, "warm's network gone", || {
        inventory(&a).links.is_empty() && inventory(&a).leases.is_empty()
    })
    .unwrap();
    let before = inventory(&a);
    (Setup { a, hold }, before)
}

impl Setup {
    /// Makes `name`'s next netavark setup wait (`before` or `after` running netavark).
    fn hold(&self, name: &str, mode: &str) {
        std::fs::write(self.hold.join(name), mode).unwrap();
    }
    fn in_setup(&self, name: &str) -> bool {
        self.hold.join(format!("{name}.in-setup")).exists()
    }
    /// SIGKILLs `name`'s shim (its unit's main process) and waits for systemd to end the unit.
    fn kill_shim(&self, name: &str) {
        let a = &self.a;
        let pid = a.show(name, "MainPID");
        assert!(pid != "0" && !pid.is_empty(), "{name} has no shim");
        let out = a.sd.exec_inside(&["kill", "-9", &pid]).unwrap();
        assert!(out.status.success(), "{out:?}");
        a.wait(T, "the unit to end", || {
            let s = a.show(name, "ActiveState");
            s == "failed" || s == "inactive" || s.is_empty()
        })
        .unwrap();
    }
    /// Waits until the host's network state is `before` again.
    fn converge(&self, before: &Inventory) {
        let a = &self.a;
        let t0 = std::time::Instant::now();
        a.wait(T, "the network state of before", || inventory(a) == *before)
            .unwrap_or_else(|e| panic!("{e}\nbefore: {before:?}\nnow:    {:?}", inventory(a)));
        eprintln!("converged in {:?}", t0.elapsed());
    }
}

/// Every running container's address is its own: one lease each, naming it, and `berth ps`
/// shows that address.
fn addresses_unique(a: &Agent, names: &[&str]) {
    let ps = a.ps().unwrap();
    let leases = leases(a);
    let mut seen = BTreeMap::new();
    for n in names {
        let addr = ps[*n]["network"]["networks"][0]["address"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert_eq!(
            leases.get(&addr).map(String::as_str),
            Some(*n),
            "{n}'s address {addr} in the leases {leases:?}"
        );
        assert!(
            seen.insert(addr.clone(), *n).is_none(),
            "{addr} twice: {seen:?}"
        );
    }
    assert_eq!(leases.len(), names.len(), "{leases:?}");
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_crash_berthd_killed_mid_reconcile() {
    let (s, before) = boot("net-crash-berthd");
    let a = &s.a;
    let names = ["c1", "c2", "c3", "c4"];
    // Each setup waits until released, so berthd is surely in the middle when it dies.
    for n in &names {
        s.hold(n, "after");
    }
    for (i, n) in names.iter().enumerate() {
        a.write(
            n,
            &format!(
                "image_file: {IMAGE}\nports: [\"{}:80\", \"80\"]\n{HTTPD}\n",
                18081 + i
            ),
        );
    }
    a.wait(T, "a shim inside its setup", || {
        names.iter().any(|n| s.in_setup(n))
    })
    .unwrap();
    a.kill_berthd().unwrap();
    for n in &names {
        let _ = std::fs::remove_file(s.hold.join(n));
    }
    a.start_berthd_with(true, Some(CONFIG)).unwrap();
    a.wait(T, "all running", || {
        names.iter().all(|n| a.phase(n) == "running")
    })
    .unwrap();
    addresses_unique(a, &names);
    for n in &names {
        a.rm(n);
    }
    a.wait(T, "all gone", || a.ps().is_ok_and(|m| m.is_empty()))
        .unwrap();
    s.converge(&before);
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_crash_shim_killed_mid_setup() {
    let (s, before) = boot("net-crash-shim");
    let a = &s.a;
    // A neighbour that keeps running throughout: the sweep must not touch it.
    a.write(
        "keep",
        &format!("image_file: {IMAGE}\nports: [\"18090:80\"]\n{HTTPD}\n"),
    );
    a.wait(T, "keep running", || a.phase("keep") == "running")
        .unwrap();
    // x dies before netavark ran, y after netavark set it up (veth and rules made).
    for (n, mode, port) in [("x", "before", 18091), ("y", "after", 18092)] {
        s.hold(n, mode);
        a.write(
            n,
            &format!(
                "image_file: {IMAGE}\nrestart: \"no\"\nports: [\"{port}:80\", \"80\"]\n{HTTPD}\n"
            ),
        );
        a.wait(T, "its shim inside its setup", || s.in_setup(n))
            .unwrap();
        s.kill_shim(n);
    }
    // The units failed (`restart: "no"`): berthd's sweep may act before the specs go.
    a.rm("x");
    a.rm("y");
    a.wait(T, "x and y gone", || {
        a.ps()
            .is_ok_and(|m| !m.contains_key("x") && !m.contains_key("y"))
    })
    .unwrap();
    a.wait(T, "only keep's network left", || {
        let i = inventory(a);
        i.netns == ["keep"] && i.records == ["keep.json"] && i.leases.len() == 1
    })
    .unwrap_or_else(|e| panic!("{e}\n{:?}", inventory(a)));
    addresses_unique(a, &["keep"]);
    let body = inside(a, &["curl", "-sS", "-m", "5", "http://127.0.0.1:18090/"]);
    assert_eq!(body.trim(), "keep", "keep still serves");
    a.rm("keep");
    a.wait(T, "keep gone", || a.ps().is_ok_and(|m| m.is_empty()))
        .unwrap();
    s.converge(&before);
    let out = a.berth(&["status"]).unwrap();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    // What the killed shims left was there, and the sweep says it removed it.
    let line = |n: &str| {
        status
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{n}: ")))
            .unwrap_or_else(|| panic!("no sweep of {n} in:\n{status}"))
            .to_owned()
    };
    let (x, y) = (line("x"), line("y"));
    assert!(x.contains("netns") && x.contains("lease"), "{x}");
    assert!(y.contains("veth and rules") && y.contains("netns"), "{y}");
    assert!(!status.contains("keep: "), "{status}");
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_crash_shim_killed_mid_setup_berthd_down() {
    let (s, before) = boot("net-crash-down");
    let a = &s.a;
    s.hold("z", "after");
    a.write(
        "z",
        &format!("image_file: {IMAGE}\nrestart: \"no\"\nports: [\"18093:80\", \"80\"]\n{HTTPD}\n"),
    );
    a.wait(T, "z's shim inside its setup", || s.in_setup("z"))
        .unwrap();
    a.kill_berthd().unwrap();
    s.kill_shim("z");
    a.rm("z");
    let left = inventory(a);
    assert!(
        left.netns == ["z"]
            && left
                .rules
                .keys()
                .any(|r| r.contains(&format!("id: {}", berth_agent::network::container_id("z")))),
        "{left:?}"
    );
    a.start_berthd_with(true, Some(CONFIG)).unwrap();
    s.converge(&before);
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers with netavark"]
fn agent_network_crash_shim_killed_then_spec_changed_to_none() {
    let (s, before) = boot("net-crash-none");
    let a = &s.a;
    s.hold("n", "after");
    a.write(
        "n",
        &format!("image_file: {IMAGE}\nrestart: \"no\"\nports: [\"18094:80\"]\n{HTTPD}\n"),
    );
    a.wait(T, "n's shim inside its setup", || s.in_setup("n"))
        .unwrap();
    s.kill_shim("n");
    // At once off the network: its next shim has none, so only berthd's sweep can clean up.
    a.write(
        "n",
        &format!("image_file: {IMAGE}\nnetwork_mode: none\nstop_grace_period: 1s\ncommand: [sleep, '3600']\n"),
    );
    a.wait(T, "n running without network", || {
        a.phase("n") == "running" && a.ps().unwrap()["n"]["network"].is_null()
    })
    .unwrap();
    s.converge(&before);
    assert_eq!(a.phase("n"), "running");
    a.rm("n");
    a.wait(T, "n gone", || a.ps().is_ok_and(|m| m.is_empty()))
        .unwrap();
    s.converge(&before);
}

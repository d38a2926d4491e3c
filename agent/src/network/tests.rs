//! Unit tests of the declarations and decisions about named networks.

use super::address_clashes;
use super::decide::{JoinError, choose_subnet, declare, overlaps};
use super::report::report;
use super::*;
use crate::spec::{NetworkJoin, Networks};

fn default_net() -> Network {
    Network {
        name: "berth".into(),
        source: "/etc/berth/berthd.yaml".into(),
        subnet: "10.87.0.0/16".into(),
        gateway: "10.87.0.1".parse().unwrap(),
        interface: "berth0".into(),
        internal: false,
        dns: false,
        labels: BTreeMap::new(),
        default: true,
        ipv6_subnet: None,
    }
}

fn found(name: &str, file: &str, yaml: &str) -> Found {
    Found {
        name: name.into(),
        source: file.into(),
        decl: parse_file(Path::new(file), yaml),
    }
}

fn s(a: &str, l: u8) -> (Ipv4Addr, u8) {
    (a.parse().unwrap(), l)
}

#[test]
fn file_schema_and_errors_at_their_place() {
    let d = parse_file(
        Path::new("/n/back.yaml"),
        "subnet: 10.88.1.0/24\ninternal: true\nlabels: {team: web}\n",
    )
    .unwrap();
    assert_eq!(d.subnet.as_deref(), Some("10.88.1.0/24"));
    assert!(d.internal && d.dns, "dns is on by default");
    assert_eq!(d.labels["team"], "web");
    let e = parse_file(
        Path::new("/n/back.yaml"),
        "subnet: 10.88.1.0/24\ninternl: true\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(1)), "{e}");
    assert!(
        e.to_string()
            .starts_with("/n/back.yaml:2:1: unknown key `internl`"),
        "{e}"
    );
    assert_eq!(e.hint.as_deref(), Some("did you mean `internal`?"));
    // An empty file is a network with every default.
    assert!(parse_file(Path::new("/n/x.yaml"), "").unwrap().dns);
}

#[test]
fn subnets_overlap_and_the_pool_is_stable() {
    assert!(overlaps(s("10.88.0.0", 16), s("10.88.3.0", 24)));
    assert!(!overlaps(s("10.88.0.0", 24), s("10.88.1.0", 24)));
    let pool = s("10.88.0.0", 16);
    let a = choose_subnet(pool, &[], "front").unwrap();
    assert_eq!(a.1, 24);
    assert_eq!(
        choose_subnet(pool, &[], "front"),
        Some(a),
        "same name, same subnet"
    );
    // Taken: the next free one.
    let b = choose_subnet(pool, &[a], "front").unwrap();
    assert!(b != a && !overlaps(a, b));
    // A pool of one /24 that is taken has nothing left.
    assert_eq!(
        choose_subnet(s("10.9.9.0", 24), &[s("10.9.9.0", 24)], "x"),
        None
    );
}

#[test]
fn one_bad_network_never_stops_the_others() {
    let d = declare(
        vec![
            found("front", "/n/front.yaml", "subnet: 10.88.1.0/24\n"),
            found("clash", "/n/clash.yaml", "subnet: 10.88.1.128/25\n"),
            found("under", "/n/under.yaml", "subnet: 10.87.5.0/24\n"),
            found("twice", "/etc/berth/berthd.yaml", "{}"),
            found("twice", "/n/twice.yaml", "{}"),
            found("host", "/n/host.yaml", "{}"),
            found(
                "gw",
                "/n/gw.yaml",
                "subnet: 10.88.7.0/24\ngateway: 10.88.8.1\n",
            ),
            found("v6", "/n/v6.yaml", "ipv6_subnet: fd00::1/64\n"),
            found("v6a", "/n/v6a.yaml", "ipv6_subnet: fd00:1::/64\n"),
            found("v6b", "/n/v6b.yaml", "ipv6_subnet: fd00:1::/48\n"),
            found(
                "dual",
                "/n/dual.yaml",
                "subnet: 10.88.9.0/24\nipv6_subnet: fd00:9::/64\n",
            ),
            found("pooled", "/n/pooled.yaml", "dns: false\ngateway: null\n"),
            found("bad", "/n/bad.yaml", "subnet: [1]\n"),
        ],
        "10.88.0.0/16",
        &default_net(),
    );
    assert_eq!(d.networks.keys().collect::<Vec<_>>(), ["dual", "pooled"]);
    assert_eq!(
        d.networks["dual"].bridge().ipv6_subnet.as_deref(),
        Some("fd00:9::/64")
    );
    let p = |n: &str| d.problems.get(n).map(|v| v.join("; ")).unwrap_or_default();
    assert!(
        p("front").contains("overlaps network clash's 10.88.1.128/25 (/n/clash.yaml)"),
        "{}",
        p("front")
    );
    assert!(
        p("clash").contains(
            "/n/clash.yaml: network clash: subnet 10.88.1.128/25 overlaps network front's"
        ),
        "{}",
        p("clash")
    );
    assert!(
        p("under")
            .contains("overlaps the default network berth (10.87.0.0/16, /etc/berth/berthd.yaml)"),
        "{}",
        p("under")
    );
    assert!(
        p("twice").contains("declared twice: /etc/berth/berthd.yaml and /n/twice.yaml"),
        "{}",
        p("twice")
    );
    assert!(p("host").contains("reserved"), "{}", p("host"));
    assert!(
        p("gw").contains("gateway 10.88.8.1 is not a host address"),
        "{}",
        p("gw")
    );
    assert!(p("v6").contains("host bits"), "{}", p("v6"));
    assert!(
        p("v6a").contains("overlaps network v6b's fd00:1::/48"),
        "{}",
        p("v6a")
    );
    assert!(p("v6b").contains("overlaps network v6a's"), "{}", p("v6b"));
    assert!(p("bad").starts_with("/n/bad.yaml:1:"), "{}", p("bad"));
    let pooled = &d.networks["pooled"];
    assert_eq!(pooled.interface, "br-pooled");
    assert!(!pooled.dns);
    // The pool avoids every explicit subnet, usable or not.
    let ps = berth_proto::network::parse_subnet(&pooled.subnet).unwrap();
    for t in ["10.88.1.0/24", "10.88.7.0/24"] {
        assert!(!overlaps(
            ps,
            berth_proto::network::parse_subnet(t).unwrap()
        ));
    }
    assert_eq!(pooled.gateway, Ipv4Addr::from(u32::from(ps.0) + 1));
    assert_eq!(d.sources["twice"].len(), 2);
}

#[test]
fn bridges_are_named_and_never_shared() {
    let d = declare(
        vec![
            found("a-very-long-network-name", "/n/l.yaml", "{}"),
            found("x", "/n/x.yaml", "interface: br-same\n"),
            found("y", "/n/y.yaml", "interface: br-same\n"),
            found("z", "/n/z.yaml", "interface: berth0\n"),
            found("w", "/n/w.yaml", "interface: this-is-too-long0\n"),
        ],
        "10.88.0.0/16",
        &default_net(),
    );
    let l = &d.networks["a-very-long-network-name"];
    assert!(
        l.interface.starts_with("br-") && l.interface.len() == 15,
        "{}",
        l.interface
    );
    for n in ["x", "y", "z", "w"] {
        assert!(d.problems.contains_key(n), "{n}: {:?}", d.networks.get(n));
    }
    assert!(d.problems["z"][0].contains("network berth's too"));
}

#[test]
fn inline_declarations_report_berthd_yaml_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_file = dir.path().join("berthd.yaml");
    let text = "spec_dir: /x\nnetworks:\n  good: {subnet: 10.88.3.0/24}\n  broken:\n    subnt: 10.88.4.0/24\n";
    std::fs::write(&cfg_file, text).unwrap();
    let cfg = crate::config::Config::load(&cfg_file).unwrap();
    let mut src = cfg.network_sources();
    src.dir = dir.path().join("networks");
    std::fs::create_dir(&src.dir).unwrap();
    std::fs::write(src.dir.join("good.yaml"), "{}").unwrap();
    std::fs::write(src.dir.join("files.yaml"), "internal: true\n").unwrap();
    let d = src.load();
    assert_eq!(d.networks.keys().collect::<Vec<_>>(), ["files"]);
    let broken = d.problems["broken"].join("");
    assert!(
        broken.contains("berthd.yaml:4:3: network broken: unknown key `subnt`"),
        "{broken}"
    );
    assert!(broken.contains("did you mean `subnet`?"), "{broken}");
    assert!(d.problems["good"][0].contains("declared twice"));
    // berthd.yaml's declarations are read afresh, like the files.
    std::fs::write(&cfg_file, "spec_dir: /x\nnetworks:\n  later: {}\n").unwrap();
    let d = src.load();
    assert_eq!(
        d.networks.keys().collect::<Vec<_>>(),
        ["files", "good", "later"]
    );
}

fn join(n: &[(&str, Option<&str>)]) -> Networks {
    Networks(
        n.iter()
            .map(|(k, a)| {
                (
                    k.to_string(),
                    NetworkJoin {
                        aliases: vec!["db".into()],
                        ipv4_address: a.map(|a| a.parse().unwrap()),
                    },
                )
            })
            .collect(),
    )
}

#[test]
fn containers_join_declared_networks_only() {
    let d = declare(
        vec![
            found("back", "/n/back.yaml", "subnet: 10.88.1.0/24\n"),
            found(
                "front",
                "/n/front.yaml",
                "subnet: 10.88.2.0/24\ninternal: true\n",
            ),
            found("broken", "/n/broken.yaml", "subnet: 10.87.0.0/24\n"),
        ],
        "10.88.0.0/16",
        &default_net(),
    );
    let a = attachments(&Networks::default(), &d).unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].network.name, "berth");
    assert!(!a[0].network.dns && !a[0].network.isolate);
    let a = attachments(&join(&[("front", None), ("back", Some("10.88.1.9"))]), &d).unwrap();
    assert_eq!(a[0].network.name, "back");
    assert_eq!(a[0].ipv4_address, Some("10.88.1.9".parse().unwrap()));
    assert_eq!(a[0].aliases, ["db"]);
    assert_eq!(a[0].network.id, network_id("back"));
    assert_eq!(a[0].network.id.len(), 64);
    assert!(a[1].network.internal && a[1].network.dns && a[1].network.isolate);
    let e = |n: &[(&str, Option<&str>)]| attachments(&join(n), &d).unwrap_err();
    assert_eq!(
        e(&[("nope", None)]),
        JoinError {
            network: "nope".into(),
            message: "network nope is not declared".into()
        }
    );
    assert!(
        e(&[("broken", None)])
            .message
            .contains("not usable: /n/broken.yaml")
    );
    assert!(
        e(&[("back", Some("10.88.2.9"))])
            .message
            .contains("not a host address")
    );
    assert!(
        e(&[("back", Some("10.88.1.255"))])
            .message
            .contains("not a host address")
    );
    assert!(
        e(&[("back", Some("10.88.1.1"))])
            .message
            .contains("gateway")
    );
    assert_ne!(container_id("a"), container_id("b"));
    assert_eq!(container_id("a"), container_id("a"));
}

#[test]
fn reports_edits_and_removals_while_in_use() {
    let decls = |subnet: &str| {
        declare(
            vec![found(
                "back",
                "/n/back.yaml",
                &format!("subnet: {subnet}\n"),
            )],
            "10.88.0.0/16",
            &default_net(),
        )
    };
    let before = decls("10.88.1.0/24");
    let joined = |name: &str, net: &super::Network| {
        (
            name.to_owned(),
            berth_proto::NetworkStatus {
                networks: vec![berth_proto::AttachmentStatus {
                    network: net.name.clone(),
                    interface: "eth0".into(),
                    address: "10.88.1.2".parse().unwrap(),
                    gateway: net.gateway,
                    prefix_len: 24,
                    address6: None,
                    aliases: vec![],
                    definition: net.bridge(),
                }],
                ports: vec![],
            },
        )
    };
    let running = vec![
        joined("a", &before.networks["back"]),
        joined("b", &before.networks["back"]),
    ];
    let r = report(&before, &running);
    let back = r.iter().find(|r| r.name == "back").unwrap();
    assert_eq!(back.containers.len(), 2);
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    assert!(r.iter().any(|r| r.name == "berth" && r.default));
    let edited = report(&decls("10.88.9.0/24"), &running);
    let back = edited.iter().find(|r| r.name == "back").unwrap();
    assert_eq!(
        back.problems,
        ["network back changed since a, b joined; restart them to apply"]
    );
    let gone = report(&declare(vec![], "10.88.0.0/16", &default_net()), &running);
    let back = gone.iter().find(|r| r.name == "back").unwrap();
    assert!(back.sources.is_empty());
    assert_eq!(back.subnet.as_deref(), Some("10.88.1.0/24"));
    assert!(back.problems[0].contains("no longer declared but a, b still use it"));
}

#[test]
fn a_static_address_is_asked_for_once_per_network() {
    let a = join(&[("back", Some("10.88.1.9"))]);
    let b = join(&[("back", Some("10.88.1.9")), ("front", Some("10.88.2.9"))]);
    let c = join(&[("front", Some("10.88.1.9"))]);
    let clashes = address_clashes([("a", &a), ("b", &b), ("c", &c)]);
    assert_eq!(
        clashes,
        [(
            "b".to_owned(),
            "ipv4_address 10.88.1.9 on network back is container a's too".to_owned()
        )]
    );
}

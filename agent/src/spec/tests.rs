//! Unit tests of spec parsing: locations and hints of errors, the cross-key rules, what
//! `berth check` judges, directory loading.

use super::*;

fn p(text: &str) -> Result<Spec, SpecError> {
    parse(Path::new("/etc/berth/containers/web.yaml"), text)
}

#[test]
fn full_spec_parses() {
    let s = p(r#"
image: docker.io/library/nginx:1.27
pull_policy: always
command: ["nginx", "-g", "daemon off;"]
entrypoint: /docker-entrypoint.sh
environment: {TZ: UTC, PORT: 8080, DEBUG: true}
env_file: /run/secrets/web.env
user: "101:101"
working_dir: /srv
hostname: web
volumes: ["/srv/www:/usr/share/nginx/html:ro", "cache:/var/cache/nginx"]
tmpfs: [/tmp, "/run:size=64m"]
read_only: true
network_mode: bridge
mem_limit: 256M
cpus: 0.5
pids_limit: 200
ulimits: {nofile: {soft: 1024, hard: 4096}, core: 0}
cap_add: [NET_BIND_SERVICE]
cap_drop: [cap_net_raw]
security_opt: [no-new-privileges, "seccomp=unconfined"]
devices: ["/dev/fuse"]
sysctls: ["net.ipv4.ip_forward=1"]
labels: {a: b}
stop_signal: SIGQUIT
stop_grace_period: 1m30s
restart: on-failure:3
healthcheck: {test: ["CMD", "curl", "-f", "http://localhost/"], interval: 10s, retries: 3}
depends_on: {db: {condition: service_healthy}}
readiness: healthy
"#)
    .unwrap();
    assert_eq!(s.environment.0["PORT"], "8080");
    assert_eq!(s.environment.0["DEBUG"], "true");
    assert_eq!(s.entrypoint.unwrap().0, vec!["/docker-entrypoint.sh"]);
    assert_eq!(s.env_file.0, vec!["/run/secrets/web.env"]);
    assert_eq!(s.mem_limit.unwrap().0, 256 << 20);
    assert_eq!(
        s.ulimits["nofile"],
        Ulimit {
            soft: 1024,
            hard: 4096
        }
    );
    assert_eq!(s.cap_drop[0].0, "CAP_NET_RAW");
    assert_eq!(s.restart, Restart::OnFailure(Some(3)));
    assert_eq!(s.stop_grace_period.unwrap().0.as_secs(), 90);
    assert_eq!(s.depends_on.0["db"].condition, Condition::ServiceHealthy);
    assert_eq!(s.tmpfs.0[1].options, vec!["size=64m"]);
    assert_eq!(s.readiness, Some(Readiness::Healthy));
}

#[test]
fn ports_need_the_bridge() {
    let s = p("image: busybox\nports: [\"8080:80\", \"127.0.0.1:5353:53/udp\", \"9000-9002:9000-9002\", \"80\"]\n").unwrap();
    assert_eq!(s.ports.len(), 4);
    assert_eq!(s.ports[2].range, 3);
    assert!(p("image: busybox\nnetwork_mode: bridge\nports: [\"80\"]\n").is_ok());
    for mode in ["host", "none"] {
        let e = p(&format!(
            "image: busybox\nnetwork_mode: {mode}\nports: [\"8080:80\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("needs `network_mode: bridge`"), "{e}");
    }
    let e = p("image: busybox\nports: [\"[::1]:8080:80\"]\n").unwrap_err();
    assert!(e.message.contains("IPv6"), "{e}");
    assert!(p("image: busybox\nnetwork_mode: host\nports: []\n").is_ok());
}

#[test]
fn networks_need_the_bridge_and_good_names() {
    let s = p("image: busybox\nnetworks:\n  back: {aliases: [db]}\n  front:\n").unwrap();
    assert_eq!(s.networks.0.len(), 2);
    let e = p("image: busybox\nnetwork_mode: host\nnetworks: [back]\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("needs `network_mode: bridge`"), "{e}");
    let e = p("image: busybox\nnetworks:\n  - back\n  - -bad\n").unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("not a valid network name"), "{e}");
    let e = p("image: busybox\nnetworks:\n  back:\n    aliases: [\"no way\"]\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("invalid alias"), "{e}");
    let e = p("image: busybox\nnetworks: {back: {alias: [x]}}\n").unwrap_err();
    assert!(e.message.contains("unknown key `alias`"), "{e}");
}

#[test]
fn check_judges_networks_against_the_declarations_at_their_place() {
    let file = Path::new("/etc/berth/containers/web.yaml");
    let text = "image: busybox\nnetworks:\n  front:\n  back: {ipv4_address: 10.88.1.1}\n";
    let spec = p(text).unwrap();
    let sources = crate::config::Config::default().network_sources();
    let found = |n: &str, y: &str| crate::network::Found {
        name: n.into(),
        source: format!("/n/{n}.yaml").into(),
        decl: crate::network::parse_file(Path::new("/n/x.yaml"), y),
    };
    let declared = sources.declare(vec![found("back", "subnet: 10.88.1.0/24\n")]);
    let e = crate::network::check_spec(file, text, &spec, &declared).unwrap_err();
    assert_eq!((e.line, e.column), (Some(4), Some(3)), "{e}");
    assert_eq!(
        e.message,
        "ipv4_address 10.88.1.1 is network back's gateway"
    );
    let declared = sources.declare(vec![found(
        "back",
        "subnet: 10.88.1.0/24\ngateway: 10.88.1.254\n",
    )]);
    let e = crate::network::check_spec(file, text, &spec, &declared).unwrap_err();
    assert_eq!((e.line, e.column), (Some(3), Some(3)), "{e}");
    assert_eq!(e.message, "network front is not declared");
    let declared = sources.declare(vec![
        found("back", "subnet: 10.88.1.0/24\ngateway: 10.88.1.254\n"),
        found("front", "{}"),
    ]);
    crate::network::check_spec(file, text, &spec, &declared).unwrap();
}

#[test]
fn image_references_are_judged_by_the_pull_grammar() {
    for good in [
        "busybox",
        "docker.io/library/busybox:1.36",
        "localhost:5000/a/b:v1",
        "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(p(&format!("image: {good}\n")).is_ok(), "{good}");
    }
    // Each was accepted by the spec parser's own check and refused by the pull.
    for bad in [
        "Busybox:1",
        "busybox:",
        "ghcr.io/o/r@sha256:abc",
        "ghcr.io/o/r@sha512:0123",
        "a//b",
        "busybox:bad/tag",
    ] {
        let e = p(&format!("# c\nimage: \"{bad}\"\n")).unwrap_err();
        assert_eq!(e.line, Some(2), "{bad}: {e}");
        assert!(e.message.contains("invalid image reference"), "{bad}: {e}");
    }
}

#[test]
fn content_a_pass_would_refuse_is_refused_here() {
    let e = p("image: a\nuser: \"a:b:c\"\n").unwrap_err();
    assert_eq!(
        (e.line, e.message.contains("invalid user")),
        (Some(2), true),
        "{e}"
    );
    let e = p("image: a\ntmpfs: [\"/t:size=lots\"]\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(p("image: a\ntmpfs: [\"/t:size=64m,mode=1777,uid=1\"]\n").is_ok());
    assert!(p("image: a\ntmpfs: [\"/t:mode=999\"]\n").is_err());
}

#[test]
fn check_judges_the_files_a_spec_names() {
    let d = tempfile::tempdir().unwrap();
    let spec = d.path().join("web.yaml");
    let env = d.path().join("web.env");
    let profile = d.path().join("p.json");
    let write = |text: String| std::fs::write(&spec, text).unwrap();
    write(format!(
        "image: a\nenv_file: {}\nsecurity_opt: [\"seccomp={}\"]\n",
        env.display(),
        profile.display()
    ));
    std::fs::write(&env, "A=1\n").unwrap();
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
    assert!(check_file(&spec).is_ok());
    std::fs::write(&env, "A=1\nJUSTKEY\n").unwrap();
    let e = check_file(&spec).unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains(":2: `JUSTKEY` has no value"), "{e}");
    std::fs::write(&env, "A=1\n").unwrap();
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_SOMETIMES"}"#).unwrap();
    let e = check_file(&spec).unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("seccomp profile"), "{e}");
    std::fs::remove_file(&profile).unwrap();
    assert_eq!(check_file(&spec).unwrap_err().line, Some(3));
    write("image: a\ndevices: [/dev/berth-no-such-device]\n".into());
    let e = check_file(&spec).unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    // `load` (what a pass reads) does not read them: a pass reports them itself.
    assert!(load(&spec).spec.is_ok());
}

#[test]
fn unknown_key_has_location_and_hint() {
    let e = p("image: busybox\nmem_limt: 1G\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert_eq!(e.column, Some(1), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `mem_limit`?"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/berth/containers/web.yaml:2:1: unknown key `mem_limt`"),
        "{e}"
    );
}

#[test]
fn nested_unknown_key_hint() {
    let e = p("image: busybox\nhealthcheck:\n  test: [\"CMD\", \"true\"]\n  intervall: 5s\n")
        .unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `interval`?"), "{e}");
}

#[test]
fn alias_hint() {
    let e = p("image: busybox\nprivileged: true\n").unwrap_err();
    assert!(e.hint.unwrap().contains("cap_add"));
}

#[test]
fn bad_values_have_locations() {
    let e = p("image: busybox\nmem_limit: 12Q\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("size unit"), "{e}");
    let e = p("image: busybox\nports:\n  - \"80:80\"\n  - \"x:80\"\n").unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    let e = p("image: busybox\nread_only: maybe\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = p("image: busybox\nrestart: sometimes\n").unwrap_err();
    assert!(e.message.contains("invalid restart policy"), "{e}");
    let e = p("image: busybox\npull_policy: misssing\n").unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean `missing`?"), "{e}");
    let e = p("image: busybox\ncap_add: [NET_BIND_SERVIC]\n").unwrap_err();
    assert!(e.message.contains("did you mean `NET_BIND_SERVICE`"), "{e}");
}

#[test]
fn cross_field_rules() {
    assert!(
        p("command: [x]\n")
            .unwrap_err()
            .message
            .contains("no image")
    );
    let e = p("image: a\nimage_file: /b.tar\n").unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(p("image: a\nsysctls: {kernel.hostname: x}\n").is_err());
    assert!(p("image: a\nnetwork_mode: host\nsysctls: {net.ipv4.ip_forward: 1}\n").is_err());
    assert!(p("image: a\ndepends_on: [web]\n").is_err());
    assert!(p("image: a\nworking_dir: rel\n").is_err());
    assert!(p("image: a\nenvironment: [FOO]\n").is_err());
    assert!(p("image: a\nenvironment: {FOO: }\n").is_err());
    assert!(
        p("image: a\nulimits: {nofiles: 10}\n")
            .unwrap_err()
            .hint
            .unwrap()
            .contains("nofile")
    );
    assert!(p("").is_err());
}

#[test]
fn bad_file_names() {
    assert!(parse(Path::new("/x/-bad.yaml"), "image: a\n").is_err());
    assert_eq!(name_of(Path::new("/x/.web.yaml.swp")), None);
    assert_eq!(name_of(Path::new("/x/web.yaml~")), None);
    assert_eq!(name_of(Path::new("/x/web.yml")), Some("web"));
}

#[test]
fn dir_loading() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.yaml"), "image: busybox\n").unwrap();
    std::fs::write(d.path().join("b.yaml"), "image: [\n").unwrap();
    std::fs::write(d.path().join("c.yaml"), "image: busybox\n").unwrap();
    std::fs::write(d.path().join("c.yml"), "image: busybox\n").unwrap();
    std::fs::write(d.path().join(".hidden.yaml"), "x").unwrap();
    std::fs::write(d.path().join("README"), "x").unwrap();
    let m = load_dir(d.path()).unwrap();
    assert_eq!(m.keys().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert!(m["a"].spec.is_ok());
    assert!(m["b"].spec.is_err());
    assert!(
        m["c"]
            .spec
            .as_ref()
            .unwrap_err()
            .message
            .contains("defined twice")
    );
    assert!(load_dir(&d.path().join("nope")).unwrap().is_empty());
}

#[test]
fn network_mode_container() {
    let s = p("image: busybox\nnetwork_mode: container:db\n").unwrap();
    assert_eq!(s.network_mode, NetworkMode::Container("db".into()));
    assert_eq!(
        serde_json::to_value(&s.network_mode).unwrap(),
        "container:db"
    );
    // Ordered after its target (a started dependency), unless depends_on says more.
    let d = s.dependencies();
    assert_eq!(d["db"].condition, Condition::ServiceStarted);
    assert!(d["db"].required);
    let s = p("image: busybox\nnetwork_mode: container:db\ndepends_on: {db: {condition: service_healthy}}\n").unwrap();
    assert_eq!(s.dependencies()["db"].condition, Condition::ServiceHealthy);
    for (text, line, what) in [
        (
            "image: busybox\nnetwork_mode: container:Bad_Name!\n",
            2,
            "invalid container name",
        ),
        (
            "image: busybox\nnetwork_mode: overlay\n",
            2,
            "container:<name>",
        ),
        (
            "image: busybox\nnetwork_mode: container:db\nports: [\"80\"]\n",
            3,
            "needs `network_mode: bridge`",
        ),
        (
            "image: busybox\nnetwork_mode: container:db\nhostname: x\n",
            3,
            "the name is db's",
        ),
        (
            "image: busybox\nnetwork_mode: container:db\nsysctls: {net.core.somaxconn: 1}\n",
            3,
            "not namespaced",
        ),
    ] {
        let e = p(text).unwrap_err();
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains(what), "{e}");
    }
}

#[test]
fn network_mode_container_names_another_bridge_container_beside_it() {
    let d = tempfile::tempdir().unwrap();
    let w = |n: &str, t: &str| std::fs::write(d.path().join(format!("{n}.yaml")), t).unwrap();
    w("b", "image: busybox\nnetwork_mode: container:b\n");
    let e = check_file(&d.path().join("b.yaml")).unwrap_err();
    assert!(e.message.contains("its own network namespace"), "{e}");
    w("b", "image: busybox\n\nnetwork_mode: container:a\n");
    let e = check_file(&d.path().join("b.yaml")).unwrap_err();
    assert_eq!((e.line, e.column), (Some(3), Some(1)), "{e}");
    assert!(e.message.contains("no container `a`"), "{e}");
    for mode in ["host", "none"] {
        w("a", &format!("image: busybox\nnetwork_mode: {mode}\n"));
        let e = check_file(&d.path().join("b.yaml")).unwrap_err();
        assert!(e.message.contains(&format!("network_mode: {mode}")), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }
    w("a", "image: busybox\n");
    check_file(&d.path().join("b.yaml")).unwrap();
}

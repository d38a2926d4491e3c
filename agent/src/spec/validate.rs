//! The checks of a parsed spec that span keys or need more than the value itself, so that
//! `berth check` rejects, with the file's line, everything a reconcile pass would reject for the
//! file's own content. Runs wherever specs are parsed (berthd, `berth`).

use super::{
    HealthTest, NetworkMode, PullPolicy, Readiness, Spec, SpecError, ULIMITS, closest, name_of,
};
use std::path::Path;

/// Namespaced sysctls a container may set (Docker's rule); `net.*` only with its own network.
fn sysctl_allowed(k: &str, own_net: bool) -> bool {
    matches!(
        k,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || k.starts_with("fs.mqueue.")
        || (own_net && k.starts_with("net."))
}

/// Checks that span keys or need more than the value itself.
pub(super) fn validate(file: &Path, text: &str, s: &Spec) -> Result<(), SpecError> {
    let err = |key: Option<&str>, m: String| SpecError::at(file, text, key, m);
    match (&s.image, &s.image_file) {
        (None, None) => {
            return Err(err(None, "the spec names no image".into()).hint(
                "add `image: docker.io/library/busybox:1.36` or `image_file: /path/to/image.tar`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(err(
                Some("image_file"),
                "`image` and `image_file` are exclusive".into(),
            )
            .hint("keep one of them"));
        }
        (Some(i), None) => {
            // The grammar the pull uses, so that a reference accepted here is one a pass can pull.
            if let Err(e) = crate::image::ImageRef::parse(i) {
                return Err(err(Some("image"), e.to_string()).hint(
                    "write `[registry/]repository[:tag][@sha256:digest]` in lowercase, e.g. `docker.io/library/busybox:1.36`",
                ));
            }
        }
        (None, Some(p)) => {
            if !p.is_absolute() {
                return Err(err(
                    Some("image_file"),
                    format!("image_file `{}` must be an absolute path", p.display()),
                ));
            }
            if s.pull_policy == PullPolicy::Always {
                return Err(err(
                    Some("pull_policy"),
                    "`pull_policy: always` has no meaning for an image_file".into(),
                ));
            }
        }
    }
    if !s.ports.is_empty() && s.network_mode != NetworkMode::Bridge {
        return Err(err(
            Some("ports"),
            "`ports:` needs `network_mode: bridge`: published ports are forwarded to the container's address on berth's bridge".into(),
        )
        .hint(match s.network_mode {
            NetworkMode::Container(_) => "publish the ports on the container whose network this one joins",
            _ => "with `network_mode: host` the container listens on the host's ports directly; remove `ports:`",
        }));
    }
    if !s.networks.is_empty() && s.network_mode != NetworkMode::Bridge {
        return Err(err(
            Some("networks"),
            "`networks:` needs `network_mode: bridge`".into(),
        )
        .hint("remove `networks:`, or `network_mode:` to use the bridge networks"));
    }
    for (n, j) in &s.networks.0 {
        let at = |m: String| {
            let mut e = err(Some("networks"), m);
            e.line = super::nested_line(text, "networks", n).or(e.line);
            e
        };
        if !super::is_valid_name(n) {
            return Err(at(format!("`{n}` is not a valid network name")));
        }
        if let Some(a) = j.aliases.iter().find(|a| !valid_hostname(a)) {
            return Err(at(format!("network {n}: invalid alias `{a}`")));
        }
    }
    if let Some(p) = s
        .ports
        .iter()
        .find(|p| p.host_ip.is_some_and(|i| i.is_ipv6()))
    {
        return Err(err(
            Some("ports"),
            format!(
                "port mapping {}: IPv6 host addresses are not supported yet (the bridge is IPv4)",
                p.mapping()
            ),
        ));
    }
    if let Some(u) = &s.user
        && let Err(m) = check_user(u)
    {
        return Err(err(Some("user"), m).hint("write `user`, `uid`, `user:group` or `uid:gid`"));
    }
    for t in &s.tmpfs.0 {
        for o in &t.options {
            if let Err(m) = check_tmpfs_option(o) {
                return Err(err(Some("tmpfs"), format!("tmpfs `{}`: {m}", t.target)));
            }
        }
    }
    for f in &s.env_file.0 {
        if !f.starts_with('/') {
            return Err(err(
                Some("env_file"),
                format!("env_file `{f}` must be an absolute path"),
            ));
        }
    }
    if let Some(w) = &s.working_dir
        && !w.starts_with('/')
    {
        return Err(err(
            Some("working_dir"),
            format!("working_dir `{w}` must be an absolute path"),
        ));
    }
    if let Some(h) = &s.hostname
        && !valid_hostname(h)
    {
        return Err(err(Some("hostname"), format!("invalid hostname `{h}`")));
    }
    if let Some(c) = s.cpus
        && !(c > 0.0 && c <= 1024.0)
    {
        return Err(err(
            Some("cpus"),
            format!("cpus must be greater than 0, got {c}"),
        ));
    }
    if let Some(p) = s.pids_limit
        && p == 0
    {
        return Err(err(
            Some("pids_limit"),
            "pids_limit must be positive (or -1 for unlimited)".into(),
        ));
    }
    if let Some(p) = s.pids_limit
        && p < -1
    {
        return Err(err(
            Some("pids_limit"),
            "pids_limit must be positive (or -1 for unlimited)".into(),
        ));
    }
    for k in s.ulimits.keys() {
        if !ULIMITS.iter().any(|(n, _)| n == k) {
            let hint =
                closest(k, ULIMITS.iter().map(|(n, _)| *n)).map(|c| format!("did you mean `{c}`?"));
            let mut e = err(Some("ulimits"), format!("unknown ulimit `{k}`"));
            e.hint = hint;
            return Err(e);
        }
    }
    // A shared namespace is its owner's to tune.
    let own_net = matches!(s.network_mode, NetworkMode::Bridge | NetworkMode::None);
    for k in s.sysctls.0.keys() {
        if !sysctl_allowed(k, own_net) {
            return Err(err(Some("sysctls"), format!("sysctl `{k}` is not namespaced{}", if k.starts_with("net.") { " (with network_mode: host it would change the host)" } else { "" }))
                .hint("only kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* and (without host networking) net.* can be set per container"));
        }
    }
    let mut targets = std::collections::BTreeSet::new();
    for t in s
        .volumes
        .iter()
        .map(|v| &v.target)
        .chain(s.tmpfs.0.iter().map(|t| &t.target))
    {
        if !targets.insert(t) {
            return Err(err(Some("volumes"), format!("two mounts at `{t}`")));
        }
    }
    if s.network_mode == NetworkMode::Host && s.hostname.is_some() {
        return Err(err(
            Some("hostname"),
            "`hostname` cannot be set with `network_mode: host`".into(),
        ));
    }
    let name = name_of(file).unwrap_or_default();
    if let Some(t) = s.network_mode.container() {
        if t == name {
            return Err(err(
                Some("network_mode"),
                format!("`{name}` cannot join its own network namespace"),
            ));
        }
        if s.hostname.is_some() {
            return Err(err(
                Some("hostname"),
                format!(
                    "`hostname` cannot be set with `network_mode: container:{t}`: the name is {t}'s"
                ),
            ));
        }
    }
    if s.depends_on.0.contains_key(name) {
        return Err(err(
            Some("depends_on"),
            format!("`{name}` depends on itself"),
        ));
    }
    if s.readiness == Some(Readiness::Healthy)
        && let Some(h) = &s.healthcheck
        && (h.disable || h.test == Some(HealthTest::None))
    {
        return Err(err(
            Some("readiness"),
            "`readiness: healthy` with the healthcheck disabled".into(),
        ));
    }
    Ok(())
}

/// A host name (and a network alias): 1 to 63 letters, digits, `-` and `.`.
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `user:` as the bundle resolves it: a name or number, optionally `:group` (a name or number).
fn check_user(u: &str) -> Result<(), String> {
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$'))
    };
    let (user, group) = u.split_once(':').unwrap_or((u, "x"));
    if ok(user) && ok(group) {
        Ok(())
    } else {
        Err(format!("invalid user `{u}`"))
    }
}

/// The values of tmpfs options, which the kernel would otherwise reject when the container starts.
fn check_tmpfs_option(o: &str) -> Result<(), String> {
    let (k, v) = o.split_once('=').unwrap_or((o, ""));
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    let good = match k {
        "size" | "nr_inodes" => {
            let n = v
                .strip_suffix(['k', 'K', 'm', 'M', 'g', 'G', '%'])
                .unwrap_or(v);
            digits(n)
        }
        "mode" => digits(v) && v.bytes().all(|b| b < b'8') && v.len() <= 4,
        "uid" | "gid" => digits(v),
        _ => v.is_empty(),
    };
    if good {
        Ok(())
    } else {
        Err(format!("invalid option `{o}`"))
    }
}

/// The files a spec names, read and judged as a pass reads and judges them (env file syntax, the
/// seccomp profile, device nodes), each error at the line of the key that names the file.
pub(super) fn inputs(file: &Path, text: &str, s: &Spec) -> Result<(), SpecError> {
    use super::effective::{self, EffectiveError};
    let key = |e: &EffectiveError| match e {
        EffectiveError::InputRead { what: "device", .. } => "devices",
        EffectiveError::InputRead {
            what: "seccomp profile",
            ..
        }
        | EffectiveError::SeccompProfile { .. } => "security_opt",
        _ => "env_file",
    };
    let err = |e: EffectiveError| SpecError::at(file, text, Some(key(&e)), e.to_string());
    let inputs = effective::read_inputs(s).map_err(err)?;
    for (path, text) in &inputs.env_files {
        effective::parse_env_file(path, text).map_err(err)?;
    }
    if let Some((path, text)) = &inputs.seccomp_profile {
        effective::seccomp_profile(path, text).map_err(err)?;
    }
    Ok(())
}

/// `network_mode: container:<name>` names a spec beside this one that is on the bridge (only a
/// bridge container has a namespace berth keeps for others to join). `berth check` only: berthd
/// judges it with the target's spec as it finds it (and waits for a target not written yet).
pub(super) fn network_target(file: &Path, text: &str, s: &Spec) -> Result<(), SpecError> {
    let Some(t) = s.network_mode.container() else {
        return Ok(());
    };
    let err = |m: String| SpecError::at(file, text, Some("network_mode"), m);
    let dir = file.parent().unwrap_or(Path::new("."));
    let Some(target) = ["yaml", "yml"]
        .iter()
        .map(|e| dir.join(format!("{t}.{e}")))
        .find(|p| p.exists())
    else {
        return Err(err(format!(
            "network_mode: container:{t}: no container `{t}` in {}",
            dir.display()
        ))
        .hint("name a container defined beside this file"));
    };
    let ts = super::load(&target).spec.map_err(|e| {
        err(format!(
            "network_mode: container:{t}: its spec {} is invalid: {}",
            target.display(),
            e.message
        ))
    })?;
    if ts.network_mode != NetworkMode::Bridge {
        return Err(err(format!(
            "network_mode: container:{t}: {t} has `network_mode: {}`; only a container on the bridge has a namespace to join",
            ts.network_mode
        ))
        .hint(match ts.network_mode {
            NetworkMode::Host => "use `network_mode: host` here too",
            NetworkMode::None => "use `network_mode: none` here: a namespace with loopback only",
            _ => "join the container whose namespace that one joins",
        }));
    }
    Ok(())
}

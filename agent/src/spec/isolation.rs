//! Value types of what a container is given or kept from (capabilities, ports, volumes, tmpfs,
//! devices, security options, rlimits), each validated while it is deserialized so that a bad value
//! is reported at its own line and column. Parsed in berthd and `berth`.

use super::types::{is_valid_name, parse_scalar};
use oci_spec::runtime::PosixRlimitType;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Linux capabilities the kernel knows, in Docker's spelling without the `CAP_` prefix.
pub const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability name, normalised to `CAP_XXX`; `ALL` stands for every capability.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Capability(pub String);

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Capability::parse(&s))
    }
}

impl Capability {
    pub fn parse(s: &str) -> Result<Self, String> {
        let up = s.to_ascii_uppercase();
        let bare = up.strip_prefix("CAP_").unwrap_or(&up);
        if bare == "ALL" {
            return Ok(Capability("ALL".into()));
        }
        if CAPABILITIES.contains(&bare) {
            Ok(Capability(format!("CAP_{bare}")))
        } else {
            let hint = crate::spec::closest(bare, CAPABILITIES.iter().copied())
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            Err(format!("unknown capability `{s}`{hint}"))
        }
    }
}

/// `ports:` entry in Compose's short syntax: `[ip:][host[-end]:]container[-end][/tcp|udp]`; no
/// host port (`"80"`, `"127.0.0.1::80"`) asks for an ephemeral one. The one grammar of published
/// ports: berthd turns this into the shim's port mappings as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    pub host_ip: Option<std::net::IpAddr>,
    /// First host port; `None`: ephemeral.
    pub host_port: Option<u16>,
    /// First container port.
    pub container_port: u16,
    /// How many consecutive ports (1 for a single port).
    pub range: u16,
    pub protocol: berth_proto::Protocol,
}

impl Port {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid port mapping `{s}` (expected [ip:][host[-end]:]container[-end][/tcp|udp])"
            )
        };
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, berth_proto::Protocol::Tcp),
            Some((r, "udp")) => (r, berth_proto::Protocol::Udp),
            Some((_, "sctp")) => return Err(format!("port mapping `{s}`: sctp is not supported")),
            Some(_) => return Err(bad()),
            None => (s, berth_proto::Protocol::Tcp),
        };
        let parts: Vec<&str> = if rest.starts_with('[') {
            // [::1]:8080:80
            let end = rest.find(']').ok_or_else(bad)?;
            let mut v = vec![&rest[1..end]];
            v.extend(rest[end + 1..].trim_start_matches(':').split(':'));
            v
        } else {
            rest.split(':').collect()
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad);
        // `a` or `a-b` → (a, count).
        let span = |p: &str| -> Result<(u16, u16), String> {
            match p.split_once('-') {
                None => Ok((port(p)?, 1)),
                Some((a, b)) => {
                    let (a, b) = (port(a)?, port(b)?);
                    if b < a {
                        return Err(format!("port mapping `{s}`: range {a}-{b} is backwards"));
                    }
                    Ok((a, b - a + 1))
                }
            }
        };
        let (host_ip, host, (container_port, range)) = match parts.as_slice() {
            [c] => (None, None, span(c)?),
            [h, c] => (None, Some(span(h)?), span(c)?),
            [ip, h, c] => {
                let ip = ip.parse::<std::net::IpAddr>().map_err(|_| bad())?;
                let hp = if h.is_empty() { None } else { Some(span(h)?) };
                (Some(ip), hp, span(c)?)
            }
            _ => return Err(bad()),
        };
        if host.is_none() && range > 1 {
            return Err(format!(
                "port mapping `{s}`: a container port range needs a host port range of the same length"
            ));
        }
        if let Some((_, n)) = host
            && n != range
        {
            return Err(format!(
                "port mapping `{s}`: the host range has {n} ports, the container range {range}"
            ));
        }
        Ok(Port {
            host_ip,
            host_port: host.map(|(h, _)| h),
            container_port,
            range,
            protocol,
        })
    }

    /// The shim's port mapping: the same values.
    pub fn mapping(&self) -> berth_proto::PortMapping {
        berth_proto::PortMapping {
            host_ip: self.host_ip,
            host_port: self.host_port,
            container_port: self.container_port,
            range: self.range,
            protocol: self.protocol,
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Port::parse(&s))
    }
}

/// `volumes:` entry (short syntax): `/host:/ctr[:ro|rw]` (bind) or `name:/ctr[:ro|rw]` (named volume
/// under the store root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub source: VolumeSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    Bind(String),
    Named(String),
}

impl Volume {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, target, opts) = match parts.as_slice() {
            [t] => {
                return Err(format!(
                    "anonymous volume `{t}` is not supported; name it, e.g. `data:{t}`"
                ));
            }
            [s, t] => (*s, *t, ""),
            [s, t, o] => (*s, *t, *o),
            _ => {
                return Err(format!(
                    "invalid volume `{s}` (expected source:target[:ro|rw])"
                ));
            }
        };
        if !target.starts_with('/') {
            return Err(format!("volume target `{target}` must be an absolute path"));
        }
        let mut read_only = false;
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            match o {
                "ro" => read_only = true,
                "rw" => read_only = false,
                // SELinux relabel flags: nothing to do without SELinux, accepted for Compose files.
                "z" | "Z" => {}
                _ => {
                    return Err(format!(
                        "unknown volume option `{o}` in `{s}` (use ro or rw)"
                    ));
                }
            }
        }
        let source = if src.starts_with('/') {
            VolumeSource::Bind(src.to_owned())
        } else if src.starts_with('.') || src.starts_with('~') {
            return Err(format!(
                "relative bind source `{src}`: give an absolute path (specs have no project directory)"
            ));
        } else if is_valid_name(src) {
            VolumeSource::Named(src.to_owned())
        } else {
            return Err(format!("invalid volume name `{src}`"));
        };
        Ok(Volume {
            source,
            target: target.to_owned(),
            read_only,
        })
    }
}

impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Volume::parse(&s))
    }
}

/// `tmpfs:` entry: `/path[:size=64m,mode=1777]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tmpfs {
    pub target: String,
    pub options: Vec<String>,
}

impl Tmpfs {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (target, opts) = s.split_once(':').unwrap_or((s, ""));
        if !target.starts_with('/') {
            return Err(format!("tmpfs target `{target}` must be an absolute path"));
        }
        let mut options = Vec::new();
        for o in opts.split(',').filter(|o| !o.is_empty()) {
            let key = o.split('=').next().unwrap_or(o);
            match key {
                "size" | "mode" | "uid" | "gid" | "nr_inodes" | "ro" | "rw" | "noexec" | "exec"
                | "nosuid" | "nodev" => options.push(o.to_owned()),
                _ => return Err(format!("unknown tmpfs option `{o}` in `{s}`")),
            }
        }
        Ok(Tmpfs {
            target: target.to_owned(),
            options,
        })
    }
}

/// `devices:` entry: `/dev/host[:/dev/container[:rwm]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

impl Device {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] if c.starts_with('/') => (*h, *c, "rwm"),
            [h, p] => (*h, *h, *p),
            [h, c, p] => (*h, *c, *p),
            _ => return Err(format!("invalid device `{s}`")),
        };
        if !host.starts_with("/dev/") || !container.starts_with('/') {
            return Err(format!(
                "device `{s}`: host path must be under /dev/ and the container path absolute"
            ));
        }
        if perms.is_empty() || !perms.chars().all(|c| "rwm".contains(c)) {
            return Err(format!(
                "device `{s}`: permissions must be a subset of `rwm`"
            ));
        }
        Ok(Device {
            host: host.into(),
            container: container.into(),
            permissions: perms.into(),
        })
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Device::parse(&s))
    }
}

/// `security_opt:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityOpt {
    NoNewPrivileges(bool),
    /// `seccomp=unconfined` (None) or `seccomp=/path/profile.json` (a Docker-format profile).
    Seccomp(Option<String>),
}

impl<'de> Deserialize<'de> for SecurityOpt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| SecurityOpt::parse(&s))
    }
}

impl SecurityOpt {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (k, v) = s
            .split_once(['=', ':'])
            .map(|(k, v)| (k, Some(v)))
            .unwrap_or((s, None));
        match (k, v) {
            ("no-new-privileges", None | Some("true")) => Ok(SecurityOpt::NoNewPrivileges(true)),
            ("no-new-privileges", Some("false")) => Ok(SecurityOpt::NoNewPrivileges(false)),
            ("seccomp", Some("unconfined")) => Ok(SecurityOpt::Seccomp(None)),
            ("seccomp", Some(p)) if p.starts_with('/') => {
                Ok(SecurityOpt::Seccomp(Some(p.to_owned())))
            }
            _ => Err(format!(
                "unsupported security_opt `{s}` (supported: no-new-privileges[:true|false], seccomp=unconfined, seccomp=/abs/profile.json)"
            )),
        }
    }
}

/// `ulimits:` value: a number (soft = hard) or `{soft, hard}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: u64,
    pub hard: u64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or {soft: N, hard: N}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                Ok(Ulimit { soft: v, hard: v })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                u64::try_from(v)
                    .map(|v| Ulimit { soft: v, hard: v })
                    .map_err(|_| E::custom("ulimit must not be negative"))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct SoftHard {
                    soft: u64,
                    hard: u64,
                }
                let sh = SoftHard::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if sh.soft > sh.hard {
                    return Err(de::Error::custom("ulimit soft value exceeds hard value"));
                }
                Ok(Ulimit {
                    soft: sh.soft,
                    hard: sh.hard,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The rlimits `ulimits:` may name (Docker's names), mapped to OCI's `RLIMIT_*`.
pub const ULIMITS: &[(&str, PosixRlimitType)] = &[
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
    ("as", PosixRlimitType::RlimitAs),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        use berth_proto::Protocol;
        let p = Port::parse("8080:80/udp").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.range, p.protocol),
            (Some(8080), 80, 1, Protocol::Udp)
        );
        let p = Port::parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.mapping().to_string(), "127.0.0.1:5353->53/udp");
        let p = Port::parse("9000-9002:9000-9002").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.range),
            (Some(9000), 9000, 3)
        );
        assert_eq!(Port::parse("80").unwrap().host_port, None);
        assert_eq!(Port::parse("127.0.0.1::80").unwrap().host_port, None);
        assert_eq!(Port::parse("[::1]:8080:80").unwrap().host_port, Some(8080));
        assert!(Port::parse("99999:80").is_err());
        assert!(Port::parse("0:80").is_err());
        assert!(Port::parse("1:2:3:4").is_err());
        assert!(Port::parse("80/icmp").is_err());
        assert!(Port::parse("80/sctp").unwrap_err().contains("sctp"));
        assert!(
            Port::parse("9000-9001:9000-9002")
                .unwrap_err()
                .contains("host range")
        );
        assert!(
            Port::parse("9002-9000:80")
                .unwrap_err()
                .contains("backwards")
        );
        assert!(Port::parse("9000-9002").is_err());
        assert!(Port::parse("x:80").is_err());
    }

    #[test]
    fn volumes() {
        let v = Volume::parse("/srv:/data:ro").unwrap();
        assert_eq!(v.source, VolumeSource::Bind("/srv".into()));
        assert!(v.read_only);
        let v = Volume::parse("cache:/var/cache").unwrap();
        assert_eq!(v.source, VolumeSource::Named("cache".into()));
        assert!(Volume::parse("/data").is_err());
        assert!(Volume::parse("./x:/y").is_err());
        assert!(Volume::parse("x:rel").is_err());
        assert!(Volume::parse("/a:/b:bogus").is_err());
    }
}

//! Value types of the container spec (`/etc/berth/containers/<name>.yaml`), each validated while it is
//! deserialized so that a bad value is reported at its own line and column. Parsed in berthd and `berth`.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A scalar that YAML may give as a string, number or bool (`PORT: 8080`), turned into `T` by `parse`
/// inside the visitor, so that a parse error carries the value's own line and column.
pub(super) struct ScalarVisitor<F>(F);

impl<T, F: FnOnce(String) -> Result<T, String>> Visitor<'_> for ScalarVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v.to_owned()).map_err(E::custom)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.0)(v.to_string()).map_err(E::custom)
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Err(E::custom(
            "a value is required here (berth does not take values from its own environment)",
        ))
    }
}

pub(super) fn parse_scalar<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, D::Error> {
    d.deserialize_any(ScalarVisitor(parse))
}

fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_scalar(d, Ok)
}

/// A string given alone or a list of strings (`env_file: a.env` or `env_file: [a.env, b.env]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `command:` / `entrypoint:`: a list is taken as argv; a string is split like a shell would split
/// it (quotes, backslashes), without running a shell, as Compose does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Argv;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Argv, E> {
                split_words(v).map(Argv).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Argv, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element_seed(TextSeed)? {
                    out.push(s);
                }
                Ok(Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) struct TextSeed;
impl<'de> de::DeserializeSeed<'de> for TextSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        scalar_text(d)
    }
}

/// Splits a command line into words the way a POSIX shell does for quoting (no expansion).
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated single quote in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated double quote in `{s}`")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated double quote in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(format!("trailing backslash in `{s}`")),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `KEY: value` map or `["KEY=value"]` list (environment, labels, sysctls), kept sorted so the
/// effective spec and its hash do not depend on the order in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct KeyValues(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyValues;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of KEY: value or a list of \"KEY=value\" strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyValues, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    check_key::<A::Error>(&k)?;
                    let v = map.next_value_seed(TextSeed)?;
                    if out.insert(k.clone(), v).is_some() {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                }
                Ok(KeyValues(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyValues, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(item) = seq.next_element::<String>()? {
                    let Some((k, v)) = item.split_once('=') else {
                        return Err(de::Error::custom(format!(
                            "`{item}` has no value; write `{item}=value` (berth does not take values from its own environment)"
                        )));
                    };
                    check_key::<A::Error>(k)?;
                    if out.insert(k.to_owned(), v.to_owned()).is_some() {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                }
                Ok(KeyValues(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn check_key<E: de::Error>(k: &str) -> Result<(), E> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        return Err(E::custom(format!(
            "invalid key `{k}`: must be non-empty without `=`"
        )));
    }
    Ok(())
}

/// A duration in Compose's notation (`1m30s`, `500ms`, `10s`, `1h`); a bare number is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Duration(std::time::Duration::from_secs(n)));
        }
        let mut total_ns: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("duration `{s}` lacks a unit (h, m, s, ms, us, ns)"))?;
            if num_end == 0 {
                return Err(format!("invalid duration `{s}`: expected a number"));
            }
            let num: f64 = rest[..num_end]
                .parse()
                .map_err(|_| format!("invalid number in duration `{s}`"))?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let mult: f64 = match &rest[..unit_end] {
                "h" => 3_600e9,
                "m" => 60e9,
                "s" => 1e9,
                "ms" => 1e6,
                "us" | "µs" => 1e3,
                "ns" => 1.0,
                u => {
                    return Err(format!(
                        "invalid unit `{u}` in duration `{s}` (use h, m, s, ms, us, ns)"
                    ));
                }
            };
            rest = &rest[unit_end..];
            total_ns += (num * mult) as u128;
        }
        Ok(Duration(std::time::Duration::from_nanos(
            u64::try_from(total_ns).map_err(|_| format!("duration `{s}` is too long"))?,
        )))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.as_millis() as u64)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Duration::parse(&s))
    }
}

/// A byte size: `256M`, `1g`, `512k`, `1024` (bytes), `1.5GiB`; binary multiples as Docker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("invalid size `{s}` (e.g. 256M, 1G, 512k)"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(format!("invalid size unit in `{s}` (use b, k, m, g, t)")),
        };
        let v = num * mult as f64;
        if !(v >= 1.0 && v < u64::MAX as f64) {
            return Err(format!("size `{s}` out of range"));
        }
        Ok(ByteSize(v as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| ByteSize::parse(&s))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    Always,
    #[default]
    Missing,
    Never,
}

/// `network_mode:` in Docker's spelling: `bridge`, `host`, `none` or `container:<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
    None,
    /// The network namespace of another berth container (on the bridge), shared.
    Container(String),
}

impl NetworkMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            other => match other.strip_prefix("container:") {
                Some(n) if is_valid_name(n) => NetworkMode::Container(n.to_owned()),
                Some(n) => return Err(format!("invalid container name `{n}` in `{other}`")),
                None => {
                    return Err(format!(
                        "invalid network_mode `{other}`: expected bridge, host, none or container:<name>"
                    ));
                }
            },
        })
    }

    /// The container whose namespace this one joins.
    pub fn container(&self) -> Option<&str> {
        match self {
            NetworkMode::Container(n) => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(n) => write!(f, "container:{n}"),
        }
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| NetworkMode::parse(&s))
    }
}

/// `restart:` in Compose's spelling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure(Option<u32>),
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Restart::parse(&s))
    }
}

impl Restart {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "no" | "false" => Restart::No,
            "always" => Restart::Always,
            "unless-stopped" => Restart::UnlessStopped,
            "on-failure" => Restart::OnFailure(None),
            other => match other.strip_prefix("on-failure:") {
                Some(n) => Restart::OnFailure(Some(
                    n.parse()
                        .map_err(|_| format!("invalid retry count in `{other}`"))?,
                )),
                None => {
                    return Err(format!(
                        "invalid restart policy `{other}`: expected no, always, unless-stopped, on-failure or on-failure:N"
                    ));
                }
            },
        })
    }
}

/// A signal name (`SIGTERM`, `TERM`) or number, kept as the canonical `SIGxxx` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Signal(pub String);

impl Signal {
    pub fn parse(s: &str) -> Result<Self, String> {
        use std::str::FromStr;
        let up = s.trim().to_ascii_uppercase();
        if let Ok(n) = up.parse::<i32>() {
            return nix::sys::signal::Signal::try_from(n)
                .map(|sig| Signal(sig.as_str().to_owned()))
                .map_err(|_| format!("unknown signal number {n}"));
        }
        let name = if up.starts_with("SIG") {
            up
        } else {
            format!("SIG{up}")
        };
        nix::sys::signal::Signal::from_str(&name)
            .map(|sig| Signal(sig.as_str().to_owned()))
            .map_err(|_| format!("unknown signal `{s}`"))
    }
    pub fn number(&self) -> i32 {
        use std::str::FromStr;
        nix::sys::signal::Signal::from_str(&self.0)
            .map(|s| s as i32)
            .unwrap_or(libc::SIGTERM)
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(d, |s| Signal::parse(&s))
    }
}

pub(super) fn check_name<E: de::Error>(n: &str) -> Result<(), E> {
    if is_valid_name(n) {
        Ok(())
    } else {
        Err(E::custom(format!("invalid container name `{n}`")))
    }
}

/// Container (and volume) names: what a systemd unit name and a file name can both carry.
pub fn is_valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && n.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `readiness:`, when the unit becomes active. The spec's own word; bundle turns it into the
/// shim's (`shim.json`), so the file format and the wire format can change apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// As soon as the container's process runs.
    #[default]
    Started,
    /// After the first passing health check.
    Healthy,
    /// When the application sends READY=1 itself (sd_notify).
    Notify,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| Duration::parse(s).unwrap().0;
        assert_eq!(d("1m30s"), std::time::Duration::from_secs(90));
        assert_eq!(d("500ms"), std::time::Duration::from_millis(500));
        assert_eq!(d("2"), std::time::Duration::from_secs(2));
        assert_eq!(d("1.5s"), std::time::Duration::from_millis(1500));
        assert!(Duration::parse("10x").is_err());
        assert!(Duration::parse("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("256M").unwrap().0, 256 << 20);
        assert_eq!(ByteSize::parse("1g").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("1.5GiB").unwrap().0, 3 << 29);
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert!(ByteSize::parse("12Q").is_err());
        assert!(ByteSize::parse("0").is_err());
    }

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"nginx -g 'daemon off;' "a \"b\"" c\ d"#).unwrap(),
            vec!["nginx", "-g", "daemon off;", "a \"b\"", "c d"]
        );
        assert!(split_words("echo 'x").is_err());
        assert_eq!(split_words("a ''").unwrap(), vec!["a", ""]);
    }

    #[test]
    fn signals() {
        assert_eq!(Signal::parse("term").unwrap().0, "SIGTERM");
        assert_eq!(Signal::parse("SIGQUIT").unwrap().0, "SIGQUIT");
        assert_eq!(Signal::parse("9").unwrap().0, "SIGKILL");
        assert!(Signal::parse("SIGFOO").is_err());
    }

    #[test]
    fn names() {
        assert!(is_valid_name("web-1.a_b"));
        assert!(!is_valid_name("-web"));
        assert!(!is_valid_name("we b"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(65)));
    }
}

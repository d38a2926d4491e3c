//! Container specs: one YAML file per container (`<dir>/<name>.yaml`), parsed strictly with the file,
//! line and column of every error and a hint where one helps. Used by berthd (reconcile) and by
//! `berth check` (no daemon needed).

pub mod effective;
#[cfg(test)]
mod hash_pins;
pub mod health;
pub mod isolation;
pub mod logging;
mod networks;
pub mod types;
mod validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use health::*;
pub use isolation::*;
pub use logging::{Logging, RateLimit};
pub use networks::{NetworkJoin, Networks};
pub use types::*;

/// One container as its file describes it. Keys follow Docker Compose's service keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_file: Option<PathBuf>,
    #[serde(default)]
    pub pull_policy: PullPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Argv>,
    #[serde(default)]
    pub environment: KeyValues,
    #[serde(default)]
    pub env_file: StringList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub tmpfs: TmpfsList,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub network_mode: NetworkMode,
    /// Absent from the hash when empty, so that specs without it hash as before.
    #[serde(default, skip_serializing_if = "Networks::is_empty")]
    pub networks: Networks,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(default)]
    pub cap_add: Vec<Capability>,
    #[serde(default)]
    pub cap_drop: Vec<Capability>,
    #[serde(default)]
    pub security_opt: Vec<SecurityOpt>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub sysctls: KeyValues,
    #[serde(default)]
    pub labels: KeyValues,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<Signal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default)]
    pub restart: Restart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckSpec>,
    #[serde(default)]
    pub depends_on: DependsOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

impl Spec {
    /// `depends_on:` and, for `network_mode: container:<name>`, that container: it must have
    /// started (its namespace exists) before this one can join it.
    pub fn dependencies(&self) -> BTreeMap<String, Dependency> {
        let mut d = self.depends_on.0.clone();
        if let Some(t) = self.network_mode.container() {
            d.entry(t.to_owned()).or_insert(Dependency {
                condition: Condition::ServiceStarted,
                required: true,
                restart: true,
            });
        }
        d
    }

    /// The `seccomp=` option in effect (the last one wins, as in Docker): None when the spec sets
    /// none (berth's default profile), `Some(None)` for `unconfined`, `Some(Some(path))` for a
    /// profile file.
    pub fn seccomp(&self) -> Option<Option<&str>> {
        self.security_opt.iter().rev().find_map(|o| match o {
            SecurityOpt::Seccomp(p) => Some(p.as_deref()),
            _ => None,
        })
    }
}

/// `tmpfs:` as one path or a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TmpfsList(pub Vec<Tmpfs>);

impl<'de> Deserialize<'de> for TmpfsList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let l = StringList::deserialize(d)?;
        l.0.iter()
            .map(|s| Tmpfs::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map(TmpfsList)
            .map_err(serde::de::Error::custom)
    }
}

/// Compose keys people will try that berth spells differently or does not have, with what to write.
const ALIASES: &[(&str, &str)] = &[
    ("env", "use `environment`"),
    ("envfile", "use `env_file`"),
    ("workdir", "use `working_dir`"),
    ("memory", "use `mem_limit` (e.g. `mem_limit: 256M`)"),
    ("mem", "use `mem_limit` (e.g. `mem_limit: 256M`)"),
    ("cpu", "use `cpus` (e.g. `cpus: 0.5`)"),
    ("container_name", "the file name is the container's name"),
    ("name", "the file name is the container's name"),
    (
        "privileged",
        "berth never runs privileged containers; use `cap_add` for what is needed",
    ),
    (
        "build",
        "berth runs images; build them elsewhere and use `image` or `image_file`",
    ),
    ("deploy", "use `mem_limit`, `cpus` and `pids_limit`"),
];

/// Nearest candidate by edit distance, when it is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::damerau_levenshtein(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A spec error with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

impl SpecError {
    fn at(file: &Path, text: &str, key: Option<&str>, message: impl Into<String>) -> Self {
        let line = key.and_then(|k| key_line(text, k));
        SpecError {
            file: file.to_owned(),
            line: Some(line.unwrap_or(1)),
            column: Some(1),
            message: message.into(),
            hint: None,
        }
    }
    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// Line (1-based) of a top-level key in the file text.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// Line (1-based) of `item` (a `- item` entry or an `item:` key) below the top-level `key`.
pub(crate) fn nested_line(text: &str, key: &str, item: &str) -> Option<usize> {
    let start = key_line(text, key)?;
    let first = text.lines().nth(start - 1)?;
    // Flow style on the key's own line (`networks: [a, b]`).
    if first.contains(item) {
        return Some(start);
    }
    text.lines()
        .enumerate()
        .skip(start)
        .take_while(|(_, l)| l.is_empty() || l.starts_with([' ', '#', '-']))
        .find(|(_, l)| {
            let t = l.trim_start().trim_start_matches('-').trim_start();
            t.strip_prefix(item)
                .is_some_and(|r| r.is_empty() || r.trim_start().starts_with(':'))
        })
        .map(|(i, _)| i + 1)
}

/// The container name a spec file stands for, if its name is one berth reads.
/// Editor temporaries (`.x.yaml.swp`, `x.yaml~`, `#x#`) and hidden files are not specs.
pub fn name_of(path: &Path) -> Option<&str> {
    let f = path.file_name()?.to_str()?;
    if f.starts_with('.') {
        return None;
    }
    f.strip_suffix(".yaml").or_else(|| f.strip_suffix(".yml"))
}

/// Parses one spec from its text; `file` is only used for messages and the name.
pub fn parse(file: &Path, text: &str) -> Result<Spec, SpecError> {
    let name = name_of(file).unwrap_or_default();
    if !is_valid_name(name) {
        return Err(SpecError {
            file: file.to_owned(),
            line: None,
            column: None,
            message: format!("`{name}` is not a valid container name"),
            hint: Some(
                "name the file <name>.yaml with letters, digits, `_`, `.` or `-`, starting with a letter or digit, at most 64 characters".into(),
            ),
        });
    }
    if text.trim().is_empty() {
        return Err(SpecError::at(file, text, None, "empty spec")
            .hint("a spec needs at least `image:` or `image_file:`"));
    }
    let spec: Spec = serde_norway::from_str(text).map_err(|e| yaml_error(file, &e))?;
    validate::validate(file, text, &spec)?;
    Ok(spec)
}

/// A YAML parse error as a spec error at its file:line:column (network files use it too).
pub(crate) fn yaml_error(file: &Path, e: &serde_norway::Error) -> SpecError {
    let loc = e.location();
    let mut message = e.to_string();
    // The location is reported separately, in file:line:column form.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    let mut hint = None;
    // Nested errors start with their path (`healthcheck: unknown field …`).
    if let Some(i) = message
        .find("unknown field `")
        .or_else(|| message.find("unknown variant `"))
    {
        message.drain(..i);
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default().to_owned();
        // The message lists what the enclosing map accepts; suggest from that list.
        let expected: Vec<&str> = message
            .split("expected one of ")
            .nth(1)
            .or_else(|| message.split("expected ").nth(1))
            .map(|l| l.split(", ").map(|s| s.trim_matches('`')).collect())
            .unwrap_or_default();
        hint = ALIASES
            .iter()
            .find(|(k, _)| *k == field)
            .map(|(_, h)| h.to_string())
            .or_else(|| {
                closest(&field, expected.iter().copied()).map(|c| format!("did you mean `{c}`?"))
            });
        message = format!("unknown key `{field}`");
    } else if message.starts_with("unknown variant `") {
        let variant = message.split('`').nth(1).unwrap_or_default().to_owned();
        let expected: Vec<String> = message
            .split("expected ")
            .nth(1)
            .map(|l| {
                l.split([',', ' '])
                    .filter(|s| s.starts_with('`'))
                    .map(|s| s.trim_matches('`').to_owned())
                    .collect()
            })
            .unwrap_or_default();
        hint = closest(&variant, expected.iter().map(String::as_str))
            .map(|c| format!("did you mean `{c}`?"));
    }
    SpecError {
        file: file.to_owned(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        message,
        hint,
    }
}

/// A spec file as read from disk: its parsed spec, or why it could not be used.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub name: String,
    pub path: PathBuf,
    pub spec: Result<Spec, SpecError>,
}

/// Reads one spec file.
pub fn load(path: &Path) -> SpecFile {
    let name = name_of(path).unwrap_or_default().to_owned();
    let spec = match std::fs::read_to_string(path) {
        Ok(t) => parse(path, &t),
        Err(e) => Err(SpecError {
            file: path.to_owned(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
            hint: None,
        }),
    };
    SpecFile {
        name,
        path: path.to_owned(),
        spec,
    }
}

/// What `berth check` says of a file: parsed as [`load`] does, then the files it names (env files,
/// a seccomp profile, device nodes) read and judged as a reconcile pass would.
pub fn check_file(path: &Path) -> Result<Spec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: path.to_owned(),
        line: None,
        column: None,
        message: format!("cannot read: {e}"),
        hint: None,
    })?;
    let spec = parse(path, &text)?;
    validate::inputs(path, &text, &spec)?;
    validate::network_target(path, &text, &spec)?;
    Ok(spec)
}

/// Reads every spec in a directory, keyed by container name. A name given by two files
/// (`web.yaml` and `web.yml`) is an error on both; a missing directory is empty.
pub fn load_dir(dir: &Path) -> std::io::Result<BTreeMap<String, SpecFile>> {
    let mut out: BTreeMap<String, SpecFile> = BTreeMap::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        let Some(name) = name_of(&p) else { continue };
        if p.is_dir() {
            continue;
        }
        let name = name.to_owned();
        let sf = load(&p);
        if let Some(prev) = out.get_mut(&name) {
            let msg = format!(
                "container `{name}` is defined twice: {} and {}",
                prev.path.display(),
                p.display()
            );
            prev.spec = Err(SpecError {
                file: prev.path.clone(),
                line: None,
                column: None,
                message: msg,
                hint: Some("remove one of the files".into()),
            });
            continue;
        }
        out.insert(name, sf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

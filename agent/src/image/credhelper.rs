//! Docker credential helpers (`docker-credential-<name> get`, named by `credsStore` /
//! `credHelpers` in a Docker config.json): runs one helper for one registry and reads its answer.
//! Runs in berthd and the CLI (async: the helper is a tokio child process with a deadline).
//!
//! The protocol (docker/docker-credential-helpers): the server address is written to the helper's
//! stdin, the helper prints `{"ServerURL":…,"Username":…,"Secret":…}` and exits 0, or prints a
//! message and exits non-zero; the message `credentials not found in native keychain` means it
//! has nothing for that server. The username `<token>` marks the secret as an identity token.

use super::registry::Secret;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// How long a helper may take (it may be waiting on a locked keyring or a slow cloud API).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Prefix of every helper program's name.
pub const PREFIX: &str = "docker-credential-";

/// What a helper says the helper's protocol reserves for "nothing stored for this server".
const NOT_FOUND: &str = "credentials not found in native keychain";

/// Username a helper returns when the secret is an identity (OAuth2 refresh) token.
const TOKEN_USERNAME: &str = "<token>";

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error(
        "credential helper {program} for registry {registry} is not installed (named in {config}): \
         install it in $PATH{dirs}, or remove its credsStore/credHelpers entry from {config}"
    )]
    NotInstalled {
        program: String,
        registry: String,
        config: PathBuf,
        dirs: String,
    },
    #[error(
        "cannot run credential helper {program} for registry {registry}: {source}; check that it \
         is executable"
    )]
    Spawn {
        program: String,
        registry: String,
        source: io::Error,
    },
    #[error(
        "credential helper {program} failed for registry {registry} ({status}): {message}; check it \
         by hand with `printf %s {server} | {program} get`"
    )]
    Failed {
        program: String,
        registry: String,
        server: String,
        status: String,
        message: String,
    },
    #[error(
        "credential helper {program} gave no answer for registry {registry} within {secs} s (is it \
         waiting for a locked keyring or a prompt?); unlock its store, or check it by hand with \
         `printf %s {server} | {program} get`"
    )]
    Timeout {
        program: String,
        registry: String,
        server: String,
        secs: u64,
    },
    #[error(
        "credential helper {program} gave invalid output for registry {registry}: {detail}; \
         expected JSON {{\"ServerURL\":…,\"Username\":…,\"Secret\":…}}"
    )]
    BadOutput {
        program: String,
        registry: String,
        detail: String,
    },
}

/// The helper's answer on success.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// One helper run: the helper `name` (without the `docker-credential-` prefix), named in
/// `config`, asked about `server` (what Docker stores the registry under) for `registry` (what
/// error messages name).
pub struct Request<'a> {
    pub name: &'a str,
    pub config: &'a Path,
    pub registry: &'a str,
    pub server: &'a str,
    /// Searched for the helper before $PATH.
    pub dirs: &'a [PathBuf],
    pub timeout: Duration,
}

/// Runs the helper: `Ok(None)` when it has no credentials for the server.
pub async fn get(req: &Request<'_>) -> Result<Option<Secret>, HelperError> {
    let program = format!("{PREFIX}{}", req.name);
    let registry = req.registry.to_string();
    // A name with a slash would escape the helper naming scheme (Docker only looks in $PATH).
    let path = if req.name.contains('/') {
        None
    } else {
        req.dirs
            .iter()
            .map(|d| d.join(&program))
            .find(|p| p.is_file())
    };
    let mut cmd = tokio::process::Command::new(path.as_deref().unwrap_or(Path::new(&program)));
    cmd.arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also ends whatever the helper started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound || req.name.contains('/') => {
            let dirs = req
                .dirs
                .iter()
                .map(|d| format!(" or {}", d.display()))
                .collect::<String>();
            return Err(HelperError::NotInstalled {
                program,
                registry,
                config: req.config.to_path_buf(),
                dirs,
            });
        }
        Err(source) => {
            return Err(HelperError::Spawn {
                program,
                registry,
                source,
            });
        }
    };
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let server = req.server.as_bytes().to_vec();
    let run = async move {
        // A helper may exit without reading its stdin: a broken pipe here is not the failure
        // to report (its exit status and output are).
        let _ = stdin.write_all(&server).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(req.timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(HelperError::Spawn {
                program,
                registry,
                source,
            });
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The child is killed on drop; its group may hold more processes.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(HelperError::Timeout {
                program,
                registry,
                server: req.server.to_string(),
                secs: req.timeout.as_secs(),
            });
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Helpers built on docker-credential-helpers print their error to stdout.
        if stdout.trim() == NOT_FOUND || stderr.trim() == NOT_FOUND {
            return Ok(None);
        }
        let message = [stdout.trim(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(HelperError::Failed {
            program,
            registry,
            server: req.server.to_string(),
            status: out.status.to_string(),
            message: if message.is_empty() {
                "no message".into()
            } else {
                message
            },
        });
    }
    let a: Answer = serde_json::from_str(stdout.trim()).map_err(|e| HelperError::BadOutput {
        program: program.clone(),
        registry: registry.clone(),
        detail: if stdout.trim().is_empty() {
            "empty output".into()
        } else {
            e.to_string()
        },
    })?;
    if a.username.is_empty() && a.secret.is_empty() {
        return Ok(None);
    }
    if a.username == TOKEN_USERNAME {
        return Ok(Some(Secret::IdentityToken(a.secret)));
    }
    Ok(Some(Secret::Auth(RegistryAuth::Basic(
        a.username, a.secret,
    ))))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// Writes `docker-credential-<name>` with this shell body into `dir`.
    pub(crate) fn helper(dir: &Path, name: &str, body: &str) {
        // Written by a child process: a file this (multi-threaded) test process had open for
        // writing could be inherited by another test's fork and make exec fail with ETXTBSY.
        let p = dir.join(format!("{PREFIX}{name}"));
        let st = std::process::Command::new("sh")
            .args([
                "-c",
                r#"printf '#!/bin/sh\n%s\n' "$2" > "$1" && chmod 755 "$1""#,
                "sh",
            ])
            .arg(&p)
            .arg(body)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn req<'a>(name: &'a str, dirs: &'a [PathBuf], timeout: Duration) -> Request<'a> {
        Request {
            name,
            config: Path::new("/cfg/config.json"),
            registry: "reg.example:5000",
            server: "reg.example:5000",
            dirs,
            timeout,
        }
    }

    #[tokio::test]
    async fn helper_protocol_answers() {
        let d = tempfile::tempdir().unwrap();
        let dirs = [d.path().to_path_buf()];
        // echoes what it was asked, so the test sees the server address arrived on stdin
        helper(
            d.path(),
            "echo",
            r#"[ "$1" = get ] || exit 3; read -r s || true; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"pw"}\n' "$s" "$s""#,
        );
        helper(
            d.path(),
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        helper(
            d.path(),
            "empty",
            r#"echo '{"ServerURL":"x","Username":"","Secret":""}'"#,
        );
        helper(
            d.path(),
            "token",
            r#"echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh"}'"#,
        );
        let t = Duration::from_secs(10);
        let a = get(&req("echo", &dirs, t)).await.unwrap();
        assert_eq!(
            a,
            Some(Secret::Auth(RegistryAuth::Basic(
                "u-reg.example:5000".into(),
                "pw".into()
            )))
        );
        assert_eq!(
            get(&req("token", &dirs, t)).await.unwrap(),
            Some(Secret::IdentityToken("refresh".into()))
        );
        assert_eq!(get(&req("none", &dirs, t)).await.unwrap(), None);
        assert_eq!(get(&req("empty", &dirs, t)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn helper_failures_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let dirs = [d.path().to_path_buf()];
        helper(
            d.path(),
            "fail",
            "echo 'error getting credentials - err: exit status 2, out: `GDBus.Error: locked`'; exit 1",
        );
        helper(d.path(), "garbage", "echo 'Username: bob'");
        helper(d.path(), "silent", "exit 0");
        helper(d.path(), "hang", "sleep 60");
        let t = Duration::from_secs(10);
        let msg = |r: Result<Option<Secret>, HelperError>| r.unwrap_err().to_string();

        let e = msg(get(&req("fail", &dirs, t)).await);
        assert!(e.contains("docker-credential-fail failed"), "{e}");
        assert!(e.contains("reg.example:5000"), "{e}");
        assert!(e.contains("GDBus.Error: locked"), "{e}");
        assert!(e.contains("exit status: 1"), "{e}");

        let e = msg(get(&req("garbage", &dirs, t)).await);
        assert!(
            e.contains(
                "docker-credential-garbage gave invalid output for registry reg.example:5000"
            ),
            "{e}"
        );
        let e = msg(get(&req("silent", &dirs, t)).await);
        assert!(
            e.contains("invalid output") && e.contains("empty output"),
            "{e}"
        );

        let e = msg(get(&req("missing-xyz", &dirs, t)).await);
        assert!(
            e.contains(
                "docker-credential-missing-xyz for registry reg.example:5000 is not installed"
            ),
            "{e}"
        );
        assert!(e.contains("/cfg/config.json"), "{e}");

        let start = std::time::Instant::now();
        let e = msg(get(&req("hang", &dirs, Duration::from_millis(500))).await);
        assert!(start.elapsed() < Duration::from_secs(5), "timeout not kept");
        assert!(
            e.contains("docker-credential-hang gave no answer for registry reg.example:5000"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn helper_not_executable() {
        let d = tempfile::tempdir().unwrap();
        let dirs = [d.path().to_path_buf()];
        let p = d.path().join(format!("{PREFIX}noexec"));
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = get(&req("noexec", &dirs, Duration::from_secs(5)))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot run credential helper docker-credential-noexec"),
            "{e}"
        );
    }
}

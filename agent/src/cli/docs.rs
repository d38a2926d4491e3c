//! Shell completions (clap_complete) and man pages (clap_mangen) of `berth` and `berthd`, written
//! by `berth generate-docs DIR` (run by `scripts/install.sh` and the Nix package) into a tree laid
//! out like `$PREFIX/share`, so an installer copies it as it is. Runs in the `berth` CLI.

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct DocsError {
    path: PathBuf,
    source: std::io::Error,
}

/// Where each shell looks for vendor completions, relative to `$PREFIX/share`, and the file name.
fn completion_path(shell: Shell, bin: &str) -> PathBuf {
    match shell {
        Shell::Bash => PathBuf::from("bash-completion/completions").join(bin),
        Shell::Zsh => PathBuf::from("zsh/site-functions").join(format!("_{bin}")),
        Shell::Fish => PathBuf::from("fish/vendor_completions.d").join(format!("{bin}.fish")),
        other => PathBuf::from("completions").join(format!("{bin}.{other}")),
    }
}

/// Writes completions for bash, zsh and fish and the man pages (`man1/berth*.1`, one per
/// subcommand, and `man8/berthd.8`) under `share`; returns the files written.
pub fn generate(share: &Path, berth: clap::Command) -> Result<Vec<PathBuf>, DocsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DocsError { path, source }
    };
    let berthd = super::berthd::DaemonArgs::command();
    let mut written = Vec::new();
    for mut cmd in [berth.clone(), berthd.clone()] {
        let bin = cmd.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path = share.join(completion_path(shell, &bin));
            let dir = path.parent().expect("completion paths have a directory");
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, &bin, &mut buf);
            std::fs::write(&path, buf).map_err(io(&path))?;
            written.push(path);
        }
    }
    let man1 = share.join("man/man1");
    std::fs::create_dir_all(&man1).map_err(io(&man1))?;
    clap_mangen::generate_to(berth, &man1).map_err(io(&man1))?;
    let man8 = share.join("man/man8");
    std::fs::create_dir_all(&man8).map_err(io(&man8))?;
    let page = clap_mangen::Man::new(berthd)
        .section("8")
        .generate_to(&man8)
        .map_err(io(&man8))?;
    for dir in [&man1, &man8] {
        for e in std::fs::read_dir(dir).map_err(io(dir))? {
            written.push(e.map_err(io(dir))?.path());
        }
    }
    debug_assert!(written.contains(&page));
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_completions_and_man_pages_where_installers_look() {
        let d = tempfile::tempdir().unwrap();
        let berth = clap::Command::new("berth")
            .about("test CLI")
            .subcommand(clap::Command::new("ps").about("list containers"))
            .subcommand(clap::Command::new("secret").hide(true));
        let files = generate(d.path(), berth).unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        for want in [
            "bash-completion/completions/berth",
            "bash-completion/completions/berthd",
            "zsh/site-functions/_berthd",
            "fish/vendor_completions.d/berth.fish",
            "man/man1/berth.1",
            "man/man1/berth-ps.1",
            "man/man8/berthd.8",
        ] {
            assert!(rel.iter().any(|r| r == want), "{want} missing from {rel:?}");
        }
        assert!(!rel.iter().any(|r| r.contains("secret")), "{rel:?}");
        let page = std::fs::read_to_string(d.path().join("man/man8/berthd.8")).unwrap();
        assert!(page.contains("\\-\\-spec\\-dir"), "{page}");
        let bash =
            std::fs::read_to_string(d.path().join("bash-completion/completions/berthd")).unwrap();
        assert!(bash.contains("--state-dir"), "{bash}");
    }
}

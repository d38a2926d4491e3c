//! `berth-shim`: thin binary over the shim library; the main process of `berth-<name>.service`.
//! Arguments are parsed by hand: four flags do not justify an argument parser's code in a
//! process that exists once per container (its text and relocations are per-container memory).

use std::path::PathBuf;

const USAGE: &str =
    "usage: berth-shim [--bundle] DIR [--root DIR] [--id ID] [--runtime-binary PATH]
  [--bundle] DIR          bundle directory holding config.json and shim.json
  --root DIR              the runtime's state directory (default /run/berth/runtime)
  --id ID                 container id for the runtime (default: the name in shim.json)
  --runtime-binary PATH   drive this runc-compatible binary instead of the linked runtime library";

fn parse(args: &[String]) -> Result<berth_shim::Options, String> {
    let mut o = berth_shim::Options {
        bundle: PathBuf::new(),
        root: PathBuf::from("/run/berth/runtime"),
        id: None,
        runtime_binary: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        if matches!(flag, "-h" | "--help") {
            return Err(String::new());
        }
        if matches!(flag, "-V" | "--version") {
            return Err(format!("berth-shim {}", env!("CARGO_PKG_VERSION")));
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--bundle" => o.bundle = PathBuf::from(value()?),
            "--root" => o.root = PathBuf::from(value()?),
            "--id" => o.id = Some(value()?),
            "--runtime-binary" => o.runtime_binary = Some(PathBuf::from(value()?)),
            other if !other.starts_with('-') && o.bundle.as_os_str().is_empty() => {
                o.bundle = PathBuf::from(other)
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.bundle.as_os_str().is_empty() {
        return Err("the bundle directory is required".into());
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(o) => std::process::exit(berth_shim::run(o)),
        Err(m) if m.starts_with("berth-shim ") => println!("{m}"),
        Err(m) if m.is_empty() => println!("{USAGE}"),
        Err(m) => {
            eprintln!("berth-shim: {m}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags() {
        let o = parse(&v(&[
            "--bundle",
            "/b",
            "--root=/r",
            "--runtime-binary",
            "/usr/sbin/runc",
        ]))
        .unwrap();
        assert_eq!(o.bundle, PathBuf::from("/b"));
        assert_eq!(o.root, PathBuf::from("/r"));
        assert_eq!(o.runtime_binary, Some(PathBuf::from("/usr/sbin/runc")));
        assert!(parse(&v(&["--root", "/r"])).is_err());
        assert!(parse(&v(&["--bundle"])).is_err());
        assert!(parse(&v(&["--bundle", "/b", "--bogus"])).is_err());
        assert_eq!(
            parse(&v(&["/run/berth/containers/web"])).unwrap().bundle,
            PathBuf::from("/run/berth/containers/web")
        );
        assert!(parse(&v(&["/a", "/b"])).is_err());
    }
}

//! `berth pull|images|rmi|prepare|release|gc|import`: the image store used directly from the command
//! line (runs in the `berth` process; berthd calls the same library).

use crate::image::{self, PullOptions, RegistryConfig, Store};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the store is and how to reach registries.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Image store root.
    #[arg(long, env = "BERTH_ROOT", default_value = image::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Registry (host[:port]) to reach over plain HTTP (repeatable).
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// docker.io mirror (host[:port]), tried first (repeatable).
    #[arg(long = "registry-mirror")]
    pub mirrors: Vec<String>,
    /// Directory with <host>/ca.crt extra CAs (repeatable; default /etc/{berth,docker,containers}/certs.d).
    #[arg(long = "certs-dir")]
    pub certs_dirs: Vec<PathBuf>,
    /// Credentials file in config.json/auth.json format (repeatable; default the usual places).
    #[arg(long = "auth-file")]
    pub auth_files: Vec<PathBuf>,
}

impl StoreArgs {
    pub fn open(&self) -> Result<Store, image::Error> {
        let mut cfg = RegistryConfig::with_default_paths();
        cfg.insecure = self.insecure.clone();
        cfg.mirrors = self.mirrors.clone();
        if !self.certs_dirs.is_empty() {
            cfg.certs_dirs = self.certs_dirs.clone();
        }
        if !self.auth_files.is_empty() {
            cfg.auth_files = self.auth_files.clone();
        }
        Store::open(&self.root, cfg)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image into the store (and unpack its layers).
    Pull {
        reference: String,
        /// Only fetch the blobs; unpack later when a container needs them.
        #[arg(long)]
        no_unpack: bool,
        /// Platform os/arch[/variant] to pick from an index (default: this host's).
        #[arg(long)]
        platform: Option<String>,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List stored images.
    Images {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove image names (content goes at the next gc).
    Rmi {
        #[arg(required = true)]
        references: Vec<String>,
        /// Even when a prepared container uses it.
        #[arg(short, long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Prepare a container's root filesystem from an image; prints the overlay dirs and image config as JSON.
    #[command(alias = "rootfs")]
    Prepare {
        container: String,
        image: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a container's upper/work dirs and its hold on its image.
    Release {
        container: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove blobs and unpacked layers no image or container needs.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import a docker-archive or oci-archive tarball (once per content).
    Import {
        path: PathBuf,
        /// Name to store it under (default: the archive's tag).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        no_unpack: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn parse_platform(s: &str) -> Option<image::Platform> {
    let mut it = s.split('/');
    let (os, arch) = (it.next()?, it.next()?);
    Some(image::manifest::platform(os, arch, it.next()))
}

/// Prints `v` as the command's JSON output.
fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs one image subcommand; `json`: print JSON instead of tables and text.
pub async fn run(cmd: ImageCommand, json: bool) -> Result<(), image::Error> {
    match cmd {
        ImageCommand::Pull {
            reference,
            no_unpack,
            platform,
            quiet,
            store,
        } => {
            let s = store.open()?;
            let mut opts = PullOptions {
                unpack: !no_unpack,
                ..Default::default()
            };
            if let Some(p) = platform {
                opts.platform = parse_platform(&p).ok_or_else(|| image::Error::Manifest {
                    image: reference.clone(),
                    detail: format!("bad --platform {p:?}, want os/arch[/variant]"),
                })?;
            }
            let (tx, mut rx) = tokio::sync::watch::channel(image::Progress::default());
            opts.progress = Some(Arc::new(tx));
            let printer = (!quiet).then(|| {
                tokio::spawn(async move {
                    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
                    while rx.changed().await.is_ok() {
                        let line = rx.borrow_and_update().to_string();
                        if tty {
                            eprint!("\r\x1b[K{line}");
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                })
            });
            let t0 = std::time::Instant::now();
            let res = s.pull(&reference, &opts).await;
            let last = opts
                .progress
                .as_ref()
                .map(|p| p.borrow().clone())
                .unwrap_or_default();
            drop(opts);
            if let Some(p) = printer {
                let _ = p.await;
                let secs = t0.elapsed().as_secs_f64();
                eprintln!(
                    "\r\x1b[K{last} in {secs:.2}s ({:.0} MB/s)",
                    last.bytes_total as f64 / 1e6 / secs.max(1e-9)
                );
            }
            let img = res?;
            if json {
                print_json(&serde_json::json!({"name": img.name, "digest": img.digest}));
            } else {
                println!("{} {}", img.name, img.digest);
            }
        }
        ImageCommand::Images { store } => {
            let s = store.open()?;
            let images = s.list()?;
            if json {
                print_json(&images);
                return Ok(());
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{:<60} {:<20} {:>10}", "IMAGE", "DIGEST", "SIZE");
            for i in images {
                let short = i
                    .digest
                    .trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or("")
                    .to_string();
                let _ = writeln!(
                    out,
                    "{:<60} {:<20} {:>8.1}MB",
                    i.name,
                    short,
                    i.size as f64 / 1e6
                );
            }
        }
        ImageCommand::Rmi {
            references,
            force,
            store,
        } => {
            let s = store.open()?;
            let mut untagged = Vec::new();
            let res: Result<(), image::Error> = references.iter().try_for_each(|r| {
                s.remove(r, force)?;
                if !json {
                    println!("untagged {r}");
                }
                untagged.push(r.as_str());
                Ok(())
            });
            if json {
                // Also when a later name failed: these are gone already.
                print_json(&serde_json::json!({ "untagged": untagged }));
            }
            res?;
        }
        ImageCommand::Prepare {
            container,
            image,
            store,
        } => {
            let s = store.open()?;
            let p = s.prepare_rootfs(&container, &image).await?;
            let v = serde_json::json!({
                "image": p.image.name,
                "digest": p.image.digest,
                "rootfs": p.rootfs,
                "config": p.image.config,
            });
            print_json(&v);
        }
        ImageCommand::Release { container, store } => {
            store.open()?.release_rootfs(&container)?;
            if json {
                print_json(&serde_json::json!({ "released": container }));
            }
        }
        ImageCommand::Gc { store } => {
            let r = store.open()?.gc(&[]).await?;
            if json {
                print_json(&r);
                return Ok(());
            }
            println!(
                "removed {} blobs and {} layers, {:.1} MB freed",
                r.blobs_removed,
                r.layers_removed,
                r.bytes_freed as f64 / 1e6
            );
        }
        ImageCommand::Import {
            path,
            name,
            no_unpack,
            store,
        } => {
            let s = store.open()?;
            let img = s.import_archive(&path, name.as_deref()).await?;
            if !no_unpack {
                s.unpack(&img).await?;
            }
            if json {
                print_json(&serde_json::json!({"name": img.name, "digest": img.digest}));
            } else {
                println!("{} {}", img.name, img.digest);
            }
        }
    }
    Ok(())
}

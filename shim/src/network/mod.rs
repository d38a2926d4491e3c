//! The container's bridge network: an address lease, the published host ports held open, a
//! network namespace bind-mounted at the path config.json names, and netavark's set-up of it.
//! berth-shim owns all of it so that a container started by systemd alone (`Restart=`, berthd
//! down) still gets its network, and tears it down on every exit path. Runs in berth-shim,
//! single-threaded, before the runtime creates the container.

mod netavark;
mod ports;

pub use netavark::{Attachment, NetavarkError};
pub use ports::{PortError, Reservation};

use berth_proto::netlock::NetworkLock;
use berth_proto::{NetworkConfig, NetworkStatus};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {network}: {message}")]
    Config { network: String, message: String },
    #[error("network {network}: no free address left in {subnet}")]
    Exhausted { network: String, subnet: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the network namespace at {path}: {step}: {source}")]
    Netns {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Port(#[from] PortError),
    #[error("network {network}: {source}")]
    Netavark {
        network: String,
        #[source]
        source: NetavarkError,
    },
}

/// A set-up network; [`Network::teardown`] undoes what [`Network::setup`] did, in reverse.
#[derive(Debug)]
pub struct Network {
    cfg: NetworkConfig,
    name: String,
    /// Held from before the lease until the teardown is done: berthd's sweep leaves this
    /// container's network alone while it is held (and the kernel drops it if the shim dies).
    lock: Option<NetworkLock>,
    lease: Option<PathBuf>,
    netns: bool,
    /// The options netavark set up, kept for the teardown (it needs the same).
    set_up: Option<serde_json::Value>,
    /// Host ports held open so nothing else takes them while the container publishes them.
    held: Vec<Reservation>,
    status: Option<NetworkStatus>,
}

impl Network {
    /// Leases an address, holds the host ports, makes the namespace and runs `netavark setup`.
    /// On error, what was done is undone before returning.
    pub fn setup(cfg: &NetworkConfig, name: &str) -> Result<Network, NetworkError> {
        let mut n = Network {
            cfg: cfg.clone(),
            name: name.to_owned(),
            lock: None,
            lease: None,
            netns: false,
            set_up: None,
            held: Vec::new(),
            status: None,
        };
        match n.setup_inner() {
            Ok(()) => Ok(n),
            Err(e) => {
                n.teardown();
                Err(e)
            }
        }
    }

    /// `<state>/containers/<name>.json`: the options netavark set up, until they are torn down.
    /// Found at start, it is what a shim killed before its clean-up left (SIGKILL, OOM, crash).
    fn record_path(&self) -> PathBuf {
        self.cfg
            .state_dir
            .join("containers")
            .join(format!("{}.json", self.name))
    }

    /// Tears down what a previous shim of this container set up and could not undo: its rules
    /// name ports this shim may not take again (ephemeral ones), so its own options are used.
    fn clean_stale(&self) {
        let path = self.record_path();
        let Some(old) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            return;
        };
        eprintln!(
            "berth-shim: network {}: tearing down what an earlier run of {} left",
            self.cfg.network.name, self.name
        );
        if let Err(e) = netavark::run(
            &self.cfg.netavark,
            &self.cfg.state_dir,
            "teardown",
            &self.cfg.netns,
            &old,
        ) {
            eprintln!(
                "berth-shim: cleanup: network {}: {e}",
                self.cfg.network.name
            );
        }
        remove_netns(&self.cfg.netns);
        let _ = std::fs::remove_file(&path);
    }

    fn setup_inner(&mut self) -> Result<(), NetworkError> {
        let lock = NetworkLock::acquire(&self.cfg.state_dir, &self.name).map_err(|source| {
            NetworkError::Io {
                what: "locking",
                path: berth_proto::netlock::lock_path(&self.cfg.state_dir, &self.name),
                source,
            }
        })?;
        self.lock = Some(lock);
        self.clean_stale();
        let net = &self.cfg.network;
        let (subnet, prefix_len) =
            berth_proto::network::parse_subnet(&net.subnet).map_err(|message| {
                NetworkError::Config {
                    network: net.name.clone(),
                    message,
                }
            })?;
        let gateway = Ipv4Addr::from(u32::from(subnet) + 1);
        let (address, lease) = lease(&self.cfg, &self.name, subnet, prefix_len)?;
        self.lease = Some(lease);
        let (held, ports) = ports::reserve(&self.name, &self.cfg.ports)?;
        self.held = held;
        make_netns(&self.cfg.netns)?;
        self.netns = true;
        let at = Attachment {
            address,
            gateway,
            prefix_len,
        };
        let opts = netavark::options(&self.name, net, at, &ports);
        // The record goes first: a shim killed inside `netavark setup` leaves rules and a veth
        // that only a teardown with these options removes (the next shim's or berthd's sweep).
        let record = self.record_path();
        record
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| berth_proto::fsutil::write_atomic(&record, opts.to_string().as_bytes()))
            .map_err(|source| NetworkError::Io {
                what: "writing",
                path: record,
                source,
            })?;
        self.set_up = Some(opts);
        let opts = self.set_up.as_ref().expect("just set");
        netavark::run(
            &self.cfg.netavark,
            &self.cfg.state_dir,
            "setup",
            &self.cfg.netns,
            opts,
        )
        .map_err(|source| NetworkError::Netavark {
            network: net.name.clone(),
            source,
        })?;
        self.status = Some(NetworkStatus {
            network: net.name.clone(),
            address,
            gateway,
            prefix_len,
            ports,
        });
        Ok(())
    }

    pub fn status(&self) -> Option<&NetworkStatus> {
        self.status.as_ref()
    }

    /// `netavark teardown`, the namespace unmounted and removed, the lease and the host ports
    /// released. Every step runs even when one before it failed; failures are logged.
    pub fn teardown(&mut self) {
        if let Some(opts) = self.set_up.take()
            && let Err(e) = netavark::run(
                &self.cfg.netavark,
                &self.cfg.state_dir,
                "teardown",
                &self.cfg.netns,
                &opts,
            )
        {
            eprintln!(
                "berth-shim: cleanup: network {}: {e}",
                self.cfg.network.name
            );
        }
        let _ = std::fs::remove_file(self.record_path());
        if std::mem::take(&mut self.netns) {
            remove_netns(&self.cfg.netns);
        }
        self.held.clear();
        if let Some(l) = self.lease.take()
            && let Err(e) = std::fs::remove_file(&l)
        {
            eprintln!("berth-shim: cleanup: removing lease {}: {e}", l.display());
        }
        self.status = None;
        if let Some(l) = self.lock.take() {
            l.remove();
        }
    }
}

/// The bundle's hosts file with the container's name on its address (replacing any line that
/// names it already: a shim restarted by systemd finds its own line).
pub fn hosts_with_address(hosts: &str, hostname: &str, address: Ipv4Addr) -> String {
    let mut out: String = hosts
        .lines()
        .filter(|l| !l.split_whitespace().skip(1).any(|n| n == hostname))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{address}\t{hostname}\n"));
    out
}

/// The addresses a container may get in `subnet/len`: after the gateway, before the broadcast.
pub fn hosts(subnet: Ipv4Addr, len: u8) -> impl Iterator<Item = Ipv4Addr> {
    let base = u32::from(subnet);
    let size = 1u32 << (32 - len);
    (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
}

/// Takes an address: a lease file `<state>/leases/<network>/<address>` holding the container's
/// name, created exclusively so two shims never get the same one. A lease already held by this
/// name (a shim that died before its clean-up) is taken again.
fn lease(
    cfg: &NetworkConfig,
    name: &str,
    subnet: Ipv4Addr,
    len: u8,
) -> Result<(Ipv4Addr, PathBuf), NetworkError> {
    let dir = cfg.state_dir.join("leases").join(&cfg.network.name);
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| NetworkError::Io { what, path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    for e in std::fs::read_dir(&dir)
        .map_err(io("reading", &dir))?
        .flatten()
    {
        if std::fs::read_to_string(e.path()).is_ok_and(|n| n == name)
            && let Some(a) = e.file_name().to_str().and_then(|s| s.parse().ok())
        {
            return Ok((a, e.path()));
        }
    }
    // The lease appears whole or not at all (a hard link of a file that already names the
    // container): a lease file is never seen empty, by another shim or by berthd's sweep.
    let draft = dir.join(format!(".{name}"));
    std::fs::write(&draft, name).map_err(io("writing lease", &draft))?;
    let taken = hosts(subnet, len).find_map(|a| {
        let p = dir.join(a.to_string());
        match std::fs::hard_link(&draft, &p) {
            Ok(()) => Some(Ok((a, p))),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => None,
            Err(e) => Some(Err(io("creating lease", &p)(e))),
        }
    });
    let _ = std::fs::remove_file(&draft);
    if let Some(t) = taken {
        return t;
    }
    Err(NetworkError::Exhausted {
        network: cfg.network.name.clone(),
        subnet: cfg.network.subnet.clone(),
    })
}

/// A new network namespace bind-mounted on `path`: the shim enters a fresh one, binds it and
/// returns to its own (it is single-threaded, so unshare applies to the whole process).
fn make_netns(path: &Path) -> Result<(), NetworkError> {
    let err = |step| {
        move |source| NetworkError::Netns {
            path: path.to_owned(),
            step,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("creating its directory")(io_errno(&e)))?;
    }
    // A shim killed before its clean-up left its namespace mounted: take it down first.
    while umount2(path, MntFlags::MNT_DETACH).is_ok() {}
    std::fs::write(path, b"").map_err(|e| err("creating the mount point")(io_errno(&e)))?;
    let own = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| err("opening the shim's namespace")(io_errno(&e)))?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(err("unshare"))?;
    let bound = mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    );
    setns(&own, CloneFlags::CLONE_NEWNET).map_err(err("returning to the shim's namespace"))?;
    bound.map_err(err("bind mount"))
}

fn remove_netns(path: &Path) {
    if let Err(e) = umount2(path, MntFlags::MNT_DETACH) {
        eprintln!("berth-shim: cleanup: unmounting {}: {e}", path.display());
    }
    let _ = std::fs::remove_file(path);
}

fn io_errno(e: &std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_skip_network_gateway_and_broadcast() {
        let h: Vec<_> = hosts("10.0.0.0".parse().unwrap(), 29).collect();
        assert_eq!(h.first().unwrap().to_string(), "10.0.0.2");
        assert_eq!(h.last().unwrap().to_string(), "10.0.0.6");
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn hosts_get_the_address_once() {
        let a = "10.0.0.2".parse().unwrap();
        let h = hosts_with_address("127.0.0.1\tlocalhost\n", "web", a);
        assert_eq!(h, "127.0.0.1\tlocalhost\n10.0.0.2\tweb\n");
        assert_eq!(hosts_with_address(&h, "web", a), h);
    }

    #[test]
    fn leases_are_exclusive_and_kept_by_name() {
        let d = tempfile::tempdir().unwrap();
        let cfg = NetworkConfig {
            netavark: "/bin/false".into(),
            state_dir: d.path().into(),
            netns: d.path().join("ns"),
            network: berth_proto::BridgeNetwork {
                name: "berth".into(),
                interface: "berth0".into(),
                subnet: "10.0.0.0/30".into(),
            },
            ports: vec![],
        };
        let net = "10.0.0.0".parse().unwrap();
        let (a, _) = lease(&cfg, "a", net, 30).unwrap();
        assert_eq!(a.to_string(), "10.0.0.2");
        // The same name again (a shim restarted after a crash) keeps its address.
        assert_eq!(lease(&cfg, "a", net, 30).unwrap().0, a);
        // A /30 has one container address: a second name gets a clear error.
        assert!(matches!(
            lease(&cfg, "b", net, 30),
            Err(NetworkError::Exhausted { .. })
        ));
    }

    #[test]
    fn racing_shims_never_share_an_address() {
        let d = tempfile::tempdir().unwrap();
        let cfg = NetworkConfig {
            netavark: "/bin/false".into(),
            state_dir: d.path().into(),
            netns: d.path().join("ns"),
            network: berth_proto::BridgeNetwork {
                name: "berth".into(),
                interface: "berth0".into(),
                subnet: "10.0.0.0/29".into(),
            },
            ports: vec![],
        };
        let net: Ipv4Addr = "10.0.0.0".parse().unwrap();
        // Twelve containers for five addresses, all at once.
        let got: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..12)
                .map(|i| {
                    let cfg = &cfg;
                    s.spawn(move || lease(cfg, &format!("c{i}"), net, 29).ok())
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        let mut addrs: Vec<_> = got.iter().map(|(a, _)| *a).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!((got.len(), addrs.len()), (5, 5), "{got:?}");
        for (_, p) in &got {
            assert!(!std::fs::read_to_string(p).unwrap().is_empty(), "{p:?}");
        }
        // No draft is left beside the leases.
        let dir = d.path().join("leases/berth");
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 5);
    }
}

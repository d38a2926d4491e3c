//! The container's bridge networks: an address lease on each, the published host ports held
//! open, a network namespace bind-mounted at the path config.json names, and netavark's set-up
//! of all of them in one call (interfaces `eth0`, `eth1`, ...).
//! berth-shim owns all of it so that a container started by systemd alone (`Restart=`, berthd
//! down) still gets its network, and tears it down on every exit path. Runs in berth-shim,
//! single-threaded, before the runtime creates the container.

mod netavark;
mod ports;

pub use netavark::{Attachment, NetavarkError};
pub use ports::{PortError, Reservation};

use berth_proto::netlock::NetworkLock;
use berth_proto::{AttachmentStatus, BridgeNetwork, NetworkConfig, NetworkStatus};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {network}: {message}")]
    Config { network: String, message: String },
    #[error("network {network}: no free address left in {subnet}")]
    Exhausted { network: String, subnet: String },
    #[error("network {network}: address {address} is already taken by container {holder}")]
    AddressTaken {
        network: String,
        address: IpAddr,
        holder: String,
    },
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
    #[error("networks {networks}: {source}")]
    Netavark {
        networks: String,
        #[source]
        source: NetavarkError,
    },
}

/// A set-up network; [`Network::teardown`] undoes what [`Network::setup`] did, in reverse.
#[derive(Debug)]
pub struct Network {
    cfg: NetworkConfig,
    name: String,
    /// Held from before the leases until the teardown is done: berthd's sweep leaves this
    /// container's network alone while it is held (and the kernel drops it if the shim dies).
    lock: Option<NetworkLock>,
    leases: Vec<PathBuf>,
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
            leases: Vec::new(),
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
            "berth-shim: networks {}: tearing down what an earlier run of {} left",
            self.names(),
            self.name
        );
        if let Err(e) = self.netavark("teardown", &old) {
            eprintln!("berth-shim: cleanup: networks {}: {e}", self.names());
        }
        remove_netns(&self.cfg.netns);
        let _ = std::fs::remove_file(&path);
    }

    /// The networks' names, for messages.
    fn names(&self) -> String {
        let n: Vec<&str> = self
            .cfg
            .networks
            .iter()
            .map(|a| a.network.name.as_str())
            .collect();
        n.join(", ")
    }

    fn netavark(&self, verb: &'static str, opts: &serde_json::Value) -> Result<(), NetavarkError> {
        netavark::run(
            &self.cfg.netavark,
            self.cfg.aardvark.as_deref(),
            &self.cfg.state_dir,
            verb,
            &self.cfg.netns,
            opts,
        )
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
        let mut joined = Vec::new();
        for a in &self.cfg.networks {
            let net = &a.network;
            let (subnet, prefix_len) =
                berth_proto::network::parse_subnet(&net.subnet).map_err(|message| {
                    NetworkError::Config {
                        network: net.name.clone(),
                        message,
                    }
                })?;
            let (address, held) = lease(
                &self.cfg.state_dir,
                net,
                &self.name,
                hosts(subnet, prefix_len, net.gateway),
                a.ipv4_address,
            )?;
            self.leases.push(held);
            let v6 = match &net.ipv6_subnet {
                Some(s) => {
                    let (sub6, len6) =
                        berth_proto::network::parse_subnet6(s).map_err(|message| {
                            NetworkError::Config {
                                network: net.name.clone(),
                                message,
                            }
                        })?;
                    let (a6, l6) = lease(
                        &self.cfg.state_dir,
                        net,
                        &self.name,
                        hosts6(sub6, len6),
                        None,
                    )?;
                    self.leases.push(l6);
                    Some((a6, len6))
                }
                None => None,
            };
            joined.push((
                a,
                Attachment {
                    address,
                    prefix_len,
                    v6,
                },
            ));
        }
        let (held, ports) = ports::reserve(&self.name, &self.cfg.ports)?;
        self.held = held;
        make_netns(&self.cfg.netns)?;
        self.netns = true;
        // An empty id: shim.json of the earlier form, whose shims used the name.
        let id = match self.cfg.container_id.as_str() {
            "" => self.name.as_str(),
            id => id,
        };
        let opts = netavark::options(&self.name, id, &joined, &ports);
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
        self.netavark("setup", opts)
            .map_err(|source| NetworkError::Netavark {
                networks: self.names(),
                source,
            })?;
        self.status = Some(NetworkStatus {
            networks: joined
                .iter()
                .enumerate()
                .map(|(i, (a, at))| AttachmentStatus {
                    network: a.network.name.clone(),
                    interface: format!("eth{i}"),
                    address: at.address,
                    gateway: a.network.gateway,
                    prefix_len: at.prefix_len,
                    address6: at.v6.map(|(a, _)| a),
                    aliases: a.aliases.clone(),
                    definition: a.network.clone(),
                })
                .collect(),
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
            && let Err(e) = self.netavark("teardown", &opts)
        {
            eprintln!("berth-shim: cleanup: networks {}: {e}", self.names());
        }
        let _ = std::fs::remove_file(self.record_path());
        if std::mem::take(&mut self.netns) {
            remove_netns(&self.cfg.netns);
        }
        self.held.clear();
        for l in std::mem::take(&mut self.leases) {
            if let Err(e) = std::fs::remove_file(&l) {
                eprintln!("berth-shim: cleanup: removing lease {}: {e}", l.display());
            }
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

/// The addresses a container may get in `subnet/len`: its host addresses but the gateway.
pub fn hosts(
    subnet: Ipv4Addr,
    len: u8,
    gateway: Ipv4Addr,
) -> impl Iterator<Item = Ipv4Addr> + Clone {
    let base = u32::from(subnet);
    let size = 1u32 << (32 - len);
    (1..size - 1)
        .map(move |i| Ipv4Addr::from(base + i))
        .filter(move |a| *a != gateway)
}

/// The IPv6 addresses a container may get in `subnet/len`: after the gateway (the first), at
/// most 2^20 of them tried.
pub fn hosts6(subnet: Ipv6Addr, len: u8) -> impl Iterator<Item = Ipv6Addr> + Clone {
    let base = u128::from(subnet);
    let size = 1u128 << (128 - len);
    (2..size - 1)
        .take(1 << 20)
        .map(move |i| Ipv6Addr::from(base + i))
}

/// Takes an address: a lease file `<state>/leases/<network>/<address>` holding the container's
/// name, created exclusively so two shims never get the same one. A lease already held by this
/// name (a shim that died before its clean-up) is taken again; a `fixed` address takes exactly
/// its lease (held by another container: an error), and drops any other of this name.
fn lease<A, I>(
    state_dir: &Path,
    net: &BridgeNetwork,
    name: &str,
    candidates: I,
    fixed: Option<A>,
) -> Result<(A, PathBuf), NetworkError>
where
    A: Copy + Eq + std::fmt::Display + std::str::FromStr + Into<IpAddr>,
    I: Iterator<Item = A> + Clone + 'static,
{
    let dir = state_dir.join("leases").join(&net.name);
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
            if fixed.is_none_or(|f| f == a) {
                return Ok((a, e.path()));
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
    let candidates: Box<dyn Iterator<Item = A>> = match fixed {
        Some(f) if candidates.clone().any(|h| h == f) => Box::new(std::iter::once(f)),
        Some(f) => {
            return Err(NetworkError::Config {
                network: net.name.clone(),
                message: format!("address {f} is not a container address of {}", net.subnet),
            });
        }
        None => Box::new(candidates),
    };
    // The lease appears whole or not at all (a hard link of a file that already names the
    // container): a lease file is never seen empty, by another shim or by berthd's sweep.
    let draft = dir.join(format!(".{name}"));
    std::fs::write(&draft, name).map_err(io("writing lease", &draft))?;
    let mut taken = None;
    for a in candidates {
        let p = dir.join(a.to_string());
        let r = match std::fs::hard_link(&draft, &p) {
            Ok(()) => Ok((a, p)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && fixed.is_some() => {
                Err(NetworkError::AddressTaken {
                    network: net.name.clone(),
                    address: a.into(),
                    holder: std::fs::read_to_string(&p).unwrap_or_default(),
                })
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => Err(io("creating lease", &p)(e)),
        };
        taken = Some(r);
        break;
    }
    let _ = std::fs::remove_file(&draft);
    if let Some(t) = taken {
        return t;
    }
    Err(NetworkError::Exhausted {
        network: net.name.clone(),
        subnet: net.subnet.clone(),
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
        let h: Vec<_> =
            hosts("10.0.0.0".parse().unwrap(), 29, "10.0.0.1".parse().unwrap()).collect();
        assert_eq!(h.first().unwrap().to_string(), "10.0.0.2");
        assert_eq!(h.last().unwrap().to_string(), "10.0.0.6");
        assert_eq!(h.len(), 5);
        // A gateway elsewhere frees the first address and takes its own.
        let h: Vec<_> =
            hosts("10.0.0.0".parse().unwrap(), 29, "10.0.0.6".parse().unwrap()).collect();
        assert_eq!(h.first().unwrap().to_string(), "10.0.0.1");
        assert_eq!(h.last().unwrap().to_string(), "10.0.0.5");
    }

    #[test]
    fn hosts_get_the_address_once() {
        let a = "10.0.0.2".parse().unwrap();
        let h = hosts_with_address("127.0.0.1\tlocalhost\n", "web", a);
        assert_eq!(h, "127.0.0.1\tlocalhost\n10.0.0.2\tweb\n");
        assert_eq!(hosts_with_address(&h, "web", a), h);
    }

    /// A network with five container addresses (10.0.0.2 to .6; .1 is the gateway).
    fn net29() -> BridgeNetwork {
        BridgeNetwork {
            name: "berth".into(),
            id: "0".repeat(64),
            interface: "berth0".into(),
            subnet: "10.0.0.0/29".into(),
            gateway: "10.0.0.1".parse().unwrap(),
            internal: false,
            dns: false,
            isolate: false,
            ipv6_subnet: None,
        }
    }

    fn hosts29() -> impl Iterator<Item = Ipv4Addr> + Clone {
        hosts("10.0.0.0".parse().unwrap(), 29, "10.0.0.1".parse().unwrap())
    }

    #[test]
    fn leases_are_exclusive_and_kept_by_name() {
        let d = tempfile::tempdir().unwrap();
        let (net, hs) = (net29(), hosts29);
        let take = |n: &str, f: Option<&str>| {
            lease(
                d.path(),
                &net,
                n,
                hs(),
                f.map(|f| f.parse::<Ipv4Addr>().unwrap()),
            )
        };
        let (a, _) = take("a", None).unwrap();
        assert_eq!(a.to_string(), "10.0.0.2");
        // The same name again (a shim restarted after a crash) keeps its address.
        assert_eq!(take("a", None).unwrap().0, a);
        // A fixed address takes exactly its lease; another container's is a clear error.
        assert_eq!(
            take("b", Some("10.0.0.5")).unwrap().0.to_string(),
            "10.0.0.5"
        );
        assert!(matches!(
            take("c", Some("10.0.0.5")),
            Err(NetworkError::AddressTaken { holder, .. }) if holder == "b"
        ));
        assert!(matches!(
            take("c", Some("10.0.0.1")),
            Err(NetworkError::Config { .. })
        ));
        // `a` given a fixed address later drops its old lease.
        assert_eq!(
            take("a", Some("10.0.0.6")).unwrap().0.to_string(),
            "10.0.0.6"
        );
        assert!(!d.path().join("leases/berth/10.0.0.2").exists());
        for n in ["c", "d", "e"] {
            take(n, None).unwrap();
        }
        // A /29 has five container addresses: a sixth name gets a clear error.
        assert!(matches!(
            take("f", None),
            Err(NetworkError::Exhausted { .. })
        ));
    }

    #[test]
    fn racing_shims_never_share_an_address() {
        let d = tempfile::tempdir().unwrap();
        let (net, hs) = (net29(), hosts29);
        // Twelve containers for five addresses, all at once.
        let got: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..12)
                .map(|i| {
                    let (net, dir) = (&net, d.path());
                    s.spawn(move || lease(dir, net, &format!("c{i}"), hs(), None::<Ipv4Addr>).ok())
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

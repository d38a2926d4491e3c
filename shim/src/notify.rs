//! sd_notify(3) for the shim: tells systemd the unit is ready (READY=1) or what it is doing
//! (STATUS=). Runs in berth-shim. The container never inherits the shim's environment (its own
//! comes from config.json, and the runtime strips `NOTIFY_SOCKET` unless told to keep it).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

#[derive(Debug, Default, Clone)]
pub struct Notifier {
    addr: Option<String>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` from the environment.
    pub fn from_env() -> Self {
        Notifier {
            addr: std::env::var("NOTIFY_SOCKET").ok(),
        }
    }

    /// The socket address systemd gave us, if any.
    pub fn socket(&self) -> Option<&str> {
        self.addr.as_deref()
    }

    /// Sends `state` (newline-separated `KEY=VALUE`), best effort: a shim run by hand has no socket.
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        let Some(a) = &self.addr else { return Ok(()) };
        let sock = UnixDatagram::unbound()?;
        let addr = if let Some(name) = a.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else {
            SocketAddr::from_pathname(a)?
        };
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    }
}

//! Typed D-Bus proxies (zbus-generated) for the parts of `org.freedesktop.systemd1` berthd uses:
//! the Manager's methods and signals, and the Unit and Service properties a status is made of.
//! Runs in berthd.
//!
//! On systemd's private socket (peer to peer) zbus' own signal streams cannot be used: they resolve
//! the sender's owner with `GetNameOwner`, which there is no bus daemon to answer. Signals are
//! therefore received through plain match-rule streams and decoded with the generated signal types
//! ([`JobRemoved`], [`UnitRemoved`], [`Reloading`]); method calls and properties work unchanged.

use super::{ActiveState, UnitStatus};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, Value};

/// One row of `ListUnitsByPatterns`: name, description, load, active and sub state, followed unit,
/// object path, job id, type and path.
pub(crate) type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
pub(crate) trait Manager {
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;

    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn kill_unit(&self, name: &str, whom: &str, signal: i32) -> zbus::Result<()>;

    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<UnitRow>>;

    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn freeze_unit(&self, name: &str) -> zbus::Result<()>;
    fn thaw_unit(&self, name: &str) -> zbus::Result<()>;

    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    fn unit_removed(&self, unit: &str, path: zbus::zvariant::ObjectPath<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    fn reloading(&self, active: bool) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
pub(crate) trait Unit {
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property, name = "InvocationID")]
    fn invocation_id(&self) -> zbus::Result<Vec<u8>>;
    #[zbus(property)]
    fn freezer_state(&self) -> zbus::Result<String>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
pub(crate) trait Service {
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn exec_main_code(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn control_group(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn environment(&self) -> zbus::Result<Vec<String>>;
}

/// The Manager on `conn`. Nothing is cached: berthd reads state when it decides.
pub(crate) async fn manager(conn: &zbus::Connection) -> zbus::Result<ManagerProxy<'static>> {
    ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
}

/// The status of the unit at `path`, its properties read at once (one round trip's latency; far
/// smaller replies than `GetAll`, which carries every cgroup setting of the unit).
pub(crate) async fn unit_status(
    conn: &zbus::Connection,
    name: &str,
    path: &OwnedObjectPath,
) -> zbus::Result<UnitStatus> {
    let unit = UnitProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let service = ServiceProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let (
        (active_state, sub_state, load_state, invocation_id, freezer_state),
        (
            result,
            main_pid,
            exec_main_code,
            exec_main_status,
            n_restarts,
            control_group,
            environment,
        ),
    ) = futures_util::try_join!(
        async {
            futures_util::try_join!(
                unit.active_state(),
                unit.sub_state(),
                unit.load_state(),
                unit.invocation_id(),
                unit.freezer_state(),
            )
        },
        async {
            futures_util::try_join!(
                service.result(),
                service.main_pid(),
                service.exec_main_code(),
                service.exec_main_status(),
                service.n_restarts(),
                service.control_group(),
                service.environment(),
            )
        },
    )?;
    Ok(UnitStatus {
        name: name.to_owned(),
        active_state: ActiveState::parse(&active_state),
        sub_state,
        load_state,
        result,
        main_pid,
        exec_main_code,
        exec_main_status,
        n_restarts,
        control_group,
        environment,
        invocation_id: invocation_id.iter().map(|x| format!("{x:02x}")).collect(),
        freezer_state,
    })
}

//! Drives berth's systemd client over systemd's private socket (peer to peer, no bus daemon):
//! `sd-private-client SOCKET NAME ARGV...` starts `berth-NAME.service` running ARGV (which must
//! send READY=1 from its main process: the unit is Type=notify), prints its status, stops it and
//! prints what the event stream saw, one `key value…` line per step. systemd only serves peers of
//! its own PID namespace there, so tests run this inside one (tests/tests/systemd_client.rs).

use anyhow::{Context, Result, bail};
use berth_agent::systemd::{BusTarget, Systemd, UnitEvent, UnitSpec};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [socket, name, argv @ ..] = args.as_slice() else {
        bail!("usage: sd-private-client SOCKET NAME ARGV...");
    };
    let sd = Systemd::connect(BusTarget::Private(socket.into())).await?;
    println!("connected");
    let mut events = sd.events();
    let first = tokio::time::timeout(Duration::from_secs(10), events.next()).await?;
    println!("first-event {first:?}");
    let unit = format!("berth-{name}.service");
    sd.start_unit(&UnitSpec::new(name, "example/none:1", argv.to_vec()))
        .await?;
    let st = sd.status(&unit).await?.context("started unit not loaded")?;
    println!(
        "started {} {} {}",
        st.active_state, st.sub_state, st.main_pid
    );
    let listed = sd.list_units().await?.iter().any(|u| u.name == unit);
    println!("listed {listed}");
    sd.stop_unit(&unit, Duration::from_secs(10)).await?;
    let after = sd.status(&unit).await?.map(|s| s.active_state);
    println!("stopped {}", after.map_or("gone", |a| a.as_str()));
    // The state changes of the unit, as the event stream delivered them.
    let mut states = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {
        if let UnitEvent::Changed {
            unit: u,
            active_state: Some(s),
            ..
        } = e
            && u == unit
        {
            states.push(s.as_str());
        }
    }
    println!("events {}", states.join(","));
    Ok(())
}

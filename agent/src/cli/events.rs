//! `berth events`: what changed about containers, images and networks, from berthd's event bus
//! (the one the Docker API's `GET /events` reads). Runs in the `berth` process, through
//! berthd's API; `--follow` asks again every half second for what came since.

use super::containers::{Global, api_exit, call};
use crate::api::Request;
use crate::events::Event;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Recent events (berthd keeps the last 1024), then, with --follow, new ones as they come.
    Events {
        /// Only events of the last SECONDS.
        #[arg(long, value_name = "SECONDS")]
        since: Option<u64>,
        /// Keep printing new events until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
}

/// One line: time, type, action, object and attributes.
pub fn line(e: &Event) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(e.time_nano)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let attrs: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{t} {} {} {} ({})",
        e.kind.as_str(),
        e.action,
        e.id,
        attrs.join(", ")
    )
}

pub async fn run(c: EventsCommand, g: Global) -> ExitCode {
    let EventsCommand::Events { since, follow } = c;
    let mut after = since.map(|s| {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        now - (s as i64).saturating_mul(1_000_000_000)
    });
    loop {
        let v = match call(&g, Request::Events { since: after }).await {
            Ok(v) => v,
            Err(e) => return api_exit(&e),
        };
        let events: Vec<Event> = serde_json::from_value(v).unwrap_or_default();
        for e in &events {
            if g.json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!("{}", line(e));
            }
            after = Some(e.time_nano);
        }
        if !follow {
            return ExitCode::SUCCESS;
        }
        if after.is_none() {
            after = Some(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

//! `berth network ls|inspect`: the named networks and the default one as berthd sees them
//! (definition, source file, containers with their addresses, problems). Runs in the `berth`
//! process, through berthd's API.

use super::containers::{Global, call};
use crate::api::Request;
use crate::network::report::NetworkReport;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// Networks: subnet, bridge, DNS, containers, problems.
    #[command(subcommand)]
    Network(NetworkSub),
}

#[derive(Debug, clap::Subcommand)]
pub enum NetworkSub {
    /// Every network.
    Ls,
    /// One network in full.
    Inspect { name: String },
}

pub async fn run(c: NetworkCommand, g: Global) -> ExitCode {
    let NetworkCommand::Network(sub) = c;
    let req = match &sub {
        NetworkSub::Ls => Request::Networks,
        NetworkSub::Inspect { name } => Request::Network { name: name.clone() },
    };
    let v = match call(&g, req).await {
        Ok(v) => v,
        Err(e) => return super::containers::api_exit(&e),
    };
    if g.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    match sub {
        NetworkSub::Ls => {
            let rows: Vec<NetworkReport> = serde_json::from_value(v).unwrap_or_default();
            println!(
                "{:<20} {:<18} {:<16} {:<5} {:<8} {:<24} PROBLEMS",
                "NAME", "SUBNET", "BRIDGE", "DNS", "INTERNAL", "CONTAINERS"
            );
            for r in rows {
                let opt = |o: Option<bool>| o.map_or("-".into(), |b| b.to_string());
                let members: Vec<String> = r
                    .containers
                    .iter()
                    .map(|m| format!("{}={}", m.container, m.address))
                    .collect();
                println!(
                    "{:<20} {:<18} {:<16} {:<5} {:<8} {:<24} {}",
                    r.name,
                    r.subnet.as_deref().unwrap_or("-"),
                    r.interface.as_deref().unwrap_or("-"),
                    opt(r.dns),
                    opt(r.internal),
                    if members.is_empty() {
                        "-".into()
                    } else {
                        members.join(",")
                    },
                    r.problems.join("; ")
                );
            }
        }
        NetworkSub::Inspect { .. } => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    ExitCode::SUCCESS
}

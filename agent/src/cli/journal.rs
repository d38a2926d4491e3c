//! The container's journal as the CLI reads it: `journalctl` on the right journal (berthd's
//! `journal_dir` when set), and the lines journald's rate limit dropped. Runs in `berth`.

use super::containers::Global;
use crate::api::Request;
use std::path::PathBuf;
use std::process::Command;

/// journald's `SD_MESSAGE_JOURNAL_DROPPED`: "Suppressed N messages from UNIT", with the count in
/// `N_DROPPED` and the unit and its invocation in `OBJECT_SYSTEMD_*`.
const DROPPED_MESSAGE_ID: &str = "a596d6fe7bfa4994828e72309e95d61e";

/// `journalctl` reading the journal berthd's containers write to.
pub async fn journalctl(g: &Global) -> Command {
    let journal_dir = match super::containers::call(g, Request::Info).await {
        Ok(v) => v["journal_dir"].as_str().map(PathBuf::from),
        Err(_) => super::containers::load_config(g).journal_dir,
    };
    let mut cmd = Command::new("journalctl");
    if let Some(d) = journal_dir {
        cmd.arg("-D").arg(d);
    }
    cmd.arg("--no-pager");
    cmd
}

/// Lines journald dropped from `unit` during its invocation `invocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub lines: u64,
}

/// Sums journald's drop reports (`journalctl -o json` lines) for one invocation of a unit.
pub fn dropped(json_lines: &str, invocation: &str) -> Option<Dropped> {
    let mut total: Option<Dropped> = None;
    for line in json_lines.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["MESSAGE_ID"] != DROPPED_MESSAGE_ID
            || v["OBJECT_SYSTEMD_INVOCATION_ID"].as_str() != Some(invocation)
        {
            continue;
        }
        if let Some(n) = v["N_DROPPED"].as_str().and_then(|s| s.parse::<u64>().ok()) {
            total.get_or_insert(Dropped { lines: 0 }).lines += n;
        }
    }
    total
}

/// What journald dropped from the container's current run, when it can be read.
pub async fn dropped_from(g: &Global, unit: &str, invocation: &str) -> Option<Dropped> {
    if invocation.is_empty() {
        return None;
    }
    let mut cmd = journalctl(g).await;
    cmd.args(["-o", "json"])
        .arg(format!("MESSAGE_ID={DROPPED_MESSAGE_ID}"))
        .arg(format!("OBJECT_SYSTEMD_UNIT={unit}"));
    let out = cmd.output().ok()?;
    dropped(&String::from_utf8_lossy(&out.stdout), invocation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_of_this_invocation_are_summed() {
        let entry = |inv: &str, n: &str| {
            serde_json::json!({
                "MESSAGE_ID": DROPPED_MESSAGE_ID,
                "OBJECT_SYSTEMD_UNIT": "berth-web.service",
                "OBJECT_SYSTEMD_INVOCATION_ID": inv,
                "N_DROPPED": n,
                "MESSAGE": format!("Suppressed {n} messages from berth-web.service"),
            })
            .to_string()
        };
        let text = [
            entry("aa", "16500"),
            entry("bb", "7"),
            "not json".into(),
            entry("aa", "500"),
        ]
        .join("\n");
        assert_eq!(dropped(&text, "aa"), Some(Dropped { lines: 17000 }));
        assert_eq!(dropped(&text, "cc"), None);
        assert_eq!(dropped("", "aa"), None);
    }
}

//! A unit's `ActiveState` as one type: parsed here from systemd's strings (unit properties, list
//! rows, change signals), read by reconcile and the CLI. Pure; runs in berthd and `berth`.

use serde::{Deserialize, Serialize};

/// systemd's high-level unit state (`org.freedesktop.systemd1.Unit.ActiveState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Active,
    Reloading,
    #[default]
    Inactive,
    Failed,
    /// Starting, or waiting for its `Restart=` (sub-state `auto-restart`).
    Activating,
    Deactivating,
    /// A `systemctl clean` runs on it.
    Maintenance,
    /// Its mounts or resources are being refreshed (systemd ≥ 248).
    Refreshing,
    /// A state this berth does not know (a newer systemd); shown, never acted on as running.
    #[serde(other)]
    Unknown,
}

impl ActiveState {
    const ALL: [ActiveState; 8] = [
        ActiveState::Active,
        ActiveState::Reloading,
        ActiveState::Inactive,
        ActiveState::Failed,
        ActiveState::Activating,
        ActiveState::Deactivating,
        ActiveState::Maintenance,
        ActiveState::Refreshing,
    ];

    /// systemd's spelling; [`ActiveState::Unknown`] for anything else.
    pub fn parse(s: &str) -> ActiveState {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .unwrap_or(ActiveState::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ActiveState::Active => "active",
            ActiveState::Reloading => "reloading",
            ActiveState::Inactive => "inactive",
            ActiveState::Failed => "failed",
            ActiveState::Activating => "activating",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Maintenance => "maintenance",
            ActiveState::Refreshing => "refreshing",
            ActiveState::Unknown => "unknown",
        }
    }

    /// The main process runs and has reported ready (for `Type=notify`: READY=1 was sent).
    pub fn is_up(self) -> bool {
        matches!(
            self,
            ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing
        )
    }

    /// The unit holds nothing that keeps its name (`inactive` or `failed`): a new transient unit
    /// of the same name may be started after a `ResetFailedUnit`.
    pub fn is_down(self) -> bool {
        matches!(self, ActiveState::Inactive | ActiveState::Failed)
    }
}

impl std::fmt::Display for ActiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ActiveState {
    fn from(s: &str) -> Self {
        ActiveState::parse(s)
    }
}

/// Compares with systemd's spelling (`systemctl show -p ActiveState` output in tests).
impl PartialEq<str> for ActiveState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ActiveState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_systemd_state_and_back() {
        for s in [
            "active",
            "reloading",
            "inactive",
            "failed",
            "activating",
            "deactivating",
            "maintenance",
            "refreshing",
        ] {
            let a = ActiveState::parse(s);
            assert_ne!(a, ActiveState::Unknown, "{s}");
            assert_eq!(a.as_str(), s);
            assert_eq!(serde_json::to_value(a).unwrap(), s);
            assert_eq!(serde_json::from_value::<ActiveState>(s.into()).unwrap(), a);
        }
        assert_eq!(ActiveState::parse(""), ActiveState::Unknown);
        assert_eq!(ActiveState::parse("Active"), ActiveState::Unknown);
        assert_eq!(
            serde_json::from_value::<ActiveState>("frobnicating".into()).unwrap(),
            ActiveState::Unknown
        );
    }

    #[test]
    fn up_and_down() {
        let up: Vec<_> = ActiveState::ALL.into_iter().filter(|a| a.is_up()).collect();
        assert_eq!(
            up,
            [
                ActiveState::Active,
                ActiveState::Reloading,
                ActiveState::Refreshing
            ]
        );
        let down: Vec<_> = ActiveState::ALL
            .into_iter()
            .filter(|a| a.is_down())
            .collect();
        assert_eq!(down, [ActiveState::Inactive, ActiveState::Failed]);
        assert!(!ActiveState::Unknown.is_up() && !ActiveState::Unknown.is_down());
    }
}

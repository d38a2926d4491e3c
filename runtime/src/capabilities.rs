//! Capabilities of the container's process (its init or an exec'd process, run there): the
//! bounding set is cut first, while the process is still root; effective, permitted and
//! inheritable are set after the user switch; ambient last.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::LinuxCapabilities;

/// Errors of capability handling.
#[derive(Debug, thiserror::Error)]
#[error("capabilities: {what}: {source}")]
pub struct CapsError {
    what: String,
    source: caps::errors::CapsError,
}

fn err(what: impl Into<String>) -> impl FnOnce(caps::errors::CapsError) -> CapsError {
    let what = what.into();
    move |source| CapsError { what, source }
}

/// Parses capability names (`CAP_NET_BIND_SERVICE`); names this build does not know are
/// skipped, as runc does (a newer profile on an older kernel).
pub fn parse<'a>(names: impl IntoIterator<Item = &'a String>) -> CapsHashSet {
    names
        .into_iter()
        .filter_map(|n| Capability::from_str(n).ok())
        .collect()
}

fn set_of(c: &LinuxCapabilities, which: CapSet) -> CapsHashSet {
    let s = match which {
        CapSet::Bounding => c.bounding(),
        CapSet::Effective => c.effective(),
        CapSet::Permitted => c.permitted(),
        CapSet::Inheritable => c.inheritable(),
        CapSet::Ambient => c.ambient(),
    };
    s.as_ref()
        .map(|set| {
            set.iter()
                .filter_map(|cap| serde_json::to_value(cap).ok())
                .filter_map(|v| v.as_str().and_then(|n| Capability::from_str(n).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Drops from the bounding set every capability the spec does not list. Must run before the
/// user switch (it needs CAP_SETPCAP).
pub fn apply_bounding(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let keep = set_of(c, CapSet::Bounding);
    let supported: HashSet<Capability> =
        caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    for cap in supported {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(err(format!("dropping {cap} from bounding")))?;
        }
    }
    Ok(())
}

/// The ambient capabilities of `c` the kernel will not raise, because they are not both
/// permitted and inheritable, in name order. `runc spec` writes ambient caps without an
/// inheritable set and runc goes on without them, so configs made for runc must keep working
/// here: [`apply_sets`] skips them and the runtime process warns about them ([`warn_unraisable`]),
/// so that the warning reaches its log rather than the container's stderr.
pub fn unraisable_ambient(c: &LinuxCapabilities) -> Vec<Capability> {
    if c.ambient().as_ref().is_none_or(|a| a.is_empty()) {
        return Vec::new();
    }
    let (perm, inh) = (set_of(c, CapSet::Permitted), set_of(c, CapSet::Inheritable));
    let mut out: Vec<Capability> = set_of(c, CapSet::Ambient)
        .into_iter()
        .filter(|cap| !(perm.contains(cap) && inh.contains(cap)))
        .collect();
    out.sort_by_key(|c| c.to_string());
    out
}

/// Warns (runtime process) about each ambient capability of `c` the container's process will
/// not get, see [`unraisable_ambient`].
pub fn warn_unraisable(c: Option<&LinuxCapabilities>) {
    for cap in c.map(unraisable_ambient).unwrap_or_default() {
        crate::warn!(
            "can't raise ambient capability {cap}: not in the permitted and inheritable sets"
        );
    }
}

/// Sets the effective, permitted, inheritable and ambient sets (after the user switch).
pub fn apply_sets(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let eff = set_of(c, CapSet::Effective);
    let perm = set_of(c, CapSet::Permitted);
    // Order matters: the kernel wants effective within permitted at every step.
    let cur_perm = caps::read(None, CapSet::Permitted).map_err(err("reading permitted"))?;
    let eff_now: CapsHashSet = eff.intersection(&cur_perm).copied().collect();
    caps::set(None, CapSet::Effective, &eff_now).map_err(err("setting effective"))?;
    caps::set(None, CapSet::Inheritable, &set_of(c, CapSet::Inheritable))
        .map_err(err("setting inheritable"))?;
    caps::set(None, CapSet::Permitted, &perm).map_err(err("setting permitted"))?;
    caps::set(None, CapSet::Effective, &eff).map_err(err("setting effective"))?;
    let amb = set_of(c, CapSet::Ambient);
    if !amb.is_empty() {
        caps::clear(None, CapSet::Ambient).map_err(err("clearing ambient"))?;
        // The kernel only lets a capability be ambient if it is also permitted and inheritable;
        // the others are skipped (the runtime warned: see `unraisable_ambient`).
        let skip = unraisable_ambient(c);
        for cap in amb {
            if skip.contains(&cap) {
                continue;
            }
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(err(format!("raising ambient {cap}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Capability as Cap, LinuxCapabilitiesBuilder};

    #[test]
    fn ambient_needs_permitted_and_inheritable() {
        let set = |c: &[Cap]| {
            c.iter()
                .copied()
                .collect::<oci_spec::runtime::Capabilities>()
        };
        // What `runc spec` writes: ambient without inheritable.
        let c = LinuxCapabilitiesBuilder::default()
            .permitted(set(&[Cap::Kill, Cap::NetBindService]))
            .ambient(set(&[Cap::NetBindService, Cap::Kill, Cap::AuditWrite]))
            .inheritable(set(&[Cap::Kill, Cap::AuditWrite]))
            .build()
            .unwrap();
        assert_eq!(
            unraisable_ambient(&c),
            vec![
                Capability::CAP_AUDIT_WRITE,
                Capability::CAP_NET_BIND_SERVICE
            ]
        );
        let none = LinuxCapabilitiesBuilder::default().build().unwrap();
        assert_eq!(unraisable_ambient(&none), Vec::<Capability>::new());
    }
}

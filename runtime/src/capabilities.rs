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
        // The kernel only lets a capability be ambient if it is also permitted and inheritable.
        // `runc spec` writes ambient caps without an inheritable set and runc only warns, so
        // configs made for runc must keep working here: skip those with the same warning.
        let inh = set_of(c, CapSet::Inheritable);
        for cap in amb {
            if !(perm.contains(&cap) && inh.contains(&cap)) {
                eprintln!(
                    "berth-runtime: warning: can't raise ambient capability {cap}: \
                     not in the permitted and inheritable sets"
                );
                continue;
            }
            caps::raise(None, CapSet::Ambient, cap)
                .map_err(err(format!("raising ambient {cap}")))?;
        }
    }
    Ok(())
}

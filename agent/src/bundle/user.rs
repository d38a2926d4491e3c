//! The uid, gid and supplementary groups of a container's `user[:group]`, looked up in the
//! image's /etc/passwd and /etc/group when names are used. Runs in berthd, when the bundle is made.

use super::BundleError;
use std::path::PathBuf;

/// uid, gid and supplementary groups of `user[:group]`, looked up in the image's files when names are used.
pub fn resolve_user(
    name: &str,
    user: &str,
    lower: &[PathBuf],
) -> Result<(u32, u32, Vec<u32>), BundleError> {
    if user.is_empty() {
        return Ok((0, 0, vec![]));
    }
    let read = |f: &str| -> String {
        lower
            .iter()
            .map(|l| l.join(f.trim_start_matches('/')))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let passwd = read("/etc/passwd");
    let group = read("/etc/group");
    let (u, g) = user
        .split_once(':')
        .map(|(u, g)| (u, Some(g)))
        .unwrap_or((user, None));
    // passwd: name:x:uid:gid:…
    let pw = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let uid: u32 =
        match u.parse() {
            Ok(n) => n,
            Err(_) => pw.as_ref().and_then(|f| f[2].parse().ok()).ok_or_else(|| {
                BundleError::UnknownUser {
                    name: name.into(),
                    user: u.into(),
                    file: "/etc/passwd",
                }
            })?,
        };
    let gid: u32 = match g {
        Some(g) => match g.parse() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| BundleError::UnknownUser {
                    name: name.into(),
                    user: g.into(),
                    file: "/etc/group",
                })?,
        },
        None => pw.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let uname = pw.as_ref().map(|f| f[0]).unwrap_or(u);
    let mut extra: Vec<u32> = if g.is_some() {
        vec![]
    } else {
        group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == uname))
            .filter_map(|f| f[2].parse().ok())
            .filter(|&x| x != gid)
            .collect()
    };
    extra.sort_unstable();
    extra.dedup();
    Ok((uid, gid, extra))
}

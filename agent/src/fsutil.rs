//! Crash-safe file writes for berthd's store, records and bundles: the one implementation lives
//! in the proto crate (the shim writes `exit.json` with it too), run off the async workers; and the
//! clean-up of the temp files a writer killed mid-write leaves (berthd at start, `berth fsck`).
//! Runs in berthd and the CLI.

use std::path::{Path, PathBuf};

/// [`berth_proto::fsutil::write_atomic`], off the async workers: its two fsyncs take tens of ms
/// on a busy disk and seconds when the filesystem's journal commits others' writes, and each
/// container start makes several. On a worker that stalled every other task (the API answered
/// `ps` after 3 s while 60 containers started on a 2-core machine).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    off_worker(|| berth_proto::fsutil::write_atomic(path, data))
}

/// Runs blocking `f` so that the runtime's other tasks move to another thread meanwhile
/// (`block_in_place`); directly outside a multi-threaded runtime (where that would panic).
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The PID of the process writing temp file `name`: `.tmp-<file>-<pid>-<seq>` as
/// [`write_atomic`] names them, and the store's `.tmp-<chain>-<pid>-<seq>` and
/// `import-<digest>-<pid>-<seq>`.
pub fn temp_writer(name: &str) -> Option<i32> {
    let mut it = name.rsplitn(3, '-');
    let _seq: u64 = it.next()?.parse().ok()?;
    let pid = it.next()?.parse().ok()?;
    it.next()?;
    Some(pid)
}

/// Whether temp file `name` was left by a process that is gone (or in no format berth writes).
/// Only meaningful in the writer's PID namespace (berthd's, the host's).
pub fn is_orphan_temp(name: &str) -> bool {
    temp_writer(name).is_none_or(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes the `.tmp-*` files in `dir` whose writer is gone; returns them.
pub fn remove_orphan_temps(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-")
            && is_orphan_temp(&name)
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            out.push(e.path());
        }
    }
    out
}

/// [`remove_orphan_temps`] in berthd's records, its API specs and every bundle: what a berthd
/// killed mid-write leaves. A shim writing its `exit.json` meanwhile still runs: its file stays.
pub fn remove_orphan_temps_under(records: &Path, api_specs: &Path, bundles: &Path) -> Vec<PathBuf> {
    let bundle_dirs = std::fs::read_dir(bundles)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    [records.to_path_buf(), api_specs.to_path_buf()]
        .into_iter()
        .chain(bundle_dirs)
        .flat_map(|d| remove_orphan_temps(&d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn temp_names_give_their_writer() {
        assert_eq!(temp_writer(".tmp-web.json-6213-28"), Some(6213));
        assert_eq!(temp_writer(".tmp-my-app.json-7-0"), Some(7));
        assert_eq!(temp_writer("import-0123456789ab-42-3"), Some(42));
        assert_eq!(temp_writer(".tmp-web.json"), None);
        assert_eq!(temp_writer(".tmp-x-y-z"), None);
    }

    #[test]
    fn only_temp_files_of_gone_writers_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // PID 0x3fffffff is above any pid_max: its writer is gone.
        let gone = d.path().join(".tmp-web.json-1073741823-0");
        let live = d.path().join(format!(".tmp-web.json-{me}-0"));
        let other = d.path().join("web.json");
        for p in [&gone, &live, &other] {
            std::fs::write(p, "x").unwrap();
        }
        assert_eq!(remove_orphan_temps(d.path()), vec![gone.clone()]);
        assert!(!gone.exists() && live.exists() && other.exists());
    }
    /// With one worker, a task that blocks for 600 ms inside `off_worker` leaves the runtime
    /// free: another task's 20 ms ticks keep coming meanwhile.
    #[test]
    fn blocking_work_leaves_the_runtime_free() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let ticker = tokio::spawn(async {
                let t0 = Instant::now();
                let mut worst = Duration::ZERO;
                while t0.elapsed() < Duration::from_millis(500) {
                    let t = Instant::now();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    worst = worst.max(t.elapsed());
                }
                worst
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            tokio::spawn(async { off_worker(|| std::thread::sleep(Duration::from_millis(600))) })
                .await
                .unwrap();
            let worst = ticker.await.unwrap();
            assert!(worst < Duration::from_millis(300), "a tick took {worst:?}");
        });
    }

    #[test]
    fn outside_a_runtime_and_on_a_current_thread_one_it_runs_in_place() {
        assert_eq!(off_worker(|| 1), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(async { off_worker(|| 2) }), 2);
    }
}

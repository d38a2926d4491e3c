//! Crash-safe file writes for berthd's store, records and bundles: the one implementation lives
//! in the proto crate (the shim writes `exit.json` with it too). Runs in berthd and the CLI.

use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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

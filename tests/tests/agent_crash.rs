//! Crash rounds under a real systemd: N containers (every fifth on the bridge network) and, in
//! each round, berthd SIGKILLed at a random moment after some specs changed (in every other round
//! one spec removed too, then added back once it is gone), or random shims SIGKILLed. After each round berthd converges: every container runs with its current spec, was
//! started exactly once more when its spec changed or its shim died and never otherwise, nothing
//! leaked (units, mounts, cgroups, namespaces, veths, leases, state files: the inventory of
//! before) and `berth fsck` finds the store and berthd's state clean.
//!
//! CI runs a bounded number of rounds; `scripts/soak-crash.sh` runs the long soak with
//! `BERTH_CRASH_CONTAINERS`, `BERTH_CRASH_ROUNDS`, `BERTH_CRASH_SHIM_ROUNDS` (and
//! `BERTH_CRASH_SEED` to replay a run).

use berth_tests::agent::{Agent, IMAGE};
use berth_tests::inventory::{self, Inventory};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(240);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: reproducible from the printed seed, no dependency for a test's dice.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// `k` distinct indices below `n`.
    fn pick(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            all.swap(i, self.below(i as u64 + 1) as usize);
        }
        all.truncate(k);
        all.sort();
        all
    }
}

fn name(i: usize) -> String {
    format!("c{i:02}")
}

fn spec(i: usize, round: u64) -> String {
    let net = if i.is_multiple_of(5) {
        "bridge"
    } else {
        "none"
    };
    format!(
        "image_file: {IMAGE}\ncommand: [sleep, \"3600\"]\nnetwork_mode: {net}\nrestart: always\n\
         stop_grace_period: 1s\nenvironment: {{ROUND: \"{round}\"}}\n"
    )
}

/// The ROUND its bundle was made with (what the running container got).
fn bundle_round(a: &Agent, n: &str) -> Option<u64> {
    let p =
        a.sd.root_path()
            .join(format!("run/berth/containers/{n}/config.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["process"]["env"]
        .as_array()?
        .iter()
        .find_map(|e| e.as_str()?.strip_prefix("ROUND=")?.parse().ok())
}

struct Run {
    a: Agent,
    n: usize,
    /// Each container's current ROUND and how many starts it should have had.
    round: Vec<u64>,
    starts: Vec<usize>,
    baseline: Inventory,
    /// Seconds from berthd's restart to convergence, per round.
    converge: Vec<f64>,
    /// Rounds in which berthd died before the changed containers were all restarted.
    mid: usize,
}

impl Run {
    fn converged(&self) -> bool {
        let Ok(ps) = self.a.ps() else { return false };
        (0..self.n).all(|i| {
            let n = name(i);
            ps.get(&n).is_some_and(|s| s["phase"] == "running")
                && bundle_round(&self.a, &n) == Some(self.round[i])
                && self.a.active(&n)
        })
    }

    fn wait_converged(&self, what: &str) -> f64 {
        let t0 = Instant::now();
        self.a
            .wait(T, what, || self.converged())
            .unwrap_or_else(|e| panic!("{e}"));
        t0.elapsed().as_secs_f64()
    }

    /// Starts as expected, the inventory of before, fsck clean.
    fn check(&self, what: &str) {
        let a = &self.a;
        // A second start would come soon after the first: give it time to show.
        std::thread::sleep(Duration::from_secs(2));
        let got: Vec<usize> = (0..self.n).map(|i| a.starts(&name(i))).collect();
        let diff: BTreeMap<String, (usize, usize)> = (0..self.n)
            .filter(|&i| got[i] != self.starts[i])
            .map(|i| (name(i), (self.starts[i], got[i])))
            .collect();
        assert!(diff.is_empty(), "{what}: starts (expected, got): {diff:?}");
        let mut now = inventory::full(a);
        let t0 = Instant::now();
        while now != self.baseline && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(500));
            now = inventory::full(a);
        }
        assert!(
            now == self.baseline,
            "{what}: leftovers\n{}",
            now.diff(&self.baseline).join("\n")
        );
        let out = a
            .berth(&[
                "fsck",
                "--json",
                "--state-dir",
                "/srv/tb/state",
                "--spec-dir",
                "/srv/tb/specs",
            ])
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: fsck: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_crash_rounds_berthd_and_shims_killed() {
    let n = env_or("BERTH_CRASH_CONTAINERS", 30) as usize;
    let rounds = env_or("BERTH_CRASH_ROUNDS", 3);
    let shim_rounds = env_or("BERTH_CRASH_SHIM_ROUNDS", 2);
    let seed = env_or(
        "BERTH_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1,
    );
    eprintln!(
        "crash rounds: {n} containers, {rounds} berthd rounds, {shim_rounds} shim rounds, seed {seed}"
    );
    let mut dice = Dice(seed);
    let a = Agent::start("agent-crash").unwrap();
    a.start_berthd(true).unwrap();
    for i in 0..n {
        a.write(&name(i), &spec(i, 0));
    }
    let mut run = Run {
        n,
        round: vec![0; n],
        starts: vec![1; n],
        baseline: inventory::full(&a),
        converge: Vec::new(),
        mid: 0,
        a,
    };
    let first = run.wait_converged("all running");
    eprintln!("{n} running in {first:.1} s");
    std::thread::sleep(Duration::from_secs(2));
    run.baseline = inventory::full(&run.a);
    // The inventory sees the containers (or its comparisons could not fail).
    let b = &run.baseline;
    assert_eq!(b.units.len(), n, "{b:?}");
    assert_eq!(b.state["bundles"].len(), n, "{b:?}");
    assert_eq!(b.network.netns.len(), n.div_ceil(5), "{b:?}");
    assert!(!b.mounts.is_empty() && !b.cgroups.is_empty(), "{b:?}");
    run.check("after the first start");

    for r in 1..=rounds {
        let mut changed = run.pick_changed(&mut dice);
        // One of them, in every other round, is removed instead (and comes back after).
        let removed = if r % 2 == 0 { changed.pop() } else { None };
        for &i in &changed {
            run.round[i] = r;
            run.starts[i] += 1;
            run.a.write(&name(i), &spec(i, r));
        }
        if let Some(i) = removed {
            run.a.rm(&name(i));
        }
        let delay = Duration::from_millis(dice.below(3000));
        std::thread::sleep(delay);
        // How far the reconcile got when berthd died: changed containers already on their spec.
        let done = changed
            .iter()
            .filter(|&&i| bundle_round(&run.a, &name(i)) == Some(r) && run.a.active(&name(i)))
            .count();
        run.a.kill_berthd().unwrap();
        if done < changed.len() {
            run.mid += 1;
        }
        let t0 = Instant::now();
        run.a.start_berthd(true).unwrap();
        if let Some(i) = removed {
            run.wait_removed(i);
            run.round[i] = r;
            run.starts[i] += 1;
            run.a.write(&name(i), &spec(i, r));
        }
        run.wait_converged("convergence after berthd was killed");
        let secs = t0.elapsed().as_secs_f64();
        run.converge.push(secs);
        eprintln!(
            "round {r}: {} specs changed{}, berthd killed after {delay:?} with {done} of them \
             done, converged in {secs:.1} s",
            changed.len(),
            removed.map_or(String::new(), |i| format!(" and {} removed", name(i)))
        );
        run.check(&format!("berthd round {r} (seed {seed})"));
    }
    let mut shim_secs = Vec::new();
    for r in 1..=shim_rounds {
        let k = 1 + dice.below((n / 5).max(1) as u64) as usize;
        let victims = dice.pick(n, k);
        for &i in &victims {
            let pid = run.a.show(&name(i), "MainPID");
            assert!(pid != "0" && !pid.is_empty(), "{} has no shim", name(i));
            let out = run.a.sd.exec_inside(&["kill", "-9", &pid]).unwrap();
            assert!(out.status.success(), "{out:?}");
            run.starts[i] += 1;
        }
        let t0 = Instant::now();
        // systemd restarts them (Restart=always); wait for the new starts before converging.
        run.a
            .wait(T, "the killed shims restarted", || {
                victims
                    .iter()
                    .all(|&i| run.a.starts(&name(i)) >= run.starts[i])
            })
            .unwrap();
        run.wait_converged("convergence after shims were killed");
        let secs = t0.elapsed().as_secs_f64();
        shim_secs.push(secs);
        eprintln!("shim round {r}: {k} shims killed, converged in {secs:.1} s");
        run.check(&format!("shim round {r} (seed {seed})"));
    }
    let stats = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (
            v.get(v.len() / 2).copied().unwrap_or(0.0),
            v.last().copied().unwrap_or(0.0),
        )
    };
    let (m, x) = stats(&run.converge);
    let (sm, sx) = stats(&shim_secs);
    eprintln!(
        "SUMMARY containers={n} berthd_rounds={rounds} killed_mid_reconcile={} \
         shim_rounds={shim_rounds} seed={seed} \
         berthd_converge_median_s={m:.1} berthd_converge_max_s={x:.1} \
         shim_converge_median_s={sm:.1} shim_converge_max_s={sx:.1}",
        run.mid
    );
}

impl Run {
    /// Waits until container `i` (its spec removed) is gone with all it had on the host.
    fn wait_removed(&self, i: usize) {
        let (a, n) = (&self.a, name(i));
        let root = a.sd.root_path();
        let left = |a: &Agent| -> Vec<String> {
            let mut v = Vec::new();
            if a.ps().map_or(true, |m| m.contains_key(&n)) {
                v.push("berth ps".to_owned());
            }
            if a.show(&n, "LoadState") == "loaded" {
                v.push("unit".to_owned());
            }
            for p in [
                format!("run/berth/containers/{n}"),
                format!("run/berth/netns/{n}"),
                format!("srv/tb/state/agent/{n}.json"),
                format!("srv/tb/state/containers/{n}"),
            ] {
                if root.join(&p).exists() {
                    v.push(p);
                }
            }
            v
        };
        a.wait(T, &format!("{n} removed"), || left(a).is_empty())
            .unwrap_or_else(|e| panic!("{e}\nleft of {n}: {:?}", left(a)));
    }

    /// About a third of the containers get a new spec.
    fn pick_changed(&self, dice: &mut Dice) -> Vec<usize> {
        let k = 1 + dice.below((self.n / 3).max(1) as u64) as usize;
        dice.pick(self.n, k)
    }
}

/// A berthd SIGKILLed inside an atomic write leaves its temp file (`.tmp-<file>-<pid>-<seq>`)
/// beside its records and in bundles; the next berthd removes those whose writer is gone, and
/// leaves a live writer's alone.
#[test]
#[ignore = "needs root: boots systemd in namespaces, runs containers"]
fn agent_crash_temp_files_of_a_killed_berthd_are_removed_at_start() {
    let a = Agent::start("agent-crash-tmp").unwrap();
    a.start_berthd(true).unwrap();
    a.write("t", &spec(1, 0));
    a.wait(T, "t running", || a.phase("t") == "running")
        .unwrap();
    a.kill_berthd().unwrap();
    let root = a.sd.root_path();
    let records = a.sd.share_dir().join("state/agent");
    let gone = records.join(".tmp-t.json-1073741823-28");
    let bundle = root.join("run/berth/containers/t");
    let gone_in_bundle = bundle.join(".tmp-config.json-1073741823-3");
    // A writer that still runs (systemd, PID 1 in the namespace): not a leftover.
    let live = bundle.join(".tmp-exit.json-1-0");
    for p in [&gone, &gone_in_bundle, &live] {
        std::fs::write(p, "{\"ha").unwrap();
    }
    a.start_berthd(true).unwrap();
    assert!(!gone.exists(), "{} left", gone.display());
    assert!(
        !gone_in_bundle.exists(),
        "{} left",
        gone_in_bundle.display()
    );
    assert!(live.exists(), "a live writer's temp file was removed");
    std::fs::remove_file(&live).unwrap();
    assert_eq!(a.phase("t"), "running");
}

#!/usr/bin/env bash
# The crash soak, on demand (CI runs the same test with a few rounds): 30 containers under a real
# systemd booted in namespaces, 50 rounds of berthd SIGKILLed at a random moment after specs
# changed, then rounds of random shims SIGKILLed; after each round everything converges, no
# container ran twice, nothing leaked and `berth fsck` is clean. Prints the test's SUMMARY line.
#   CONTAINERS=30 ROUNDS=50 SHIM_ROUNDS=20 SEED=<n> scripts/soak-crash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/soak-crash.sh: needs root (namespaces, mounts, cgroups)" >&2
  exit 1
fi
scripts/setup.sh
cargo build --workspace --bins --locked
export BERTH_CRASH_CONTAINERS="${CONTAINERS:-30}"
export BERTH_CRASH_ROUNDS="${ROUNDS:-50}"
export BERTH_CRASH_SHIM_ROUNDS="${SHIM_ROUNDS:-20}"
[ -n "${SEED:-}" ] && export BERTH_CRASH_SEED="$SEED"
log=$(mktemp /tmp/soak-crash.XXXXXX.log)
start=$(date +%s)
set +e
cargo test -p berth-tests --locked --test agent_crash -- --include-ignored --nocapture 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "soak: exit $rc after $(( $(date +%s) - start )) s; log $log" >&2
grep '^SUMMARY' "$log" || true
exit "$rc"

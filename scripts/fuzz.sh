#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 30), starting
# from the seed corpus committed in fuzz/corpus/<target>/. New inputs go to a scratch directory
# that is removed afterwards, so the committed corpus stays small; a crash stops the run and is
# kept in fuzz/artifacts/<target>/ (to be fixed, given a regression test, and added to the corpus).
# Needs root for the layer unpacker (owners, device nodes, trusted xattrs), a nightly toolchain and
# cargo-fuzz (`BERTH_FUZZ=1 scripts/setup.sh` installs both). The long run is the same with a
# larger SECONDS: `sudo scripts/fuzz.sh 3600`; FUZZ_TARGETS="spec unpack" picks targets.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
# FUZZ_BUILD=dev builds the targets without optimizations (quicker to build, for CI's bounded run;
# the long run wants the default, optimized, build).
# Unoptimized, oci-client's reference grammar (a large regex, compiled on first use) takes some
# 15 s under ASan, so one input may take that long there.
mode=()
timeout=10
if [ "${FUZZ_BUILD:-}" = dev ]; then
  mode=(--dev)
  timeout=120
fi
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz missing: BERTH_FUZZ=1 scripts/setup.sh" >&2; exit 1; }
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
echo "== fuzz: building ($(echo $targets | wc -w) targets)" >&2
cargo +nightly fuzz build "${mode[@]}"
# cargo-fuzz has no --locked: a lock file the build changed is an error here instead.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && ! git diff --quiet -- Cargo.lock; then
  echo "fuzz.sh: fuzz/Cargo.lock changed while building; commit it" >&2
  exit 1
fi
scratch=$(mktemp -d /tmp/berth-fuzz-corpus.XXXXXX)
trap 'rm -rf "$scratch" /tmp/berth-fuzz-unpack-*' EXIT
for t in $targets; do
  mkdir -p "$scratch/$t"
  echo "== fuzz: $t for ${secs}s" >&2
  # Output is libFuzzer's status lines; only the last ones matter unless it fails.
  if ! cargo +nightly fuzz run "${mode[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz.sh: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|Done [0-9]+ runs' "$scratch/$t.log" | tr '\n' ' ' >&2
  echo >&2
done

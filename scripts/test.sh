#!/usr/bin/env bash
# berth's whole test suite, from a fresh machine: set-up, format, lints, unit tests and the root
# integration tests (real kernel features, a real systemd booted in namespaces, a real registry).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the integration tests need root (namespaces, mounts, cgroups); run it as root" >&2
  exit 1
fi
scripts/setup.sh
sweep() { scripts/sweep-cgroups.sh || true; }
trap sweep EXIT
echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build" >&2
cargo build --workspace --bins --locked
echo "== nix (parse, the pure spec library, its output through berth check)" >&2
scripts/nix-check.sh
echo "== tests (unit and integration, including those that need root)" >&2
# Integration tests are marked #[ignore = "needs root …"] so a plain `cargo test` as a user stays
# green; here they all run.
cargo test --workspace --locked --no-fail-fast -- --include-ignored "$@"
# A bounded fuzz run in CI (every target from its committed corpus; scripts/fuzz.sh for longer).
if [ "${CI:-}" = true ]; then
  echo "== fuzz (${FUZZ_SECONDS:-20}s per target)" >&2
  FUZZ_BUILD=${FUZZ_BUILD:-dev} scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi

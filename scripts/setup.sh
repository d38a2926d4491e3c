#!/usr/bin/env bash
# Installs everything berth's build, tests, benchmarks and example run need on a fresh Debian 12
# machine (idempotent; quick when all is present). Run as root.
set -euo pipefail
pkgs=(
  pkg-config libseccomp-dev          # libseccomp crate (the runtime's seccomp filters)
  busybox-static                     # root filesystems of test bundles and example images
  gcc libc6-dev linux-libc-dev       # a static syscall prober for the seccomp comparison tests
  runc crun                          # reference runtimes: conformance checks and benchmarks
  docker-registry skopeo umoci apache2-utils openssl  # a real registry and image tooling for tests
  tini                               # `init: true`: tini-static as the container's PID 1
  netavark aardvark-dns iptables     # bridge networking: veths, NAT and published ports (iptables-nft)
  podman conmon containerd           # peers for the benchmarks
  nix-bin                            # parse and evaluate the NixOS module's Nix files (scripts/nix-check.sh)
  iperf3                             # TCP throughput in the networking benchmark
  systemd dbus iproute2 util-linux procps jq hyperfine curl python3
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian enables and starts packaged services only where systemd is PID 1; on such hosts keep the
# peers' daemons from interfering with tests (they are only benchmarked, started by the scripts).
if [ -d /run/systemd/system ]; then
  systemctl disable --now docker-registry.service containerd.service >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
# The bounded fuzz run of CI (scripts/fuzz.sh): a nightly toolchain and cargo-fuzz (libFuzzer).
if [ "${CI:-}" = true ] || [ -n "${BERTH_FUZZ:-}" ]; then
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fi

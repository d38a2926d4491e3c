#!/usr/bin/env bash
# Checks the Nix side of berth without nixpkgs (Nix 2.8 from Debian's nix-bin, no daemon):
#  1. every .nix file of the repository parses;
#  2. the pure spec library (nixos-module/lib) evaluates on the example options, its unit checks
#     hold, and the container files it makes pass `berth check` (JSON is YAML);
#  3. with NIXPKGS_LIB=/path/to/nixpkgs.lib/lib set: module.nix evaluates under lib.evalModules
#     with stand-ins (nixos-module/tests/eval-module.nix); its files pass `berth check` and
#     `berthd --check-config`, and the expected unit, warnings and assertions come out.
# Needs the debug binaries (cargo build); BERTH_BIN_DIR overrides where they are.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home" "$tmp/conf" "$tmp/secrets" "$tmp/lib" "$tmp/module"
echo "build-users-group =" > "$tmp/conf/nix.conf"
export NIX_REMOTE= HOME=$tmp/home XDG_CACHE_HOME=$tmp/home/cache NIX_CONF_DIR=$tmp/conf
nix() { nix-instantiate --store dummy:// "$@"; }
# The files the examples name, as agenix or sops-nix would provide them.
printf 'TOKEN=secret\n' > "$tmp/secrets/web.env"
printf 'PASSWORD=secret\n' > "$tmp/secrets/redis.env"

n=0
while read -r f; do nix --parse "$f" > /dev/null; n=$((n + 1)); done < <(git ls-files --cached --others --exclude-standard '*.nix')
echo "nix: $n .nix files parse" >&2

[ "$(nix --eval --strict nixos-module/lib/tests.nix)" = true ]
echo "nix: nixos-module/lib/tests.nix holds" >&2

# Writes each "path": "text" of a JSON object on stdin below DIR, by base name.
write_files() {
  python3 -c 'import json, os, sys
d = sys.argv[1]
for k, v in json.load(sys.stdin).items():
    open(os.path.join(d, os.path.basename(k)), "w").write(v)' "$1"
}
nix --eval --strict --json --arg secrets "\"$tmp/secrets\"" -E '{ secrets }:
  let l = import ./nixos-module/lib; e = import ./nixos-module/lib/examples.nix { inherit secrets; };
  in l.containerFiles e.containers' | write_files "$tmp/lib"
"$bin/berth" check "$tmp"/lib/*.yaml
echo "nix: the library's container files pass berth check" >&2

if [ -n "${NIXPKGS_LIB:-}" ]; then
  out=$(nix --eval --strict --json nixos-module/tests/eval-module.nix \
    --arg lib "import $NIXPKGS_LIB" --arg secrets "\"$tmp/secrets\"")
  jq -e '.etc | with_entries(select(.key | startswith("berth/containers/")))' <<< "$out" | write_files "$tmp/module"
  jq -r '.etc["berth/berthd.yaml"]' <<< "$out" > "$tmp/berthd.yaml"
  "$bin/berth" check "$tmp"/module/*.yaml
  "$bin/berthd" --check-config --config "$tmp/berthd.yaml"
  # The network files, judged with the containers that join them, as berthd would see /etc.
  mkdir -p "$tmp/etc/containers" "$tmp/etc/networks"
  jq -e '.etc | with_entries(select(.key | startswith("berth/networks/")))' <<< "$out" | write_files "$tmp/etc/networks"
  cp "$tmp"/module/*.yaml "$tmp/etc/containers/"
  printf 'spec_dir: %s\nnetwork_dir: %s\n' "$tmp/etc/containers" "$tmp/etc/networks" > "$tmp/etc/berthd.yaml"
  [ -n "$(ls "$tmp/etc/networks")" ]
  "$bin/berth" --config "$tmp/etc/berthd.yaml" check
  jq -e '.failedAssertions == [] and .legacyServiceEnabled == false
    and .berthd.serviceConfig.Type == "notify" and .berthd.serviceConfig.KillMode == "control-group"
    and .berthd.stopIfChanged == false and (.warnings | length) == 1
    and .groups == ["docker"] and .dockerHost == "unix:///run/berth/docker.sock"
    and (.etc["berth/berthd.yaml"] | fromjson | .docker == {"enable": true, "socket": "/run/berth/docker.sock", "group": "docker"})
    and (.etcModes | to_entries | map(select(.key | startswith("berth/containers/"))) | all(.value == "0644"))' <<< "$out" > /dev/null
  echo "nix: module.nix evaluates with lib.evalModules; its files pass berth check and berthd --check-config" >&2
else
  echo "nix: NIXPKGS_LIB not set: module.nix evaluation skipped (see nixos-module/README.md)" >&2
fi

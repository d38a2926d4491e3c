#!/usr/bin/env bash
# Benchmarks berth-runtime against Debian's runc and crun on one busybox bundle, interleaved in
# the same run: `run` of /bin/true, create+start+delete, `run -d` of a sleeping container and its
# `delete -f`; peak RSS of each runtime; the `unshare --fork` floor. Writes
# bench/results/runtime.md. Run as root (it builds the release binary itself, `--profile runtime`).
#
# crun 1.8 refuses hybrid cgroups, so all three run in a private mount namespace where
# /sys/fs/cgroup holds only the v1 hierarchies (the cgroup2 mount at unified/ is detached there).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-40}
if [ "${1:-}" != "--inside" ]; then
  [ "$(id -u)" = 0 ] || { echo "bench/runtime.sh: run as root" >&2; exit 1; }
  cargo build --profile runtime -p berth-runtime >&2   # release, built small (see Cargo.toml)
  exec unshare --mount --propagation private "$0" --inside
fi
if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; fi

BERTH=$PWD/target/runtime/berth-runtime
RUNC=$(command -v runc)
CRUN=$(command -v crun)
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
trap 'for r in berth runc crun; do for id in $(ls "$work/root-$r" 2>/dev/null); do "${bin[$r]}" --root "$work/root-$r" delete -f "$id" >/dev/null 2>&1 || true; done; done; rm -rf "$work"' EXIT
declare -A bin=([berth]=$BERTH [runc]=$RUNC [crun]=$CRUN)

# One busybox bundle for all (runc's default namespaces: pid, net, ipc, uts, mount).
mkdir -p "$work/bundle/rootfs/bin"
cp "$(command -v busybox)" "$work/bundle/rootfs/bin/busybox"
for a in sh true sleep; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
(cd "$work/bundle" && "$BERTH" spec)
jq '.process.terminal=false | .process.args=["/bin/true"]' "$work/bundle/config.json" > "$work/true.json"
jq '.process.terminal=false | .process.args=["/bin/sleep","1000"]' "$work/bundle/config.json" > "$work/sleep.json"

now() { local t=${EPOCHREALTIME/./}; echo "$t"; }   # microseconds, no fork
declare -A samples
add() { samples[$1]+="$2 "; }

run_true() {   # runtime id
  local r=$1 s e
  cp "$work/true.json" "$work/bundle/config.json"
  s=$(now); "${bin[$r]}" --root "$work/root-$r" run -b "$work/bundle" "$2" >/dev/null; e=$(now)
  add "run-true-$r" $((e - s))
}
create_start_delete() {
  local r=$1 s e
  cp "$work/true.json" "$work/bundle/config.json"
  s=$(now)
  "${bin[$r]}" --root "$work/root-$r" create -b "$work/bundle" "$2" </dev/null >/dev/null 2>&1
  "${bin[$r]}" --root "$work/root-$r" start "$2"
  "${bin[$r]}" --root "$work/root-$r" delete -f "$2"
  e=$(now)
  add "create-start-delete-$r" $((e - s))
}
detached() {
  local r=$1 s e
  cp "$work/sleep.json" "$work/bundle/config.json"
  s=$(now); "${bin[$r]}" --root "$work/root-$r" run -d -b "$work/bundle" "$2" </dev/null >/dev/null 2>&1; e=$(now)
  add "run-d-$r" $((e - s))
  s=$(now); "${bin[$r]}" --root "$work/root-$r" delete -f "$2"; e=$(now)
  add "delete-f-$r" $((e - s))
}
floor() {
  local s e
  s=$(now); unshare --fork /bin/true; e=$(now); add "floor-fork" $((e - s))
  s=$(now); unshare --fork --pid --net --ipc --uts --mount /bin/true; e=$(now); add "floor-ns" $((e - s))
}

# Warm-up (page cache, first-run costs), then N interleaved rounds. The order of the runtimes
# rotates every round: work one runtime leaves to the kernel (namespace teardown runs in a
# workqueue after the process is reaped) is otherwise always paid by the same successor.
runtimes=(berth crun runc)
for r in "${runtimes[@]}"; do run_true "$r" warm-$r; done
for i in $(seq 1 "$N"); do
  for k in 0 1 2; do
    r=${runtimes[$(((i + k) % 3))]}
    run_true "$r" "t$i"
    create_start_delete "$r" "c$i"
    detached "$r" "d$i"
  done
  floor
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}'; }
med() { echo "${samples[$1]}" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

# Peak RSS: the max over the runtime's process tree (runc's re-exec'd `runc init` included),
# from busybox's `time -v` (a static, tiny parent, so its own pages do not count: a fork of a
# bigger measuring process would). Busybox prints ru_maxrss scaled as if it were pages: undo it.
rss() {
  cp "$work/true.json" "$work/bundle/config.json"
  local v
  v=$(busybox time -v "${bin[$1]}" --root "$work/root-$1" run -b "$work/bundle" "rss-$2" 2>&1 >/dev/null |
    awk -F': ' '/Maximum resident/ {print $2}')
  echo $((v * 1024 / $(getconf PAGESIZE)))
}
declare -A peak
for r in berth crun runc; do
  best=0
  for k in 1 2 3 4 5; do v=$(rss "$r" "$k"); [ "$v" -gt "$best" ] && best=$v; done
  peak[$r]=$best
done

out=bench/results/runtime.md
{
  echo "# berth-runtime vs crun vs runc"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
  echo "Linux $(uname -r), $(runc --version | head -1), $(crun --version | head -1), berth-runtime $(git rev-parse --short HEAD) (\`--profile runtime\`: release, opt-level s, fat LTO, panic=abort)."
  echo "Command: \`sudo bash bench/runtime.sh\` (N=$N interleaved rounds, medians in ms, one busybox bundle with runc's"
  echo "default namespaces pid/net/ipc/uts/mount, all runtimes in a private mount namespace whose /sys/fs/cgroup holds only"
  echo "the v1 hierarchies). The machine is shared: absolute numbers are noisy, ratios from the same rounds are the figure."
  echo
  echo "| scenario | berth | crun | runc | berth/crun | berth/runc |"
  echo "|---|---:|---:|---:|---:|---:|"
  for s in run-true create-start-delete run-d delete-f; do
    b=$(med "$s-berth"); c=$(med "$s-crun"); r=$(med "$s-runc")
    echo "| \`$s\` | $b | $c | $r | $(ratio "$b" "$c") | $(ratio "$b" "$r") |"
  done
  echo "| peak RSS (KiB) | ${peak[berth]} | ${peak[crun]} | ${peak[runc]} | $(ratio "${peak[berth]}" "${peak[crun]}") | $(ratio "${peak[berth]}" "${peak[runc]}") |"
  echo
  echo "Floor: \`unshare --fork /bin/true\` $(med floor-fork) ms; with the same five new namespaces"
  echo "(\`unshare --fork --pid --net --ipc --uts --mount\`) $(med floor-ns) ms."
} > "$out"
cat "$out"
bash bench/readme.sh   # README.md shows these results

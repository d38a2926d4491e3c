#!/usr/bin/env bash
# Per-container monitor cost with N containers up (default 50): berth-shim vs conmon (podman) and
# containerd-shim-runc-v2, all in the same run, and berth's start latency (StartTransientUnit →
# container process running, → unit active). Run as root; writes bench/results/shim.md.
# berth runs in a test systemd booted in private namespaces (tests/scripts/sd-ns.sh); the peers
# run on the host with private state directories under a temp dir, each with runc.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
[ "$(id -u)" = 0 ] || { echo "bench/shim.sh: run as root" >&2; exit 1; }
scripts/setup.sh
T=$(mktemp -d /tmp/berth-bench-shim.XXXXXX)
CTRD_PID=
cleanup() {
  set +e
  podman --root "$T/podman/root" --runroot "$T/podman/run" --cgroup-manager cgroupfs \
    --events-backend none rm -fa -t 0 >/dev/null 2>&1
  if [ -n "$CTRD_PID" ]; then
    for i in $(seq "$N"); do
      ctr -a "$T/ctrd/sock" task kill -s 9 "b$i" >/dev/null 2>&1
    done
    sleep 1
    for i in $(seq "$N"); do
      ctr -a "$T/ctrd/sock" task rm -f "b$i" >/dev/null 2>&1
      ctr -a "$T/ctrd/sock" c rm "b$i" >/dev/null 2>&1
    done
    kill "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null
  fi
  findmnt -rn -o TARGET | grep "^$T" | sort -r | xargs -r umount -l 2>/dev/null
  rm -rf "$T"
  scripts/sweep-cgroups.sh
}
trap cleanup EXIT

echo "== build" >&2
cargo build --profile shim -p berth-shim >&2
cargo build -p berth-tests --bin shim-bench >&2
# Freshly written binaries sit in dirty page-cache pages, which smaps counts as each mapping
# process's Private_Dirty: write them back first.
sync

# median of stdin numbers
median() { sort -n | awk '{a[NR]=$1} END{if(NR==0){print 0}else{print a[int((NR+1)/2)]}}'; }
# "rss_kib private_dirty_kib" medians over the given pids
mem() {
  local rss=() pd=()
  for p in "$@"; do
    rss+=("$(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup")")
    pd+=("$(awk '/^Private_Dirty:/{print $2}' "/proc/$p/smaps_rollup")")
  done
  echo "$(printf '%s\n' "${rss[@]}" | median) $(printf '%s\n' "${pd[@]}" | median) ${#rss[@]}"
}

echo "== berth-shim: $N containers as systemd units" >&2
B=$(target/debug/shim-bench --shim "$PWD/target/shim/berth-shim" --count "$N")
echo "$B" >&2
b_rss=$(jq .rss_kib_median <<<"$B"); b_pd=$(jq .private_dirty_kib_median <<<"$B")
b_n=$(jq .shims <<<"$B")
ms() { jq -r "$1 * 10 | round / 10" <<<"$B"; }
b_run=$(ms .to_running_ms_median); b_act=$(ms .to_active_ms_median)
b_run_max=$(ms .to_running_ms_max); b_act_max=$(ms .to_active_ms_max)

ROOTFS=$T/rootfs
mkdir -p "$ROOTFS/bin" "$ROOTFS"/{proc,sys,dev,etc,tmp}
cp /bin/busybox "$ROOTFS/bin/"; ln -s busybox "$ROOTFS/bin/sh"; ln -s busybox "$ROOTFS/bin/sleep"

echo "== conmon (podman, runc): $N containers" >&2
P=(podman --root "$T/podman/root" --runroot "$T/podman/run" --cgroup-manager cgroupfs --events-backend none)
t0=$(date +%s%N)
for i in $(seq "$N"); do
  # The machine's hard limits are below podman's default ulimits: ask for ones it can set.
  "${P[@]}" run -d --name "b$i" --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --network none --rootfs "$ROOTFS" sh -c 'exec sleep 100000' >/dev/null
done
p_start=$(( ($(date +%s%N) - t0) / N / 1000000 ))
sleep 2
read -r c_rss c_pd c_n < <(mem $(pgrep -f "^/usr/bin/conmon .*$T/podman"))

echo "== containerd-shim-runc-v2 (containerd, ctr): $N containers" >&2
mkdir -p "$T/ctrd"
cat > "$T/ctrd/config.toml" <<EOT
version = 2
root = "$T/ctrd/root"
state = "$T/ctrd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/ctrd/sock"
[ttrpc]
  address = "$T/ctrd/sock.ttrpc"
EOT
containerd --config "$T/ctrd/config.toml" >"$T/ctrd/log" 2>&1 &
CTRD_PID=$!
for i in $(seq 100); do [ -S "$T/ctrd/sock" ] && break; sleep 0.05; done
t0=$(date +%s%N)
for i in $(seq "$N"); do
  ctr -a "$T/ctrd/sock" run -d --env PATH=/bin --rootfs "$ROOTFS" "b$i" /bin/sh -c 'exec sleep 100000' >/dev/null
done
d_start=$(( ($(date +%s%N) - t0) / N / 1000000 ))
sleep 2
read -r d_rss d_pd d_n < <(mem $(pgrep -f "containerd-shim-runc-v2 .*$T/ctrd" || pgrep -f containerd-shim-runc-v2))

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b==0) print "n/a"; else printf "%.2f", a/b }'; }
mib() { awk -v k="$1" 'BEGIN{ printf "%.2f MiB", k/1024 }'; }
out=bench/results/shim.md
{
  echo "# berth-shim: per-container memory and start latency"
  echo
  echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Machine: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr), $(. /etc/os-release; echo "$PRETTY_NAME"), cgroups $( [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo hybrid)."
  echo "Command: \`bash bench/shim.sh\` (N=$N containers per monitor, busybox \`sleep\`, medians over the monitors; RSS and Private_Dirty from /proc/PID/smaps_rollup 2 s after the last start)."
  echo
  echo "| monitor (N=$N) | RSS | private dirty | RSS vs berth | private dirty vs berth |"
  echo "|---|---|---|---|---|"
  echo "| berth-shim (\`--profile shim\`, linked berth-runtime) | $(mib "$b_rss") | ${b_pd} KiB | 1.00 | 1.00 |"
  echo "| conmon $(conmon --version 2>/dev/null | head -1 | awk '{print $3}') (podman, runc) | $(mib "$c_rss") | ${c_pd} KiB | $(ratio "$c_rss" "$b_rss") | $(ratio "$c_pd" "$b_pd") |"
  echo "| containerd-shim-runc-v2 $(containerd --version | awk '{print $3}') | $(mib "$d_rss") | ${d_pd} KiB | $(ratio "$d_rss" "$b_rss") | $(ratio "$d_pd" "$b_pd") |"
  echo
  echo "Monitors measured: berth-shim $b_n, conmon $c_n, containerd-shim-runc-v2 $d_n."
  echo
  echo "berth start latency (systemd 252 in a private namespace, one unit at a time, N=$N):"
  echo
  echo "| from StartTransientUnit to | median | max |"
  echo "|---|---|---|"
  echo "| container process running (its first command ran) | ${b_run} ms | ${b_run_max} ms |"
  echo "| unit active (JobRemoved \`done\`, after the shim's READY=1) | ${b_act} ms | ${b_act_max} ms |"
  echo
  echo "The shim sends READY=1 as soon as the runtime's start returned, concurrently with the"
  echo "container's first command, so the two figures differ by less than the ~1 ms polling step."
  echo
  echo "For scale, whole-command wall time per container of the peers in the same run (CLI start-up included): \`podman run -d\` ${p_start} ms, \`ctr run -d\` ${d_start} ms."
  echo
  echo "How berth-shim stays small: no threads and no async runtime; built with the \`shim\` profile"
  echo "(opt-level s, fat LTO, panic=abort, stripped) and linked non-PIE (no relocated data pages);"
  echo "after the container started it trims the heap and drops the page-table entries of its"
  echo "start-up code and stack (the pages stay shared in the page cache). The container's output"
  echo "goes to journald without passing through the shim."
} > "$out"
cat "$out"
bash bench/readme.sh   # README.md shows these results

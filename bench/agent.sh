#!/usr/bin/env bash
# berthd benchmark, in one run:
#  1. time from writing 50 spec files (image present) to all 50 units active, vs `podman run -d` x50
#     of the same image (busybox, loaded into podman from the same OCI archive);
#  2. berthd's RSS and CPU use while idle with those 50 containers.
# berthd runs under a real systemd (booted in private namespaces where PID 1 is not systemd, as the
# tests do). Medians of $RUNS runs; results in bench/results/agent.md. Run as root: bench/agent.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUNS=${RUNS:-3}
N=${N:-50}
[ "$(id -u)" = 0 ] || { echo "bench/agent.sh: run as root" >&2; exit 1; }
scripts/setup.sh
cargo build --release --locked -p berth-agent -p berth-shim >&2
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET/release
W=$(mktemp -d /var/tmp/berth-bench-agent.XXXXXX)
mkdir -p "$W/specs" "$W/state"
examples/make-image.sh "$W/busybox.tar" bench >/dev/null

NAME=bench-$$
TB=/tmp/berth-tb
LAUNCHER=
cleanup() {
  podman rm -f -t 0 $(podman ps -aq --filter label=berth-bench) >/dev/null 2>&1 || true
  if [ -n "$LAUNCHER" ]; then
    nsenter -t "$PID" -a systemctl poweroff >/dev/null 2>&1 || true
    wait "$LAUNCHER" 2>/dev/null || true
  fi
  rm -rf "$W"
}
trap cleanup EXIT
if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm)" = systemd ]; then
  NS=()
else
  TB_BASE=$TB TB_BIND="$TARGET $W" setsid bash tests/scripts/sd-ns.sh "$NAME" hybrid >"$W/sd-ns.log" 2>&1 &
  LAUNCHER=$!
  for _ in $(seq 200); do [ -s "$TB/$NAME/pid" ] && break; sleep 0.05; done
  PID=$(cat "$TB/$NAME/pid")
  NS=(nsenter -t "$PID" -a)
  for _ in $(seq 200); do
    case $("${NS[@]}" systemctl is-system-running 2>/dev/null || true) in running|degraded) break;; esac; sleep 0.05
  done
fi
sd() { "${NS[@]}" "$@"; }
sd systemd-run --unit=berthd-bench -p Type=notify -p NotifyAccess=main \
  "$BIN/berthd" --spec-dir "$W/specs" --state-dir "$W/state" --shim "$BIN/berth-shim" --run-dir /run/berth-bench >/dev/null 2>&1
active() { sd systemctl list-units --state=active --no-legend --plain 'berth-*' | wc -l; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# Warm-up: the first container imports and unpacks the image once.
printf 'image_file: %s\ncommand: [sleep, "3600"]\nnetwork_mode: none\nstop_signal: SIGKILL\n' "$W/busybox.tar" > "$W/specs/warm.yaml"
until [ "$(active)" -ge 1 ]; do sleep 0.1; done
rm "$W/specs/warm.yaml"
until [ "$(active)" -eq 0 ]; do sleep 0.1; done

podman load -q -i "$W/busybox.tar" >/dev/null 2>&1 || true
# This machine's limits are below podman's defaults (nofile 1048576) and root may not raise them;
# crun refuses hybrid cgroups: runc, and limits within the current ones.
PODMAN_OPTS=(--runtime runc)
PULIMITS=(--ulimit "nofile=1024:1024" --ulimit "nproc=4096:4096")
PIMG=$(podman images --format '{{.ID}}' | sed -n 1p)
podman "${PODMAN_OPTS[@]}" run --rm "${PULIMITS[@]}" --network none "$PIMG" true >/dev/null   # warm-up

: > "$W/berth.txt"; : > "$W/podman.txt"
for r in $(seq "$RUNS"); do
  t0=$(now)
  for i in $(seq -w 1 "$N"); do
    printf 'image_file: %s\ncommand: [sleep, "3600"]\nnetwork_mode: none\nstop_signal: SIGKILL\n' "$W/busybox.tar" > "$W/specs/c$i.yaml"
  done
  until [ "$(active)" -ge "$N" ]; do sleep 0.05; done
  echo "$(now) - $t0" | bc >> "$W/berth.txt"
  if [ "$r" = "$RUNS" ]; then
    # Idle with N containers: settle, then RSS and CPU over 30 s.
    sleep 5
    MP=$(sd systemctl show -p MainPID --value berthd-bench.service)
    rss=$(sd awk '/VmRSS/ {print $2}' "/proc/$MP/status")
    cpu0=$(sd awk '{print $14+$15}' "/proc/$MP/stat"); sleep 30
    cpu1=$(sd awk '{print $14+$15}' "/proc/$MP/stat")
    idle_cpu_ticks=$((cpu1 - cpu0))
  fi
  rm -f "$W"/specs/c*.yaml
  until [ "$(active)" -eq 0 ]; do sleep 0.1; done
  # ... and until berthd has cleaned up after them, so runs do not overlap.
  until [ "$(sd "$BIN/berth" --socket /run/berth-bench/berthd.sock ps --json | jq length)" -eq 0 ]; do sleep 0.1; done

  t0=$(now)
  for i in $(seq -w 1 "$N"); do
    podman "${PODMAN_OPTS[@]}" run -d "${PULIMITS[@]}" --label berth-bench=1 --network none --name "bench-$i" "$PIMG" sleep 3600 >/dev/null
  done
  echo "$(now) - $t0" | bc >> "$W/podman.txt"
  podman rm -f -t 0 $(podman ps -aq --filter label=berth-bench) >/dev/null
done
B=$(median < "$W/berth.txt"); P=$(median < "$W/podman.txt")
BR=$(echo "scale=1; $N / $B" | bc); PR=$(echo "scale=1; $N / $P" | bc); X=$(echo "scale=2; $P / $B" | bc)
HZ=$(getconf CLK_TCK)
CPU_PCT=$(echo "scale=3; $idle_cpu_ticks * 100 / $HZ / 30" | bc)
out=bench/results/agent.md
{
  echo "# berthd: $N containers from spec files, and idle cost"
  echo
  echo "Run: \`bench/agent.sh\` (RUNS=$RUNS, N=$N) on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), hybrid cgroups; berthd and berth-shim release builds; berthd under systemd $(systemctl --version | awk 'NR==1 {print $2}') (booted in private namespaces where PID 1 is not systemd); podman $(podman --version | awk '{print $3}') on the host."
  echo
  echo "| what | berth | podman \`run -d\` x$N | ratio |"
  echo "|---|---|---|---|"
  echo "| $N containers running (median s) | $B s ($BR/s) | $P s ($PR/s) | ${X}x |"
  echo
  echo "| berthd idle with $N containers | value |"
  echo "|---|---|"
  echo "| RSS | $((rss / 1024)) MiB ($rss kB) |"
  echo "| CPU over 30 s | $CPU_PCT % of one CPU ($idle_cpu_ticks ticks) |"
  echo
  echo "Raw seconds, berth: $(tr '\n' ' ' < "$W/berth.txt"); podman: $(tr '\n' ' ' < "$W/podman.txt")"
} > "$out"
cat "$out"
bash bench/readme.sh   # README.md shows these results

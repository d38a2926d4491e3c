#!/usr/bin/env bash
# Networking benchmark, in one run (results in bench/results/network.md):
#  1. the start and stop cost of networking: a berth container on the default bridge with one
#     published port vs `network_mode: none`, and the same for `podman run -d` (netavark's default
#     bridge with `-p`) vs `--network none`; medians and p90 over $ROUNDS rounds, interleaved;
#  2. TCP throughput (iperf3, $IPERF_SECS s per transfer) into a container through a published port
#     on the host side's 127.0.0.1 and the bridge gateway vs straight to the container's bridge
#     address, for berth and podman, with plain loopback as the ceiling.
# No traffic leaves namespaces the benchmark makes: berthd runs under a test systemd booted in its
# own network namespace (tests/scripts/sd-ns.sh), podman in a second fresh network namespace with
# private storage, run, and network config directories; the host's network is never touched.
# Run as root: bench/network.sh   (BIN=DIR uses berthd, berth and berth-shim from DIR, no build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-15}
IPERF_SECS=${IPERF_SECS:-5}
IPERF_ROUNDS=${IPERF_ROUNDS:-5}
BURST=${BURST:-10}
BURST_ROUNDS=${BURST_ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "bench/network.sh: run as root" >&2; exit 1; }
T_START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
scripts/setup.sh
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked -p berth-agent -p berth-shim >&2
  BIN=$TARGET/release
fi
W=$(mktemp -d /var/tmp/berth-bench-net.XXXXXX)
mkdir -p "$W/specs" "$W/state" "$W/podman/net"
examples/make-image.sh "$W/busybox.tar" bench >/dev/null
PY=/usr/bin/python3   # not a version manager's shim: its start-up is in no interval, but slow

NAME=bench-net-$$
TB=/tmp/berth-tb
LAUNCHER=
PNS=$W/podman.netns
P=(nsenter "--net=$PNS" podman --root "$W/podman/root" --runroot "$W/podman/run" --tmpdir "$W/podman/tmp"
  --network-config-dir "$W/podman/net" --cgroup-manager cgroupfs --events-backend none)
cleanup() {
  set +e
  if [ -e "$PNS" ]; then
    "${P[@]}" rm -fa -t 0 >/dev/null 2>&1
    umount "$PNS" 2>/dev/null
  fi
  if [ -n "$LAUNCHER" ]; then
    nsenter -t "$PID" -a systemctl poweroff >/dev/null 2>&1
    wait "$LAUNCHER" 2>/dev/null
    rm -rf "${TB:?}/$NAME"
  fi
  findmnt -rn -o TARGET | grep "^$W" | sort -r | xargs -r umount -l 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

echo "== test systemd in its own network namespace, berthd" >&2
TB_BASE=$TB TB_BIND="$BIN $W" setsid bash tests/scripts/sd-ns.sh "$NAME" hybrid >"$W/sd-ns.log" 2>&1 &
LAUNCHER=$!
for _ in $(seq 200); do [ -s "$TB/$NAME/pid" ] && break; sleep 0.05; done
PID=$(cat "$TB/$NAME/pid")
sd() { nsenter -t "$PID" -a "$@"; }
for _ in $(seq 200); do
  case $(sd systemctl is-system-running 2>/dev/null || true) in running|degraded) break;; esac; sleep 0.05
done
sd ip link set lo up
sd systemd-run --unit=berthd-bench -p Type=notify -p NotifyAccess=main \
  "$BIN/berthd" --spec-dir "$W/specs" --state-dir "$W/state" --shim "$BIN/berth-shim" --run-dir /run/berth-bench >/dev/null
berth() { sd "$BIN/berth" --socket /run/berth-bench/berthd.sock "$@"; }

echo "== podman in its own network namespace" >&2
touch "$PNS"; unshare "--net=$PNS" true
nsenter "--net=$PNS" ip link set lo up
"${P[@]}" load -q -i "$W/busybox.tar" >/dev/null
PIMG=$("${P[@]}" images --format '{{.ID}}' | sed -n 1p)
# This machine's hard limits are below podman's default ulimits; crun refuses hybrid cgroups.
PRUN=(run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

now_us() { echo $(($(date +%s%N) / 1000)); }
# Monotonic µs right after a spec file is renamed into (or removed from) the spec directory, on
# the clock of systemd's *TimestampMonotonic properties (no time namespace is involved).
put_spec() { "$PY" -c 'import os, sys, time; os.rename(sys.argv[1], sys.argv[2]); print(time.monotonic_ns() // 1000)' "$1" "$2"; }
rm_spec() { "$PY" -c 'import os, sys, time; os.unlink(sys.argv[1]); print(time.monotonic_ns() // 1000)' "$1"; }
prop() { sd systemctl show -p "$2" --value "berth-$1.service"; }
unit_state() { sd systemctl show -p ActiveState --value "berth-$1.service" 2>/dev/null || true; }
# Monotonic µs of systemd's "Stopped" message for the unit (the unit is unloaded once inactive).
stopped_at() {
  sd journalctl -q -o json --no-pager "UNIT=berth-$1.service" MESSAGE_ID=9d1aaa27d60140bd96365438aad20286 |
    jq -r .__MONOTONIC_TIMESTAMP | tail -1
}
stopping_at() {
  sd journalctl -q -o json --no-pager "UNIT=berth-$1.service" MESSAGE_ID=de5b426a63be47a7b6ac3eaac82e2f6f |
    jq -r .__MONOTONIC_TIMESTAMP | tail -1
}
wait_for() {   # wait_for WHAT SECONDS CMD...: until CMD succeeds
  local what=$1 secs=$2 i; shift 2
  for i in $(seq $((secs * 20))); do "$@" && return 0; sleep 0.05; done
  echo "bench/network.sh: timed out waiting for $what" >&2
  berth ps >&2 || true
  sd journalctl -q --no-pager -n 60 -u 'berth-*' >&2 || true
  exit 1
}
has_stopped() { [ -n "$(stopped_at "$1")" ]; }
is_active() { [ "$(unit_state "$1")" = active ]; }
is_gone() { case $(unit_state "$1") in inactive|"") return 0;; *) return 1;; esac; }
# berthd has cleaned up after the last container: only the resident one (if any) is left.
RESIDENTS=0
no_containers() { [ "$(berth ps --json | jq length)" -eq "$RESIDENTS" ]; }

spec_none() { printf 'image_file: %s\ncommand: [sleep, "3600"]\nnetwork_mode: none\nstop_signal: SIGKILL\n' "$W/busybox.tar"; }
spec_bridge() { printf 'image_file: %s\ncommand: [sleep, "3600"]\nports: ["18080:80"]\nstop_signal: SIGKILL\n' "$W/busybox.tar"; }
spec_busy() { spec_bridge; }
spec_resident() { printf 'image_file: %s\ncommand: [sleep, "3600"]\nports: ["18081:80"]\nstop_signal: SIGKILL\n' "$W/busybox.tar"; }

# One berth container through its life: appends "spec_to_active unit_start stop_from_rm unit_stop"
# in ms to $W/berth-MODE.txt.
berth_round() {
  local mode=$1 n=$2 t0 t1 act inact stopping stopped
  "spec_$mode" > "$W/$n.tmp"
  t0=$(put_spec "$W/$n.tmp" "$W/specs/$n.yaml")
  wait_for "$n active" 60 is_active "$n"
  act=$(prop "$n" ActiveEnterTimestampMonotonic); inact=$(prop "$n" InactiveExitTimestampMonotonic)
  t1=$(rm_spec "$W/specs/$n.yaml")
  wait_for "$n stopped" 60 is_gone "$n"
  wait_for "$n stopped in the journal" 10 has_stopped "$n"
  stopped=$(stopped_at "$n"); stopping=$(stopping_at "$n")
  wait_for "berthd's clean-up of $n" 60 no_containers
  echo "$(( (act - t0) )) $(( act - inact )) $(( stopped - t1 )) $(( stopped - stopping ))" |
    awk '{printf "%.1f %.1f %.1f %.1f\n", $1/1000, $2/1000, $3/1000, $4/1000}' >> "$W/berth-$mode.txt"
}
# One podman container: appends "run_d rm_f" wall ms to $W/podman-MODE.txt.
podman_round() {
  local mode=$1 n=$2 t0 t1 t2 net=(--network none)
  case $mode in bridge|busy) net=(-p 18080:80);; resident) net=(-p 18081:80);; esac
  t0=$(now_us)
  "${P[@]}" "${PRUN[@]}" "${net[@]}" --name "$n" "$PIMG" sleep 3600 >/dev/null
  t1=$(now_us)
  "${P[@]}" rm -f -t 0 "$n" >/dev/null
  t2=$(now_us)
  echo "$(( t1 - t0 )) $(( t2 - t1 ))" | awk '{printf "%.1f %.1f\n", $1/1000, $2/1000}' >> "$W/podman-$mode.txt"
}

echo "== warm-up" >&2
berth_round none warm-n; berth_round bridge warm-b
podman_round none warm-n; podman_round bridge warm-b
for m in none bridge busy; do : > "$W/berth-$m.txt"; : > "$W/podman-$m.txt"; done

echo "== start and stop, $ROUNDS rounds" >&2
for r in $(seq "$ROUNDS"); do
  # Alternate the order within a round so that neither mode always follows the other.
  if [ $((r % 2)) = 1 ]; then modes="none bridge"; else modes="bridge none"; fi
  for m in $modes; do berth_round "$m" "c$r$m"; podman_round "$m" "c$r$m"; done
  echo "round $r: load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
# The common case: the bridge and its chains exist already, another container is on it.
echo "== bridge start and stop beside a resident container, $ROUNDS rounds" >&2
"spec_resident" > "$W/resident.yaml"; mv "$W/resident.yaml" "$W/specs/resident.yaml"
wait_for "resident active" 60 is_active resident
RESIDENTS=1
"${P[@]}" "${PRUN[@]}" -p 18081:80 --name resident "$PIMG" sleep 3600 >/dev/null
for r in $(seq "$ROUNDS"); do
  berth_round busy "d$r"; podman_round busy "d$r"
done
rm "$W/specs/resident.yaml"; "${P[@]}" rm -f -t 0 resident >/dev/null
wait_for "resident stopped" 60 is_gone resident
RESIDENTS=0
wait_for "berthd's clean-up of resident" 60 no_containers

# Many at once: do concurrent set-ups serialise (netavark's iptables runs take the xtables lock)?
# BURST containers started together: from the first spec renamed to the last unit active, and
# for podman BURST `run -d` in parallel, wall time until all returned.
burst_spec() {   # burst_spec MODE I
  if [ "$1" = none ]; then spec_none
  else printf 'image_file: %s\ncommand: [sleep, "3600"]\nports: ["%s:80"]\nstop_signal: SIGKILL\n' "$W/busybox.tar" $((18100 + $2)); fi
}
n_active() { sd systemctl list-units --state=active --no-legend --plain "berth-$1*" | wc -l; }
test_n_active() { [ "$(n_active "$1")" -eq "$2" ]; }
burst_round() {   # burst_round MODE TAG: appends "berth_ms podman_ms" to $W/burst-MODE.txt
  local mode=$1 tag=$2 i t0 last p0 p1 units=() names=()
  for i in $(seq "$BURST"); do burst_spec "$mode" "$i" > "$W/$tag$i.tmp"; names+=("$tag$i"); units+=("berth-$tag$i.service"); done
  t0=$("$PY" -c 'import os, sys, time
t = time.monotonic_ns() // 1000
for n in sys.argv[2:]: os.rename(f"{sys.argv[1]}/{n}.tmp", f"{sys.argv[1]}/specs/{n}.yaml")
print(t)' "$W" "${names[@]}")
  wait_for "$BURST $mode units active" 120 test_n_active "$tag" "$BURST"
  last=$(sd systemctl show -p ActiveEnterTimestampMonotonic --value "${units[@]}" | sort -n | tail -1)
  for i in "${names[@]}"; do rm "$W/specs/$i.yaml"; done
  wait_for "$BURST $mode units stopped" 120 test_n_active "$tag" 0
  wait_for "berthd's clean-up of the burst" 120 no_containers
  local net=(--network none) pids=()
  p0=$(now_us)
  for i in $(seq "$BURST"); do
    [ "$mode" = bridge ] && net=(-p $((18100 + i)):80)
    "${P[@]}" "${PRUN[@]}" "${net[@]}" --name "$tag$i" "$PIMG" sleep 3600 >/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}"
  p1=$(now_us)
  "${P[@]}" rm -fa -t 0 >/dev/null
  echo "$(( last - t0 )) $(( p1 - p0 ))" | awk '{printf "%.1f %.1f\n", $1/1000, $2/1000}' >> "$W/burst-$mode.txt"
}
echo "== $BURST at once, $BURST_ROUNDS rounds" >&2
: > "$W/burst-none.txt"; : > "$W/burst-bridge.txt"
for r in $(seq "$BURST_ROUNDS"); do
  burst_round none "n$r"; burst_round bridge "b$r"
done
LOAD_MID=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== throughput (iperf3)" >&2
IPERF=(/host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path /host/usr/lib/x86_64-linux-gnu /host/usr/bin/iperf3)
printf 'image_file: %s\nports: ["15201:5201"]\nvolumes: ["/usr:/host/usr:ro"]\ncommand: [%s, -s, -p, "5201"]\n' \
  "$W/busybox.tar" "$(IFS=,; echo "${IPERF[*]}")" > "$W/sink.yaml"
mv "$W/sink.yaml" "$W/specs/sink.yaml"
wait_for "berth iperf3 server" 60 is_active sink
BADDR=$(berth ps --json | jq -r '.[] | select(.name == "sink") | .network.address')
BGW=$(berth ps --json | jq -r '.[] | select(.name == "sink") | .network.gateway')
"${P[@]}" "${PRUN[@]}" -p 15201:5201 -v /usr:/host/usr:ro --name sink "$PIMG" "${IPERF[@]}" -s -p 5201 >/dev/null
PADDR=$("${P[@]}" inspect -f '{{.NetworkSettings.IPAddress}}' sink)
PGW=$("${P[@]}" inspect -f '{{.NetworkSettings.Gateway}}' sink)
# iperf3 CLIENT ARGS...: received MB/s (10^6 bytes) of one transfer, the first second omitted.
iperf() {
  local j
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    j=$("$@" -t "$IPERF_SECS" -O 1 -J 2>/dev/null) && break; sleep 0.5
  done
  jq -r '.end.sum_received.bits_per_second / 8 / 1000000 | . * 10 | round / 10' <<<"$j"
}
: > "$W/tput.txt"
for r in $(seq "$IPERF_ROUNDS"); do
  sd iperf3 -s -p 5999 -D -1 >/dev/null 2>&1 || true; sleep 0.2
  echo "loopback $(iperf sd iperf3 -c 127.0.0.1 -p 5999)" >> "$W/tput.txt"
  echo "berth-port-lo $(iperf sd iperf3 -c 127.0.0.1 -p 15201)" >> "$W/tput.txt"
  echo "berth-port-gw $(iperf sd iperf3 -c "$BGW" -p 15201)" >> "$W/tput.txt"
  echo "berth-direct $(iperf sd iperf3 -c "$BADDR" -p 5201)" >> "$W/tput.txt"
  echo "podman-port-lo $(iperf nsenter "--net=$PNS" iperf3 -c 127.0.0.1 -p 15201)" >> "$W/tput.txt"
  echo "podman-port-gw $(iperf nsenter "--net=$PNS" iperf3 -c "$PGW" -p 15201)" >> "$W/tput.txt"
  echo "podman-direct $(iperf nsenter "--net=$PNS" iperf3 -c "$PADDR" -p 5201)" >> "$W/tput.txt"
  echo "iperf round $r: load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Statistics: column COL of FILE; median and p90 (nearest rank).
col() { awk -v c="$2" '{print $c}' "$1" | sort -g; }
median() { awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
p90() { awk '{a[NR]=$1} END {i=int(NR*0.9+0.999); if(i<1)i=1; print a[i]}'; }
med() { col "$1" "$2" | median; }
p9() { col "$1" "$2" | p90; }
tp() { awk -v k="$1" '$1==k {print $2}' "$W/tput.txt" | sort -g | median; }
div() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b==0) print "n/a"; else printf "%.2f", a/b }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN{ printf "%.1f", a-b }'; }

for m in none bridge busy; do
  for c in 1 2 3 4; do declare "B_${m}_$c=$(med "$W/berth-$m.txt" $c)" "B9_${m}_$c=$(p9 "$W/berth-$m.txt" $c)"; done
  for c in 1 2; do declare "P_${m}_$c=$(med "$W/podman-$m.txt" $c)" "P9_${m}_$c=$(p9 "$W/podman-$m.txt" $c)"; done
done
for m in none bridge; do
  for c in 1 2; do declare "BU_${m}_$c=$(med "$W/burst-$m.txt" $c)"; done
done
for k in loopback berth-port-lo berth-port-gw berth-direct podman-port-lo podman-port-gw podman-direct; do
  declare "TP_${k//-/_}=$(tp "$k")"
done
RUNTIME=$(( $(date +%s) - T_START ))
v() { local n="$1_$2_$3"; echo "${!n}"; }   # v B|P|B9|P9 MODE COL
row() {   # row LABEL B|P COL
  local m cells=""
  for m in none bridge busy; do cells+=" $(v "$2" "$m" "$3") ($(v "${2}9" "$m" "$3")) |"; done
  echo "| $1 |$cells $(sub "$(v "$2" bridge "$3")" "$(v "$2" none "$3")") | $(sub "$(v "$2" busy "$3")" "$(v "$2" none "$3")") |"
}
ratio_row() {   # ratio_row LABEL BERTH_COL PODMAN_COL
  local m cells=""
  for m in none bridge busy; do cells+=" $(div "$(v B "$m" "$2")" "$(v P "$m" "$3")") |"; done
  for m in bridge busy; do
    cells+=" $(div "$(sub "$(v B "$m" "$2")" "$(v B none "$2")")" "$(sub "$(v P "$m" "$3")" "$(v P none "$3")")") |"
  done
  echo "| $1 |$cells"
}

out=bench/results/network.md
{
  echo "# Networking: start and stop cost of the bridge, throughput through a published port"
  echo
  echo "Run: \`bench/network.sh\` (ROUNDS=$ROUNDS, IPERF_SECS=$IPERF_SECS, IPERF_ROUNDS=$IPERF_ROUNDS, BURST=$BURST, BURST_ROUNDS=$BURST_ROUNDS) on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), hybrid cgroups; load average $LOAD0 at the start, $LOAD_MID after the start/stop rounds, $LOAD_END at the end (the machine was shared with builds); the script took $RUNTIME s. berthd and berth-shim release builds under systemd $(systemctl --version | awk 'NR==1 {print $2}') booted in private namespaces with their own network namespace; podman $(podman --version | awk '{print $3}') (runc, cgroupfs, private storage) in a second network namespace; netavark $(/usr/lib/podman/netavark --version | awk '{print $2}') for both; iperf3 $(iperf3 --version | awk 'NR==1 {print $2}')."
  echo
  echo "Busybox \`sleep\`, one container starting or stopping at a time; the bridge containers publish one TCP port (\`18080:80\`). *alone*: the only container on the bridge, so its start also creates the bridge and its firewall chains and its stop removes them; *beside*: another container (publishing \`18081:80\`) stays on the bridge. none and alone are interleaved within each round, beside runs after them; median (p90) in ms over $ROUNDS rounds, then the added cost of the bridge over none."
  echo
  echo "| interval | none | bridge alone | bridge beside | alone − none | beside − none |"
  echo "|---|---|---|---|---|---|"
  row "berth: spec file renamed into the spec directory → unit active (berthd's 200 ms debounce of spec events, its pass, rootfs, StartTransientUnit, then the row below)" B 1
  row "berth: unit activating → active (systemd's timestamps: the shim's work, network set-up included, up to READY=1)" B 2
  row "podman: \`podman run -d\` wall time (CLI start-up included; \`-p 18080:80\` on its default netavark bridge vs \`--network none\`)" P 1
  ratio_row "ratio berth spec → active / podman \`run -d\`" 1 1
  row "berth: spec file removed → systemd's \"Stopped\" (StopUnit, SIGKILL of the container, network teardown, shim exit)" B 3
  row "berth: systemd's \"Stopping\" → \"Stopped\" (the shim's stop, teardown included)" B 4
  row "podman: \`podman rm -f -t 0\` wall time" P 2
  ratio_row "ratio berth spec removed → stopped / podman \`rm -f\`" 3 2
  echo
  echo "$BURST containers started at once (ports \`18101:80\`... for the bridge), median of $BURST_ROUNDS in ms: berth from the first spec file renamed into the spec directory to the last unit active; podman $BURST \`run -d\` in parallel until all returned."
  echo
  echo "| $BURST at once | none | bridge + port | bridge / none |"
  echo "|---|---|---|---|"
  echo "| berth | $BU_none_1 | $BU_bridge_1 | $(div "$BU_bridge_1" "$BU_none_1") |"
  echo "| podman | $BU_none_2 | $BU_bridge_2 | $(div "$BU_bridge_2" "$BU_none_2") |"
  echo "| berth / podman | $(div "$BU_none_1" "$BU_none_2") | $(div "$BU_bridge_1" "$BU_bridge_2") | |"
  echo
  echo "TCP throughput into a container, iperf3 ($IPERF_SECS s per transfer, the first second omitted; server in the container, client on the namespace's host side), median of $IPERF_ROUNDS in MB/s:"
  echo
  echo "| path | berth | podman | berth / podman |"
  echo "|---|---|---|---|"
  echo "| published port, 127.0.0.1:15201 (DNAT in OUTPUT, forwarded over the bridge) | $TP_berth_port_lo | $TP_podman_port_lo | $(div "$TP_berth_port_lo" "$TP_podman_port_lo") |"
  echo "| published port, gateway address:15201 | $TP_berth_port_gw | $TP_podman_port_gw | $(div "$TP_berth_port_gw" "$TP_podman_port_gw") |"
  echo "| container's bridge address:5201 directly | $TP_berth_direct | $TP_podman_direct | $(div "$TP_berth_direct" "$TP_podman_direct") |"
  echo "| ratio published port (127.0.0.1) / direct | $(div "$TP_berth_port_lo" "$TP_berth_direct") | $(div "$TP_podman_port_lo" "$TP_podman_direct") | |"
  echo "| for scale: loopback in the namespace, no container | $TP_loopback | | |"
  echo
  echo "berth and podman get the same netavark rules and veths, so their throughput differs by the noise of a shared machine; the ratio that matters is published port / direct within each. Each transfer is CPU-bound on both ends on a shared 2-CPU machine, so plain loopback is a rough ceiling only."
  echo
  echo "Figures of every round: bench/results/network-raw.md."
} > "$out"
{
  echo "# Networking benchmark: every round of the run in network.md"
  echo
  echo "ms per round; berth: spec→active, activating→active, rm→stopped, stopping→stopped; podman: run -d, rm -f. Throughput in MB/s per transfer."
  for m in none bridge busy; do
    echo
    echo "- berth $m: $(paste -sd';' "$W/berth-$m.txt")"
    echo "- podman $m: $(paste -sd';' "$W/podman-$m.txt")"
  done
  echo
  echo "- $BURST at once, berth ms; podman ms: none $(paste -sd';' "$W/burst-none.txt"); bridge $(paste -sd';' "$W/burst-bridge.txt")"
  echo
  for k in loopback berth-port-lo berth-port-gw berth-direct podman-port-lo podman-port-gw podman-direct; do
    echo "- $k: $(awk -v k="$k" '$1==k {print $2}' "$W/tput.txt" | paste -sd' ')"
  done
} > bench/results/network-raw.md
cat "$out"
bash bench/readme.sh   # README.md shows these results

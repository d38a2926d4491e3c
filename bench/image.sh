#!/usr/bin/env bash
# Image pull benchmark: a ~200 MB image of 4 gzip layers in a local docker-registry (loopback, plain
# HTTP). In one run: berth pull (to the store) vs `skopeo copy docker://… oci:…`, and berth
# pull+unpack vs `podman pull` and `ctr images pull` (containerd started here with its own root,
# state and socket, stopped afterwards). Medians of $RUNS runs; results in bench/results/image.md.
# Run as root: bench/image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
[ "$(id -u)" = 0 ] || { echo "bench/image.sh: run as root" >&2; exit 1; }
scripts/setup.sh
cargo build --release --locked -p berth-agent --bin berth >&2
BERTH=$PWD/target/release/berth
W=$(mktemp -d /var/tmp/berth-bench-image.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  umount -R "$W"/podman/root/overlay 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# registry
PORT=$(free_port); REG=127.0.0.1:$PORT
cat > "$W/reg.yml" <<Y
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/regdata}}
http: {addr: $REG, secret: bench}
Y
docker-registry serve "$W/reg.yml" > "$W/reg.log" 2>&1 & pids+=($!)
for _ in $(seq 200); do curl -sf "http://$REG/v2/" >/dev/null && break; sleep 0.05; done

# image: 4 layers, each 32 MB random + 22 MB base64 text (compressible) -> ~215 MB gzip
echo "building the test image" >&2
umoci init --layout "$W/oci"; umoci new --image "$W/oci:bench"
for i in 1 2 3 4; do
  mkdir -p "$W/src$i/data$i"
  head -c 32M /dev/urandom > "$W/src$i/data$i/random.bin"
  head -c 16M /dev/urandom | base64 > "$W/src$i/data$i/text.txt"
  umoci insert --image "$W/oci:bench" "$W/src$i" /
  rm -rf "$W/src$i"
done
umoci config --image "$W/oci:bench" --architecture amd64 --os linux --config.cmd /bin/sh
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:bench" "docker://$REG/bench:v1"
rm -rf "$W/oci"
SIZE=$(skopeo inspect --tls-verify=false --raw "docker://$REG/bench:v1" | jq '[.layers[].size] | add')
echo "image: $SIZE bytes compressed in 4 layers" >&2

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# time_runs NAME PREPARE CMD: runs CMD $RUNS times after PREPARE, prints the median seconds
time_runs() {
  local name=$1 prep=$2 cmd=$3 ts=()
  for r in $(seq "$RUNS"); do
    eval "$prep" >/dev/null 2>&1
    sync
    local t0 t1; t0=$(date +%s.%N)
    eval "$cmd" > "$W/out.log" 2>&1 || { echo "$name failed:" >&2; cat "$W/out.log" >&2; exit 1; }
    t1=$(date +%s.%N)
    ts+=("$(awk "BEGIN {printf \"%.3f\", $t1 - $t0}")")
  done
  printf '%s\n' "${ts[@]}" | median
}

echo "berth pull (store only)" >&2
t_berth=$(time_runs berth "rm -rf $W/bs" "$BERTH pull -q --no-unpack --root $W/bs --insecure-registry $REG $REG/bench:v1")
echo "skopeo copy" >&2
t_skopeo=$(time_runs skopeo "rm -rf $W/sk" "skopeo copy --quiet --src-tls-verify=false docker://$REG/bench:v1 oci:$W/sk:bench")
echo "berth pull + unpack" >&2
t_berthu=$(time_runs berth-unpack "rm -rf $W/bu" "$BERTH pull -q --root $W/bu --insecure-registry $REG $REG/bench:v1")
echo "podman pull" >&2
PODMAN="podman --root $W/podman/root --runroot $W/podman/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend none"
t_podman=$(time_runs podman "$PODMAN rmi -af; $PODMAN system reset -f; rm -rf $W/podman" "$PODMAN pull -q --tls-verify=false $REG/bench:v1")
$PODMAN system reset -f >/dev/null 2>&1 || true

echo "ctr images pull (containerd)" >&2
start_containerd() {
  rm -rf "$W/ctd"; mkdir -p "$W/ctd"
  cat > "$W/ctd/config.toml" <<T
version = 2
root = "$W/ctd/root"
state = "$W/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/ctd/sock"
[ttrpc]
  address = "$W/ctd/ttrpc.sock"
[debug]
  address = ""
[metrics]
  address = ""
T
  containerd -c "$W/ctd/config.toml" > "$W/ctd.log" 2>&1 & CTD=$!
  for _ in $(seq 200); do ctr -a "$W/ctd/sock" version >/dev/null 2>&1 && break; sleep 0.05; done
}
stop_containerd() { kill "$CTD"; wait "$CTD" 2>/dev/null || true; umount -R "$W"/ctd/root/* 2>/dev/null || true; rm -rf "$W/ctd"; }
ts=()
for r in $(seq "$RUNS"); do
  start_containerd; sync
  t0=$(date +%s.%N)
  ctr -a "$W/ctd/sock" images pull --plain-http "$REG/bench:v1" > "$W/out.log" 2>&1 || { cat "$W/out.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  ts+=("$(awk "BEGIN {printf \"%.3f\", $t1 - $t0}")")
  stop_containerd
done
t_ctr=$(printf '%s\n' "${ts[@]}" | median)

mbs() { awk "BEGIN {printf \"%.0f\", $SIZE / 1000000 / $1}"; }
ratio() { awk "BEGIN {printf \"%.2f\", $1 / $2}"; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
{
  echo "# Image pull benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -r), store on $(df -T /var/tmp | awk 'NR==2 {print $2}')."
  echo "Command: \`bench/image.sh\` (RUNS=$RUNS, medians). Image: 4 gzip layers, $((SIZE / 1000000)) MB compressed,"
  echo "each 32 MB random + 22 MB base64 text, in Debian's docker-registry on loopback (plain HTTP)."
  echo
  echo "| what | time (s) | MB/s (compressed) | berth speed-up |"
  echo "|---|---:|---:|---:|"
  echo "| berth pull --no-unpack (to the OCI store) | $t_berth | $(mbs "$t_berth") | |"
  echo "| skopeo copy docker:// oci: | $t_skopeo | $(mbs "$t_skopeo") | $(ratio "$t_skopeo" "$t_berth")x |"
  echo "| berth pull (+ unpack as overlay lowers) | $t_berthu | $(mbs "$t_berthu") | |"
  echo "| podman pull (overlay) | $t_podman | $(mbs "$t_podman") | $(ratio "$t_podman" "$t_berthu")x |"
  echo "| ctr images pull (containerd 1.6, overlayfs) | $t_ctr | $(mbs "$t_ctr") | $(ratio "$t_ctr" "$t_berthu")x |"
  echo
  echo "Speed-up = peer time / berth time (pull vs skopeo; pull+unpack vs podman and ctr)."
} | tee bench/results/image.md
bash bench/readme.sh   # README.md shows these results

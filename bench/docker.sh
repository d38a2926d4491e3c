#!/usr/bin/env bash
# The docker CLI against berthd's Docker API vs against Debian's dockerd (docker.io), in one run:
#  1. `docker run --rm IMAGE true`, median of $RUNS;
#  2. `docker run -d IMAGE sleep 3600` x$N, total;
#  3. `docker ps` with those $N containers, median of $RUNS.
# Both engines run inside a systemd booted in private namespaces (as the tests do): their sockets,
# state and network stay there. dockerd runs with its own --data-root/--exec-root, --iptables=false
# and --bridge=none; its binary comes from Debian's docker.io package, unpacked into the work
# directory (not installed: the package would start a daemon on the host). Both pull the same
# busybox image from a registry inside the namespace. Containers run with `--network none` on both.
# Results in bench/results/docker.md. Run as root: bench/docker.sh (BUILD=debug to bench the
# debug binaries instead of a release build).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-9}
N=${N:-30}
BUILD=${BUILD:-release}
[ "$(id -u)" = 0 ] || { echo "bench/docker.sh: run as root" >&2; exit 1; }
scripts/setup.sh
if [ "$BUILD" = release ]; then
  cargo build --release --locked -p berth-agent -p berth-shim >&2
else
  cargo build --locked -p berth-agent -p berth-shim >&2
fi
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET/$BUILD
W=$(mktemp -d /var/tmp/berth-bench-docker.XXXXXX)
mkdir -p "$W/specs" "$W/state" "$W/reg" "$W/docker" "$W/deb"
examples/make-image.sh "$W/busybox.tar" bench >/dev/null
(cd "$W/deb" && apt-get download docker.io >/dev/null 2>&1 && dpkg-deb -x docker.io_*.deb x)
DOCKERD=$W/deb/x/usr/sbin/dockerd
DVER=$("$DOCKERD" --version | sed 's/^Docker version \([^,]*\).*/\1/')

NAME=bench-docker-$$
TB=/tmp/berth-tb
LAUNCHER=
cleanup() {
  if [ -n "$LAUNCHER" ]; then
    for e in berth docker; do dk "$e" rm -f $(dk "$e" ps -aq 2>/dev/null) >/dev/null 2>&1 || true; done
    sd systemctl stop dockerd-bench >/dev/null 2>&1 || true
    nsenter -t "$PID" -a systemctl poweroff >/dev/null 2>&1 || true
    wait "$LAUNCHER" 2>/dev/null || true
    rm -rf "${TB:?}/$NAME"
  fi
  rm -rf "$W"
}
trap cleanup EXIT
TB_BASE=$TB TB_BIND="$TARGET $W" setsid bash tests/scripts/sd-ns.sh "$NAME" hybrid >"$W/sd-ns.log" 2>&1 &
LAUNCHER=$!
for _ in $(seq 200); do [ -s "$TB/$NAME/pid" ] && break; sleep 0.05; done
PID=$(cat "$TB/$NAME/pid")
sd() { nsenter -t "$PID" -a "$@"; }
for _ in $(seq 200); do
  case $(sd systemctl is-system-running 2>/dev/null || true) in running|degraded) break;; esac; sleep 0.05
done
sd ip link set lo up

# The engines' sockets inside the namespace; `dk ENGINE ARGS` is the docker CLI against one.
declare -A SOCK=([berth]=/run/berth/docker.sock [docker]=/run/dockerd-bench/docker.sock)
dk() { local e=$1; shift; sd env "DOCKER_HOST=unix://${SOCK[$e]}" HOME=/tmp timeout 120 docker "$@"; }

REG=127.0.0.1:5000
printf 'version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s, secret: bench}\n' \
  "$W/reg/data" "$REG" > "$W/reg/config.yml"
sd systemd-run --quiet --unit=bench-registry docker-registry serve "$W/reg/config.yml"
for _ in $(seq 100); do sd bash -c "exec 3<>/dev/tcp/${REG/:/\/}" 2>/dev/null && break; sleep 0.1; done
sd skopeo copy --quiet --dest-tls-verify=false "oci-archive:$W/busybox.tar" "docker://$REG/bench/busybox:1"
IMG=$REG/bench/busybox:1

printf 'docker: {enable: true}\nregistries: {insecure: ["%s"]}\n' "$REG" > "$W/berthd.yaml"
sd systemd-run --quiet --unit=berthd-bench -p Type=notify -p NotifyAccess=main \
  "$BIN/berthd" --config "$W/berthd.yaml" --spec-dir "$W/specs" --state-dir "$W/state" --shim "$BIN/berth-shim"
sd systemd-run --quiet --unit=dockerd-bench -E "PATH=$W/deb/x/usr/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
  "$DOCKERD" --data-root "$W/docker" --exec-root /run/dockerd-bench/exec \
  -H "unix://${SOCK[docker]}" --pidfile /run/dockerd-bench/dockerd.pid \
  --iptables=false --ip-masq=false --bridge=none --userland-proxy=false
for e in berth docker; do
  for _ in $(seq 300); do dk "$e" version >/dev/null 2>&1 && break; sleep 0.1; done
  dk "$e" pull -q "$IMG" >/dev/null
done

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ms() { printf '%.1f' "$(echo "scale=3; $1 * 1000" | bc)"; }
ratio() { if [ "$1" = n/a ] || [ "$2" = n/a ]; then echo n/a; else printf '%.2f' "$(echo "scale=3; $2 / $1" | bc)"; fi; }

declare -A RUNRM DETACH PS RAW NOTE
for e in berth docker; do
  # 1. `run --rm true`; an engine that cannot do it gets n/a and the reason.
  : > "$W/runrm-$e.txt"
  if out=$(dk "$e" run --rm --network none "$IMG" true 2>&1); then
    for _ in $(seq "$RUNS"); do
      t0=$(now); dk "$e" run --rm --network none "$IMG" true >/dev/null; echo "$(now) - $t0" | bc >> "$W/runrm-$e.txt"
    done
    RUNRM[$e]=$(median < "$W/runrm-$e.txt")
  else
    RUNRM[$e]=n/a
    NOTE[$e]="\`docker run --rm\` against $e failed: $(echo "$out" | head -1)"
  fi
  # 2. N detached containers, one after the other.
  t0=$(now)
  for i in $(seq -w 1 "$N"); do
    dk "$e" run -d --network none --name "bench-$i" "$IMG" sleep 3600 >/dev/null
  done
  DETACH[$e]=$(echo "$(now) - $t0" | bc)
  # 3. `ps` with them.
  [ "$(dk "$e" ps -q | wc -l)" -eq "$N" ] || { echo "bench/docker.sh: $e does not list $N containers" >&2; exit 1; }
  : > "$W/ps-$e.txt"
  for _ in $(seq "$RUNS"); do
    t0=$(now); dk "$e" ps >/dev/null; echo "$(now) - $t0" | bc >> "$W/ps-$e.txt"
  done
  PS[$e]=$(median < "$W/ps-$e.txt")
  RAW[$e]="run --rm: $(tr '\n' ' ' < "$W/runrm-$e.txt"); ps: $(tr '\n' ' ' < "$W/ps-$e.txt")"
  dk "$e" rm -f $(dk "$e" ps -aq) >/dev/null
done

cell() { if [ "$1" = n/a ]; then echo n/a; else echo "$(ms "$1") ms"; fi; }
out=bench/results/docker.md
{
  echo "# The docker CLI: berthd's Docker API vs dockerd"
  echo
  echo "Run: \`BUILD=$BUILD bench/docker.sh\` (RUNS=$RUNS, N=$N) on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), hybrid cgroups; berthd and berth-shim $BUILD builds; dockerd $DVER (Debian's docker.io, \`--iptables=false --bridge=none\`, overlay2, runc $(runc --version | awk 'NR==1 {print $3}')); docker CLI $(docker version --format '{{.Client.Version}}' 2>/dev/null); both engines under systemd $(systemctl --version | awk 'NR==1 {print $2}') in private namespaces, image pulled by both from a registry there, containers with \`--network none\`. Ratio: dockerd's time over berth's (above 1: berth is faster)."
  echo
  echo "| what | berth | dockerd | ratio |"
  echo "|---|---|---|---|"
  echo "| \`docker run --rm busybox true\` (median of $RUNS) | $(cell "${RUNRM[berth]}") | $(cell "${RUNRM[docker]}") | $(ratio "${RUNRM[berth]}" "${RUNRM[docker]}") |"
  echo "| \`docker run -d\` x$N (total) | $(printf '%.2f' "${DETACH[berth]}") s | $(printf '%.2f' "${DETACH[docker]}") s | $(ratio "${DETACH[berth]}" "${DETACH[docker]}") |"
  echo "| \`docker ps\` with $N containers (median of $RUNS) | $(cell "${PS[berth]}") | $(cell "${PS[docker]}") | $(ratio "${PS[berth]}" "${PS[docker]}") |"
  echo
  for e in berth docker; do [ -n "${NOTE[$e]:-}" ] && { echo "${NOTE[$e]}"; echo; }; done
  echo "Raw seconds, berth: ${RAW[berth]}; dockerd: ${RAW[docker]}"
} > "$out"
cat "$out"
bash bench/readme.sh   # README.md shows these results

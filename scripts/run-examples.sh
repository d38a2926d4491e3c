#!/usr/bin/env bash
# The README's run command: builds berth, builds an offline busybox image, runs berthd on the specs
# in examples/containers (a web server, a one-shot job, a client that waits for the web server to be
# healthy) and shows `berth ps` and `systemctl status` of a container.
# Where the host's PID 1 is not systemd, a real systemd is booted in private namespaces first (as the
# tests do, tests/scripts/sd-ns.sh) and berthd runs as a service of that systemd.
# usage: scripts/run-examples.sh [--keep]   (as root; --keep leaves it all running)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
KEEP=${1:-}
[ "$(id -u)" = 0 ] || { echo "run-examples.sh: run as root (containers, systemd units)" >&2; exit 1; }

scripts/setup.sh
echo "== building berth" >&2
cargo build --bins -p berth-agent -p berth-shim >&2
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BIN=$TARGET/debug
EX=/var/tmp/berth-examples
echo "== building the example image (busybox, offline) into $EX/busybox.tar" >&2
examples/make-image.sh "$EX/busybox.tar" >/dev/null
mkdir -p "$EX/state"

if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm)" = systemd ]; then
  NS=()
  STATE=/var/lib/berth
else
  echo "== PID 1 is not systemd: booting one in private namespaces (tests/scripts/sd-ns.sh)" >&2
  NAME=examples-$$
  TB=/tmp/berth-tb
  TB_BASE=$TB TB_BIND="$TARGET $REPO/examples $EX" setsid bash tests/scripts/sd-ns.sh "$NAME" hybrid >"$EX/sd-ns.log" 2>&1 &
  LAUNCHER=$!
  for _ in $(seq 200); do [ -s "$TB/$NAME/pid" ] && break; sleep 0.05; done
  PID=$(cat "$TB/$NAME/pid")
  NS=(nsenter -t "$PID" -a)
  for _ in $(seq 200); do
    s=$("${NS[@]}" systemctl is-system-running 2>/dev/null || true)
    case $s in running|degraded) break;; esac; sleep 0.05
  done
  # The namespace's / is an overlay, which cannot hold overlay upper dirs: keep the store on the host disk.
  STATE=$EX/state
  if [ "$KEEP" != --keep ]; then
    trap '"${NS[@]}" systemctl poweroff >/dev/null 2>&1 || true; wait $LAUNCHER 2>/dev/null || true' EXIT
  fi
fi
sd() { "${NS[@]}" "$@"; }

echo "== starting berthd (Type=notify: this returns once its first reconcile pass is done)" >&2
sd systemctl stop berthd.service >/dev/null 2>&1 || true
sd systemctl reset-failed berthd.service >/dev/null 2>&1 || true
sd systemd-run --unit=berthd --description="berth agent (examples)" -p Type=notify -p NotifyAccess=main \
  -p WatchdogSec=30 -p Restart=on-failure \
  "$BIN/berthd" --spec-dir "$REPO/examples/containers" --state-dir "$STATE" --shim "$BIN/berth-shim"

echo "== waiting for the containers" >&2
for _ in $(seq 120); do
  n=$(sd "$BIN/berth" ps --json | jq '[.[] | select(.phase == "running" or .phase == "exited")] | length')
  [ "$n" -ge 3 ] && break; sleep 0.5
done
echo
echo "\$ berth ps"
sd "$BIN/berth" ps
echo
echo "\$ systemctl status berth-web"
sd systemctl status berth-web.service --no-pager -n 5 || true
echo
echo "\$ systemctl status berthd"
sd systemctl status berthd.service --no-pager -n 0 | head -8 || true
echo
echo "\$ curl http://127.0.0.1:8080/"
sd curl -sS http://127.0.0.1:8080/ || true
echo
echo "\$ berth logs job"
sd "$BIN/berth" logs job | grep -v systemd || true
if [ "$KEEP" = --keep ] && [ ${#NS[@]} -gt 0 ]; then
  echo
  echo "left running; inside the namespace: nsenter -t $PID -a $BIN/berth ps"
  echo "stop it: nsenter -t $PID -a systemctl poweroff"
fi

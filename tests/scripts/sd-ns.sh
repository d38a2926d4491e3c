#!/bin/bash
# Boot systemd as PID 1 of private namespaces, isolated from the host:
#  - private cgroup sub-tree (tb-NAME under this process's cgroup in every hierarchy) + cgroup namespace
#  - overlayfs root (host / read-only lower, tmpfs upper): nothing written to the host disk
#  - private /run, /tmp, /dev, fresh sysfs (ro), /proc/sys ro but its
#    per-netns /proc/sys/net, new netns (unless TB_NET=host)
#  - minimal boot target (basic.target only), host's enabled services not started
# usage: sd-ns.sh NAME [hybrid|unified]   (runs in foreground until systemd exits, then cleans up)
# state: $TB_BASE/NAME/{pid,console.log,share/} (TB_BASE defaults to /tmp/berth-tb)
#        pid = host PID of the namespace's systemd; share/ is bind-mounted at /srv/tb inside.
# Driven by tests/src/systemd.rs (TestSystemd). NEVER boot systemd on the host's own root: it
# would run tmpfiles (emptying /tmp), start every enabled service and write sysctls.
set -euo pipefail
NAME=${1:?name}; MODE=${2:-hybrid}
B=${TB_BASE:-/tmp/berth-tb}/$NAME
mkdir -p "$B/mnt" "$B/share"; chmod 755 "$B" "$B/share"; : > "$B/console.log"; rm -f "$B/pid"
CG=()   # our private cgroup dirs, for cleanup
cleanup() {  # leave our cgroups, remove the whole tb-NAME subtrees (depth first)
  for d in "${CG[@]}"; do echo $$ > "$(dirname "$d")/cgroup.procs" 2>/dev/null || true; done
  for i in $(seq 200); do   # wait until no process is left anywhere in our subtrees (namespace fully dead)
    [ -z "$(for d in "${CG[@]}"; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done)" ] && break; sleep 0.05; done
  for d in "${CG[@]}"; do find "$d" -mindepth 1 -type d 2>/dev/null; done > "$B/cgroups-left.txt"; n=$(wc -l < "$B/cgroups-left.txt")
  for d in "${CG[@]}"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  left=$(for d in "${CG[@]}"; do [ -d "$d" ] && echo "$d" || true; done)
  rm -f "$B/pid"
  echo "systemd exited rc=${rc:-?}; $n cgroup dirs left by systemd below tb-$NAME removed; leftover: ${left:-none}" >> "$B/systemd.out"
}
trap cleanup EXIT
while IFS=: read -r id ctrl path; do
  if [ -z "$ctrl" ]; then mp=/sys/fs/cgroup/unified
  elif [ "$ctrl" = name=systemd ]; then mp=/sys/fs/cgroup/systemd
  else mp=/sys/fs/cgroup/$ctrl; fi
  [ -d "$mp" ] || continue
  d="$mp${path%/}/tb-$NAME"
  mkdir -p "$d"
  if [ "$ctrl" = cpuset ]; then cat "$(dirname "$d")/cpuset.cpus" > "$d/cpuset.cpus"; cat "$(dirname "$d")/cpuset.mems" > "$d/cpuset.mems"; fi
  echo $$ > "$d/cgroup.procs"
  CG+=("$d")
done <<< "$(cat /proc/self/cgroup)"
NETFLAG=--net; [ "${TB_NET:-}" = host ] && NETFLAG=
export NAME B MODE TB_BIND NETFLAG
unshare --cgroup --pid --mount --uts --ipc $NETFLAG --fork --kill-child bash -euc '
  mount --make-rprivate /
  mount -t tmpfs -o mode=755 tbsd "$B/mnt"
  mkdir -p "$B/mnt/upper" "$B/mnt/work" "$B/mnt/root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$B/mnt/upper,workdir=$B/mnt/work" "$B/mnt/root"
  R=$B/mnt/root
  mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
  for p in sys sysrq-trigger; do [ -e "$R/proc/$p" ] || continue; mount --bind "$R/proc/$p" "$R/proc/$p"; mount -o remount,bind,ro "$R/proc/$p"; done
  # The network settings of the namespace stay writable (netavark sets forwarding on its bridge),
  # as systemd-nspawn does with a private network: /proc/sys/net is per network namespace.
  if [ -n "$NETFLAG" ]; then mount --bind "$R/proc/sys/net" "$R/proc/sys/net"; mount -o remount,bind,rw "$R/proc/sys/net"; fi
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
  mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup "$R/sys/fs/cgroup"
  if [ "$MODE" = unified ]; then
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
  else
    while IFS=: read -r id ctrl path; do
      [ -z "$ctrl" ] && continue
      d=${ctrl#name=}; mkdir "$R/sys/fs/cgroup/$d"
      o=$ctrl; [ "$ctrl" = name=systemd ] && o=none,name=systemd
      mount -t cgroup -o "nosuid,nodev,noexec,$o" cgroup "$R/sys/fs/cgroup/$d"
    done <<< "$(cat /proc/self/cgroup)"
    mkdir "$R/sys/fs/cgroup/unified"; mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup/unified"
  fi
  mount -t tmpfs -o mode=755,nosuid tmpfs "$R/dev"
  for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
  touch "$R/dev/console"; mount --bind "$B/console.log" "$R/dev/console"
  mkdir "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"; ln -s pts/ptmx "$R/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
  ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
  mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
  mkdir -p "$R/srv/tb"; mount --bind "$B/share" "$R/srv/tb"     # host dir shared with the tests
  # Host dirs seen live at the same path inside (overlayfs caches its lower layer: a binary
  # rebuilt after boot would otherwise show its old version). TB_BIND: space-separated paths.
  for d in ${TB_BIND:-}; do [ -d "$d" ] && mkdir -p "$R$d" && mount --bind "$d" "$R$d"; done
  # private identity + minimal target, only in the overlay upper
  tr -d - < /proc/sys/kernel/random/uuid > "$R/etc/machine-id"
  rm -f "$R"/etc/systemd/system/*.wants/* "$R/etc/systemd/system/default.target"
  cat > "$R/etc/systemd/system/tb.target" <<EOT
[Unit]
Description=testbed minimal target
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOT
  ln -sf tb.target "$R/etc/systemd/system/default.target"
  hostname "tb-$NAME"; echo "tb-$NAME" > "$R/etc/hostname"
  cd "$R"; mkdir -p .oldroot; pivot_root . .oldroot; umount -l /.oldroot; rmdir /.oldroot; cd /
  exec env -i container=other PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    setpriv --bounding-set -sys_module,-sys_time /lib/systemd/systemd --system --unit=tb.target --log-target=journal-or-kmsg
' > "$B/systemd.out" 2>&1 &
UPID=$!
trap 'kill -KILL $UPID 2>/dev/null; wait $UPID 2>/dev/null; rc=killed; exit 143' TERM INT HUP   # --kill-child then SIGKILLs the namespace init
for i in $(seq 100); do c=$(cat /proc/$UPID/task/$UPID/children 2>/dev/null || true); [ -n "$c" ] && break; sleep 0.05; done
echo ${c%% *} > "$B/pid"
rc=0; wait $UPID || rc=$?

#!/usr/bin/env bash
# Load soak, on demand: the tests of tests/tests/load.rs at full size (CI runs them shorter).
#  1. 30 containers under a real systemd, 29 with a health check every 2 s and one writing
#     numbered lines as fast as it can for $FLOOD_SECS s: lines journald kept (each once, in
#     order: the test fails otherwise), berthd's native API latency (`ps` every 50 ms over its
#     socket, measured in the test process), the others' health checks;
#  2. $SLEEPERS `sleep` containers: time to all running, berthd's and systemd's CPU and RSS per
#     container, tasks and memory per container, the ceilings that bound the count here.
# Results in bench/results/load.md. Run as root: bench/load.sh (debug binaries, as the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD_SECS=${FLOOD_SECS:-15}
SLEEPERS=${SLEEPERS:-200}
[ "$(id -u)" = 0 ] || { echo "bench/load.sh: run as root" >&2; exit 1; }
scripts/setup.sh
cargo build --locked --workspace --bins >&2
OUT=$(mktemp -d /var/tmp/berth-bench-load.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
BERTH_LOAD_OUT=$OUT BERTH_LOAD_FLOOD_SECS=$FLOOD_SECS BERTH_LOAD_SLEEPERS=$SLEEPERS \
  cargo test --locked -p berth-tests --test load -- --include-ignored --test-threads 1 >&2
F=$OUT/flood.json S=$OUT/sleepers.json
f() { jq -r "$1" "$F"; }
s() { jq -r "$1" "$S"; }
r1() { printf '%.1f' "$1"; }
out=bench/results/load.md
{
  echo "# Load: a log flood among 30 containers, and $SLEEPERS small containers"
  echo
  echo "Run: \`bench/load.sh\` (FLOOD_SECS=$FLOOD_SECS, SLEEPERS=$SLEEPERS) on $(date -u +%Y-%m-%d), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), hybrid cgroups, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; berthd and berth-shim debug builds under systemd $(systemctl --version | awk 'NR==1 {print $2}') and its journald (booted in private namespaces). The figures come from \`tests/tests/load.rs\`, which also asserts them (CI runs it with a 10 s flood and 60 containers)."
  echo
  echo "## 30 containers, one flooding its output for $FLOOD_SECS s"
  echo
  echo "The flooder runs busybox \`seq\` a thousand numbers at a time until a flag file appears, with journald's rate limit off for it (\`logging: {options: {rate-limit-burst: 0}}\`): the figure is the path from the container to the journal. journald reads the stream as fast as it can store it; the writer waits when it falls behind, so nothing is dropped."
  echo
  echo "| what | value |"
  echo "|---|---|"
  echo "| lines in journald (each once, in order) | $(f .lines) ($(r1 "$(f .lines_per_second)") lines/s) |"
  echo "| berthd \`ps\` latency, 30 containers idle (p50 / p99 / max, $(f .api_idle.requests) requests) | $(r1 "$(f .api_idle.p50_ms)") / $(r1 "$(f .api_idle.p99_ms)") / $(r1 "$(f .api_idle.max_ms)") ms |"
  echo "| berthd \`ps\` latency during the flood (p50 / p99 / max, $(f .api_during_flood.requests) requests) | $(r1 "$(f .api_during_flood.p50_ms)") / $(r1 "$(f .api_during_flood.p99_ms)") / $(r1 "$(f .api_during_flood.max_ms)") ms |"
  echo "| health checks of the 29 during the flood | $(f .health_checks_during_flood), all passed |"
  echo "| berthd CPU during the flood | $(r1 "$(f .berthd_cpu_percent_during_flood)") % of one CPU |"
  echo
  echo "## $SLEEPERS \`sleep\` containers from spec files"
  echo
  echo "| what | value |"
  echo "|---|---|"
  echo "| all running | $(r1 "$(s .seconds_to_all_running)") s ($(r1 "$(s .starts_per_second)")/s); quarters at $(s '.seconds_to_each_quarter | map(. * 10 | round / 10 | tostring) | join(", ")') s |"
  echo "| berthd \`ps\` latency while they start (p50 / p99 / max) | $(r1 "$(s .api_while_starting.p50_ms)") / $(r1 "$(s .api_while_starting.p99_ms)") / $(r1 "$(s .api_while_starting.max_ms)") ms |"
  echo "| berthd CPU per container started | $(r1 "$(s .berthd.cpu_ms_per_container)") ms |"
  echo "| berthd RSS | $(s .berthd.rss_kib_before) KiB before, $(s .berthd.rss_kib_after) KiB after ($(r1 "$(s .berthd.rss_kib_per_container)") KiB per container) |"
  echo "| berthd idle CPU with $SLEEPERS containers | $(r1 "$(s .berthd.idle_cpu_percent)") % |"
  echo "| systemd (PID 1) CPU per container started | $(r1 "$(s .systemd.cpu_ms_per_container)") ms |"
  echo "| systemd RSS | $(s .systemd.rss_kib_before) KiB before, $(s .systemd.rss_kib_after) KiB after ($(r1 "$(s .systemd.rss_kib_per_container)") KiB per container) |"
  echo "| systemd idle CPU | $(r1 "$(s .systemd.idle_cpu_percent)") % |"
  echo "| tasks per container (shim + \`sleep\`) | $(r1 "$(s .tree.tasks_per_container)") |"
  echo "| memory per container (the namespace's memory cgroup, page cache included) | $(r1 "$(s .tree.memory_mib_per_container)") MiB |"
  echo "| failed units | $(s .failed_units) |"
  echo
  echo "Ceilings here: pids.max of the tree $(s .limits.tree_pids_max), kernel pid_max $(s .limits.kernel_pid_max), threads-max $(s .limits.kernel_threads_max), systemd DefaultTasksMax $(s .limits.systemd_default_tasks_max), MemAvailable $(( $(s .limits.mem_available_kib) / 1024 )) MiB."
} > "$out"
cat "$out"
bash bench/readme.sh   # README.md shows these results

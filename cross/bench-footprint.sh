#!/usr/bin/env bash
# Footprint of the aarch64 gateway (the binary of the arm64 .deb) under qemu-aarch64 on this
# machine: stripped binary size, resident memory and CPU at idle and under devsim load from the
# host; the same run with the native x86-64 release binary for comparison (qemu-user adds its
# own memory and multiplies CPU time, so the native figures are the better guide to a Pi).
# Results go to docs/benchmarks.md, "Footprint on ARM".
#
#   bash cross/build.sh --target aarch64 --no-deb && cargo build --release -p gateway -p devsim
#   bash cross/bench-footprint.sh [--devices 1000] [--rate 1] [--duration 120] [--idle 60]
#
# Environment: CARGO_TARGET_DIR (default /var/cache/iot-gateway/target).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-/var/cache/iot-gateway/target}
arm_bin="$target_dir/dist/aarch64-unknown-linux-gnu/telemetry-gateway"
native_bin="$target_dir/release/telemetry-gateway"
devsim="$target_dir/release/devsim"
devices=1000 rate=1 duration=120 idle=60
while (($#)); do
  case "$1" in
    --devices) devices=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    *) echo "bench-footprint.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for f in "$arm_bin" "$native_bin" "$devsim"; do
  [ -x "$f" ] || { echo "missing $f (see the build commands at the top of $0)" >&2; exit 1; }
done
command -v qemu-aarch64 >/dev/null || { echo "qemu-aarch64 missing (apt-get install qemu-user)" >&2; exit 1; }

work=$(mktemp -d)
gw_pid=
cleanup() { [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
tick=$(getconf CLK_TCK)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    port_free "$p" && { echo "$p"; return; }
  done
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_one LABEL CMD...: starts the gateway, measures idle then load; prints one result line.
run_one() {
  local label=$1
  shift
  local mqtt http data
  mqtt=$(free_port) http=$(free_port)
  data="$work/$label-data"
  cat >"$work/$label.toml" <<EOF
[ingest.embedded]
mqtt5_listen = "127.0.0.1:$mqtt"
mqtt311_listen = "127.0.0.1:$(free_port)"
[buffer]
data_dir = "$data"
[telemetry]
listen = "127.0.0.1:$http"
log_format = "journald"
log_level = "warn"
EOF
  "$@" run --config "$work/$label.toml" 2>"$work/$label.log" &
  gw_pid=$!
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
    sleep 0.1
  done
  sleep 5 # settle after start
  local c0 c1 t0 t1 idle_rss
  c0=$(cpu_ticks "$gw_pid") t0=$(date +%s.%N)
  sleep "$idle"
  c1=$(cpu_ticks "$gw_pid") t1=$(date +%s.%N)
  idle_rss=$(rss_kib "$gw_pid")
  local idle_cpu
  idle_cpu=$(echo "($c1 - $c0) / $tick / ($t1 - $t0) * 100" | bc -l)

  "$devsim" --broker "127.0.0.1:$mqtt" --devices "$devices" --rate "$rate" \
    --duration "$duration" --drain-timeout 120 --json >"$work/$label-devsim.json" \
    2>"$work/$label-devsim.err" &
  local sim=$! peak=0 samples=() r
  c0=$(cpu_ticks "$gw_pid") t0=$(date +%s.%N)
  while kill -0 "$sim" 2>/dev/null; do
    r=$(rss_kib "$gw_pid")
    samples+=("$r")
    ((r > peak)) && peak=$r
    sleep 1
  done
  c1=$(cpu_ticks "$gw_pid") t1=$(date +%s.%N)
  wait "$sim" || { echo "devsim failed:"; cat "$work/$label-devsim.err"; }
  local load_cpu median
  load_cpu=$(echo "($c1 - $c0) / $tick / ($t1 - $t0) * 100" | bc -l)
  # Median RSS over the second half of the load (steady state).
  median=$(printf '%s\n' "${samples[@]:${#samples[@]}/2}" | sort -n |
    awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  # Stop time under load: SIGTERM 10 s into a second devsim run (what TimeoutStopSec must cover).
  "$devsim" --broker "127.0.0.1:$mqtt" --devices "$devices" --rate "$rate" --duration 30 \
    --drain-timeout 1 >/dev/null 2>&1 &
  sim=$!
  sleep 10
  local s0 s1 stop
  s0=$(date +%s.%N)
  kill -TERM "$gw_pid"
  wait "$gw_pid" || true
  s1=$(date +%s.%N)
  gw_pid=
  stop=$(echo "$s1 - $s0" | bc -l)
  kill "$sim" 2>/dev/null || true
  wait "$sim" 2>/dev/null || true
  local summary
  summary=$(tr -d '\n' <"$work/$label-devsim.json" |
    grep -o '"\(produced\|acked\|dropped\)":[0-9]*' | tr '\n' ' ')
  printf '| %s | %.1f MiB | %.2f %% | %.1f MiB | %.1f MiB | %.0f %% | %.1f s | %s|\n' "$label" \
    "$(echo "$idle_rss / 1024" | bc -l)" "$idle_cpu" "$(echo "$median / 1024" | bc -l)" \
    "$(echo "$peak / 1024" | bc -l)" "$load_cpu" "$stop" "$summary"
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "qemu: $(qemu-aarch64 --version | head -n 1)"
echo "aarch64 binary: $(stat -c %s "$arm_bin") bytes ($(echo "$(stat -c %s "$arm_bin") / 1048576" | bc -l | xargs printf '%.1f') MiB), $(file -b "$arm_bin" | cut -d, -f1-2)"
echo "load: $devices devices x $rate readings/s for $duration s; idle window $idle s"
echo
echo "| binary | idle RSS | idle CPU (of one core) | load RSS (median, 2nd half) | load RSS (peak) | load CPU (of one core) | SIGTERM to exit under load | devsim |"
echo "|---|---|---|---|---|---|---|---|"
run_one "aarch64-qemu" qemu-aarch64 -L /usr/aarch64-linux-gnu "$arm_bin"
run_one "x86_64-native" "$native_bin"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Footprint of the gateway at a typical site (issue 16): 1,000 devices x 1 reading/s, forwarding
# on to the limit-enforcing Kinesis emulator (tests/src/kinesis_emu, one shard by default).
# For the aarch64 binary of the arm64 .deb under qemu-aarch64 and for the native x86-64 binary:
# idle RSS and CPU, then under load the RSS after the warm-up (3 min by default) and its range
# over the rest of the run (10 min more by default: flat means max - min stays small), CPU, and
# the time SIGTERM takes under load. Under qemu-user the RSS is also given net of qemu's own
# memory: its binary, its C heap and its translated-code buffer (the one rwx mapping), which
# the guest does not have on a Pi. Results go to docs/benchmarks.md, "Footprint".
#
#   bash cross/build.sh --target aarch64 --no-deb
#   cargo build --release -p gateway -p devsim -p e2e --bins
#   bash cross/bench-footprint.sh [--devices 1000] [--rate 1] [--warmup 180] [--window 600]
#                                 [--idle 60] [--shards 1] [--only native|aarch64]
#                                 [--native BIN] [--devsim-args "--phase random"]
#                                 [--set section.key=value]... [--no-forward]
#                                 [--smaps FILE]
#
# --set adds a gateway setting (a TOML value, e.g. --set forward.delete_interval_ms=2000) to the
# generated config, for side-by-side runs of a knob. --no-forward leaves forwarding off (a
# reference for the wear figures). --smaps writes, at the warm-up's end, the gateway's resident
# memory per mapping (KiB resident and KiB anonymous, by file or [heap] / [stack] / [anon] and
# permissions): where the non-heap part of the RSS is.
#
# Environment: CARGO_TARGET_DIR (default /var/cache/iot-gateway/target).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-/var/cache/iot-gateway/target}
arm_bin="$target_dir/dist/aarch64-unknown-linux-gnu/telemetry-gateway"
native_bin="$target_dir/release/telemetry-gateway"
devsim="$target_dir/release/devsim"
emulator="$target_dir/release/kinesis-emulator"
devices=1000 rate=1 warmup=180 window=600 idle=60 shards=1 only= devsim_args=
declare -A extra=() # TOML section -> extra "key = value" lines (--set)
forward=true smaps_out=
while (($#)); do
  case "$1" in
    --devices) devices=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --native) native_bin=$2; shift 2 ;;
    --devsim-args) devsim_args=$2; shift 2 ;;
    --no-forward) forward=false; shift ;;
    --smaps) smaps_out=$2; shift 2 ;;
    --set)
      [[ $2 =~ ^([a-z_.0-9]+)\.([a-z_0-9]+)=(.+)$ ]] || { echo "--set wants section.key=value, got $2" >&2; exit 2; }
      extra[${BASH_REMATCH[1]}]+="${BASH_REMATCH[2]} = ${BASH_REMATCH[3]}"$'\n'
      shift 2 ;;
    *) echo "bench-footprint.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
duration=$((warmup + window))
needed=("$devsim" "$emulator")
[ "$only" != aarch64 ] && needed+=("$native_bin")
[ "$only" != native ] && needed+=("$arm_bin")
for f in "${needed[@]}"; do
  [ -x "$f" ] || { echo "missing $f (see the build commands at the top of $0)" >&2; exit 1; }
done
if [ "$only" != native ]; then
  command -v qemu-aarch64 >/dev/null || { echo "qemu-aarch64 missing (apt-get install qemu-user)" >&2; exit 1; }
fi

work=$(mktemp -d)
gw_pid= emu_pid=
cleanup() {
  [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null
  rm -rf "$work"
}
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
# Anonymous RSS (KiB): heap, stacks, allocator slack; not the binary's mapped pages.
anon_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
# RSS (KiB) of what qemu-user itself maps: its own binary, its C heap ([heap]: the guest's brk
# heap is a separate mapping) and the translated-code buffer (the only rwx mapping).
qemu_own_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { own = ($6 ~ /qemu-aarch64/ || $6 == "[heap]" || $2 ~ /^rwx/) }
       /^Rss:/ && own { sum += $2 }
       END { print sum + 0 }' "/proc/$1/smaps"
}
# Prints "RSS net-RSS anonymous-RSS" in KiB for the gateway process (net differs only under
# qemu, where the anonymous RSS includes qemu's own heap).
rss_sample() {
  local total
  total=$(rss_kib "$1")
  if [ "$2" = qemu ]; then
    echo "$total $((total - $(qemu_own_kib "$1"))) $(anon_kib "$1")"
  else
    echo "$total $total $(anon_kib "$1")"
  fi
}
# Resident and anonymous KiB per mapping (file or [heap]/[stack]/[anon], permissions), largest
# first, with a total line.
smaps_breakdown() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { key = ($6 == "" ? "[anon]" : $6) " " $2 }
       /^Rss:/ { rss[key] += $2; total += $2 } /^Anonymous:/ { an[key] += $2; anon += $2 }
       END { for (k in rss) if (rss[k] > 0) printf "%8d %8d  %s\n", rss[k], an[k], k
             printf "%8d %8d  total (KiB resident, KiB anonymous)\n", total, anon }' "/proc/$1/smaps" |
    sort -rn
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Bytes the process caused to be written to storage (SD-card wear).
written_bytes() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }
# Payload bytes the gateway received (its metric), for the wear ratio.
payload_bytes() {
  curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^gateway_ingest_payload_bytes_total/ { sum += $NF } END { printf "%d", sum }'
}

# The emulator, shared by both runs; its environment (endpoint, dummy credentials) is exported
# to the gateways.
"$emulator" --stream telemetry --shards "$shards" >"$work/emu.env" 2>"$work/emu.err" &
emu_pid=$!
for _ in $(seq 100); do
  grep -q AWS_ENDPOINT_URL "$work/emu.env" 2>/dev/null && break
  sleep 0.1
done
grep -q AWS_ENDPOINT_URL "$work/emu.env" || { echo "kinesis-emulator did not start:"; cat "$work/emu.err"; exit 1; }
set -a
# shellcheck disable=SC1091
. "$work/emu.env"
set +a

kib_mib() { echo "$1 / 1024" | bc -l | xargs printf '%.1f'; }

# run_one LABEL MODE CMD...: starts the gateway (MODE qemu or native), measures idle then load;
# prints one result line.
run_one() {
  local label=$1 mode=$2
  shift 2
  local mqtt http data
  mqtt=$(free_port) http=$(free_port)
  data="$work/$label-data"
  cat >"$work/$label.toml" <<EOF
[ingest.embedded]
mqtt5_listen = "127.0.0.1:$mqtt"
mqtt311_listen = "127.0.0.1:$(free_port)"
${extra[ingest.embedded]:-}
[buffer]
data_dir = "$data"
${extra[buffer]:-}
[forward]
enabled = $forward
stream_name = "telemetry"
${extra[forward]:-}
[telemetry]
listen = "127.0.0.1:$http"
log_format = "journald"
log_level = "warn"
${extra[telemetry]:-}
EOF
  local section
  for section in "${!extra[@]}"; do
    case "$section" in
      ingest.embedded | buffer | forward | telemetry) ;;
      *) printf '[%s]\n%s' "$section" "${extra[$section]}" >>"$work/$label.toml" ;;
    esac
  done
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
  idle_rss=$(rss_sample "$gw_pid" "$mode")
  local idle_cpu
  idle_cpu=$(echo "($c1 - $c0) / $tick / ($t1 - $t0) * 100" | bc -l)

  # shellcheck disable=SC2086
  "$devsim" --broker "127.0.0.1:$mqtt" --devices "$devices" --rate "$rate" \
    --duration "$duration" --drain-timeout 120 --json $devsim_args >"$work/$label-devsim.json" \
    2>"$work/$label-devsim.err" &
  local sim=$! started r w0 w1 p0 p1
  started=$(date +%s) w0=$(written_bytes "$gw_pid") p0=$(payload_bytes "$http")
  c0=$(cpu_ticks "$gw_pid") t0=$(date +%s.%N)
  # One sample a second: "seconds-since-load-start total-KiB net-KiB anonymous-KiB".
  local smaps_done=
  while kill -0 "$sim" 2>/dev/null; do
    r=$(rss_sample "$gw_pid" "$mode")
    if [ -n "$smaps_out" ] && [ -z "$smaps_done" ] && (($(date +%s) - started >= warmup)); then
      smaps_breakdown "$gw_pid" >"$smaps_out.$label"
      smaps_done=1
    fi
    echo "$(($(date +%s) - started)) $r" >>"$work/$label.rss"
    sleep 1
  done
  c1=$(cpu_ticks "$gw_pid") t1=$(date +%s.%N) w1=$(written_bytes "$gw_pid") p1=$(payload_bytes "$http")
  wait "$sim" || { echo "devsim failed:"; cat "$work/$label-devsim.err"; }
  local load_cpu
  load_cpu=$(echo "($c1 - $c0) / $tick / ($t1 - $t0) * 100" | bc -l)
  # From the warm-up's end while devices still produce: the first sample, min and max; and
  # the peak of the whole load.
  local at lo hi nat nlo nhi peak anon
  read -r at lo hi nat nlo nhi peak anon < <(awk -v w="$warmup" -v d="$duration" '
    $1 >= w && $1 <= d { if (!n++) { at = $2; nat = $3; anon = $4; lo = hi = $2; nlo = nhi = $3 }
                         if ($2 < lo) lo = $2; if ($2 > hi) hi = $2
                         if ($3 < nlo) nlo = $3; if ($3 > nhi) nhi = $3 }
    { if ($2 > peak) peak = $2 }
    END { print at + 0, lo + 0, hi + 0, nat + 0, nlo + 0, nhi + 0, peak + 0, anon + 0 }' "$work/$label.rss")
  local forwarded
  forwarded=$(curl -fsS "http://127.0.0.1:$http/metrics" 2>/dev/null |
    awk '/^gateway_forward_readings_sent_total/ { sent += $NF }
         /^gateway_forward_throttled_records_total/ { throttled += $NF }
         END { printf "%d readings, %d throttled", sent, throttled }')
  local acked
  acked=$(tr -d '\n' <"$work/$label-devsim.json" | grep -o '"acked":[0-9]*' | cut -d: -f2)
  [ "${acked:-0}" -gt 0 ] &&
    forwarded="$forwarded; $(((w1 - w0) / acked)) disk bytes written per acked reading"
  [ "$((p1 - p0))" -gt 0 ] &&
    forwarded="$forwarded, $(echo "($w1 - $w0) / ($p1 - $p0)" | bc -l | xargs printf '%.2f') per payload byte"
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
  local summary net=
  summary=$(tr -d '\n' <"$work/$label-devsim.json" |
    grep -o '"\(produced\|acked\|dropped\|ack_latency_p99_ms\)":[0-9.]*' | tr '\n' ' ')
  if [ "$mode" = qemu ]; then
    net=" (net of qemu: $(kib_mib "$nat") MiB, window $(kib_mib "$nlo")-$(kib_mib "$nhi"))"
  else
    net=" (anonymous $(kib_mib "$anon") MiB)"
  fi
  printf '| %s | %s MiB | %.2f %% | %s MiB%s | %s-%s MiB | %s MiB | %.0f %% | %s | %.1f s | %s|\n' \
    "$label" "$(kib_mib "${idle_rss%% *}")" "$idle_cpu" "$(kib_mib "$at")" "$net" \
    "$(kib_mib "$lo")" "$(kib_mib "$hi")" "$(kib_mib "$peak")" "$load_cpu" "${forwarded:-?}" \
    "$stop" "$summary"
  cp "$work/$label.rss" "${RSS_LOG_DIR:-/tmp}/footprint-$label.rss" 2>/dev/null || true
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$only" != native ]; then
  echo "qemu: $(qemu-aarch64 --version | head -n 1)"
  echo "aarch64 binary: $(stat -c %s "$arm_bin") bytes ($(echo "$(stat -c %s "$arm_bin") / 1048576" | bc -l | xargs printf '%.1f') MiB), $(file -b "$arm_bin" | cut -d, -f1-2)"
fi
[ "$only" != aarch64 ] && echo "native binary: $native_bin ($(stat -c %s "$native_bin") bytes)"
echo "load: $devices devices x $rate readings/s for $duration s ($warmup s warm-up, then a $window s window), devsim ${devsim_args:-defaults}; forwarding to the emulator, $shards shard(s) (forwarding on: $forward)"
for section in "${!extra[@]}"; do
  echo "settings [$section]: $(printf '%s' "${extra[$section]}" | paste -sd ';')"
done
echo
echo "| binary | idle RSS | idle CPU (of one core) | RSS after the warm-up | RSS over the window (min-max) | peak RSS | load CPU (of one core) | forwarded | SIGTERM to exit under load | devsim |"
echo "|---|---|---|---|---|---|---|---|---|---|"
if [ "$only" != native ]; then run_one "aarch64-qemu" qemu qemu-aarch64 -L /usr/aarch64-linux-gnu "$arm_bin"; fi
if [ "$only" != aarch64 ]; then run_one "x86_64-native" native "$native_bin"; fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

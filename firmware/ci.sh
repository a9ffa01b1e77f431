#!/usr/bin/env bash
# Firmware checks: builds the board images (release: Nucleo, ESP32-C3, the virtual board), prints their flash and static RAM use
# and enforces the Nucleo-F429ZI budget, runs the board-support unit tests on the host and the
# core's tests on a Cortex-M4 under QEMU. Installs what it needs when missing (so it is safe to
# run again) and exits non-zero on any failure or missing tool.
#
#   bash firmware/ci.sh
#
# Environment:
#   FW_TARGET_DIR     build cache, one subfolder per crate (default /var/cache/iot-gateway/fw-target;
#                     CARGO_TARGET_DIR is ignored so firmware builds never mix with host builds)
#   FW_RING_CAPACITY  ring capacity in readings the images are built with (default 4096)
#   QEMU_TIMEOUT      seconds before a hung QEMU run counts as failed (default 120)
#   CARGO_BUILD_JOBS  parallel rustc jobs (default 2)
# The other FW_* build settings (firmware/README.md) are passed through to the builds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
fw_target=${FW_TARGET_DIR:-/var/cache/iot-gateway/fw-target}
export FW_RING_CAPACITY=${FW_RING_CAPACITY:-4096}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
qemu_timeout=${QEMU_TIMEOUT:-120}
unset CARGO_TARGET_DIR

# Nucleo-F429ZI budget: flash (code + rodata + data) and static RAM (data + bss) without the ring.
STM32_FLASH_BUDGET=$((128 * 1024))
STM32_RAM_BUDGET=$((32 * 1024))
# The TLS image (--features tls) does not fit that budget (issue 12: embedded-tls with P-256
# costs ~78 KB of code and ~14 KiB of RAM); its own ceiling keeps it from creeping. Raised from
# 192 to 200 KiB when DNS, SNTP and the watchdog (issue 14) took the image to 191.9 KiB.
STM32_TLS_FLASH_BUDGET=$((200 * 1024))
STM32_TLS_RAM_BUDGET=$((48 * 1024))

started=$(date +%s)
step() { printf '\n=== firmware: %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }
die() { printf 'firmware/ci.sh: %s\n' "$*" >&2; exit 1; }

step "Prerequisites"
apt_updated=
need_apt() { # need_apt COMMAND PACKAGE: installs PACKAGE from Debian when COMMAND is missing
  command -v "$1" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "$1 is missing and apt-get is not available: install $2"
  if [ -z "$apt_updated" ]; then
    apt-get update -qq || die "apt-get update failed; cannot install $2 (needed for $1)"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
    || die "apt-get install $2 failed; $1 is needed"
  command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 is still missing"
}
need_apt qemu-system-arm qemu-system-arm
need_apt readelf binutils
need_apt nm binutils
need_apt timeout coreutils
need_apt openssl openssl
command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust with rustup"
# The toolchain and both MCU targets come from rust-toolchain.toml; rustup installs what it lacks.
(cd "$root" && rustup toolchain install >/dev/null 2>&1) || true
installed=$(cd "$root" && rustup target list --installed)
for target in thumbv7em-none-eabihf riscv32imc-unknown-none-elf; do
  grep -qx "$target" <<<"$installed" || (cd "$root" && rustup target add "$target") \
    || die "cannot install the Rust target $target"
done
qemu-system-arm --version | head -n 1

step "Formatting of the firmware crates outside the workspace"
for crate in boards/common boards/lan9118 boards/mps2-an386 boards/nucleo-f429zi boards/esp32c3 qemu-tests; do
  (cd "$here/$crate" && cargo fmt -- --check) || die "cargo fmt: $crate is not formatted"
done

step "Board images (release) and their feature sets"
build_board() { # build_board CRATE TARGET [FEATURE]: prints the ELF path
  local crate=$1 target=$2 feature=${3:-}
  local dir="$fw_target/$crate${feature:+-$feature}"
  (cd "$here/boards/$crate" && CARGO_TARGET_DIR="$dir" cargo build --locked --release ${feature:+--features "$feature"}) >&2
  # Host-only features must never reach an image.
  local leaks
  leaks=$(cd "$here/boards/$crate" && cargo tree --locked -e features --target "$target" \
    | grep -E 'embassy-time feature "std"|tokio|embassy-time feature "mock-driver"' || true)
  [ -z "$leaks" ] || die "$crate pulls host features into the image: $leaks"
  echo "$dir/$target/release/$crate"
}
stm32_elf=$(build_board nucleo-f429zi thumbv7em-none-eabihf)
esp_elf=$(build_board esp32c3 riscv32imc-unknown-none-elf)
# The virtual board (QEMU mps2-an386); tests/tests/virtual_board.rs builds it again with the
# settings of each test and runs it against a gateway.
virtual_elf=$(build_board mps2-an386 thumbv7em-none-eabihf)

step "TLS images (--features tls; a site CA of site-certs.sh kept in the build cache)"
# The certificates stay between runs so the images are not rebuilt for new ones every time.
tls_site="$fw_target/tls-site"
if [ ! -f "$tls_site/devices/sensor-ci.crt" ]; then
  rm -rf "$tls_site"
  site_certs="$root/gateway/deploy/tls/site-certs.sh"
  bash "$site_certs" ca "$tls_site" firmware-ci >/dev/null
  bash "$site_certs" gateway "$tls_site" gateway.site.lan >/dev/null
  bash "$site_certs" device "$tls_site" sensor-ci >/dev/null
fi
export FW_TLS_CA="$tls_site/ca.crt" FW_TLS_SERVER_NAME=gateway.site.lan
export FW_TLS_CERT="$tls_site/devices/sensor-ci.crt" FW_TLS_KEY="$tls_site/devices/sensor-ci.key"
stm32_tls_elf=$(FW_BROKER=192.168.1.10:8883 build_board nucleo-f429zi thumbv7em-none-eabihf tls)
esp_tls_elf=$(FW_BROKER=192.168.1.10:8883 build_board esp32c3 riscv32imc-unknown-none-elf tls)
unset FW_TLS_CA FW_TLS_SERVER_NAME FW_TLS_CERT FW_TLS_KEY

step "Size report (FW_RING_CAPACITY=$FW_RING_CAPACITY readings)"
# Sections from the ELF header table: flash = allocated sections with contents (code, rodata,
# initialised data); static RAM = allocated writable sections (data, bss, uninit, heap arenas).
sizes() { # sizes ELF: prints "code rodata data bss"
  local code=0 rodata=0 data=0 bss=0 name type addr off size es flags rest
  while read -r name type addr off size es flags rest; do
    [ -n "$rest" ] || flags=  # no flags column: the section is not allocated
    case "$flags" in *A*) ;; *) continue ;; esac
    size=$(( 16#$size ))
    case "$type:$flags" in
      PROGBITS:*W*) data=$(( data + size )) ;;
      PROGBITS:*X*) code=$(( code + size )) ;;
      PROGBITS:*) rodata=$(( rodata + size )) ;;
      NOBITS:*W*) bss=$(( bss + size )) ;;
    esac
  done < <(readelf -S -W "$1" | sed -n 's/^ *\[ *[0-9]*\] //p')
  echo "$code $rodata $data $bss"
}
# The ring: FW_RING_CAPACITY readings of 16 bytes plus 96 bytes of bookkeeping
# (sensor_node_core::ring::ring_bytes); checked against the node's static below.
ring_bytes=$(( FW_RING_CAPACITY * 16 + 96 ))
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
report() { # report BOARD ELF: prints a line, sets flash and ram_wo_ring
  local board=$1 elf=$2 code rodata data bss node
  read -r code rodata data bss < <(sizes "$elf")
  flash=$(( code + rodata + data ))
  local ram=$(( data + bss ))
  ram_wo_ring=$(( ram - ring_bytes ))
  node=$(nm -S -C "$elf" | grep -m1 -E ' [bBdD] .*::NODE(::|$)' | cut -d' ' -f2 || true)
  [ -n "$node" ] || die "$board: no NODE static in the image; cannot check the ring size"
  node=$(( 16#$node ))
  [ "$node" -ge "$ring_bytes" ] && [ "$node" -le $(( ring_bytes + 1024 )) ] \
    || die "$board: the node static is $node B, not about the ring's $ring_bytes B"
  printf '%-18s flash %8d B (%s: code %d, rodata %d, data %d)   static RAM %7d B (%s; data %d, bss %d)   without the ring %7d B (%s)\n' \
    "$board" "$flash" "$(kib "$flash")" "$code" "$rodata" "$data" "$ram" "$(kib "$ram")" "$data" "$bss" \
    "$ram_wo_ring" "$(kib "$ram_wo_ring")"
}
echo "ring: $FW_RING_CAPACITY readings x 16 B + 96 B = $ring_bytes B ($(kib "$ring_bytes")) of static RAM in each image"
report esp32c3 "$esp_elf"
esp_flash=$flash esp_ram=$ram_wo_ring
report esp32c3+tls "$esp_tls_elf"
printf '               TLS costs the esp32c3 %d B of flash (%s) and %d B of static RAM (%s)\n' \
  $(( flash - esp_flash )) "$(kib $(( flash - esp_flash )))" $(( ram_wo_ring - esp_ram )) "$(kib $(( ram_wo_ring - esp_ram )))"
echo "               (esp32c3 static RAM includes the Wi-Fi heap: 36 KiB in .bss, 64 KiB reclaimed bootloader RAM in .dram2_uninit)"
report mps2-an386 "$virtual_elf"
echo "               (the virtual board: no budget; QEMU gives it 4 MiB of each)"
report nucleo-f429zi "$stm32_elf"
over=
[ "$flash" -le "$STM32_FLASH_BUDGET" ] || over="flash $flash B > $STM32_FLASH_BUDGET B"
[ "$ram_wo_ring" -le "$STM32_RAM_BUDGET" ] || over="${over:+$over; }static RAM without the ring $ram_wo_ring B > $STM32_RAM_BUDGET B"
[ -z "$over" ] || die "nucleo-f429zi is over its budget: $over"
echo "nucleo-f429zi budget: flash <= 128 KiB, static RAM without the ring <= 32 KiB: within"
stm32_flash=$flash stm32_ram=$ram_wo_ring
report nucleo-f429zi+tls "$stm32_tls_elf"
printf '               TLS costs the nucleo-f429zi %d B of flash (%s) and %d B of static RAM (%s)\n' \
  $(( flash - stm32_flash )) "$(kib $(( flash - stm32_flash )))" $(( ram_wo_ring - stm32_ram )) "$(kib $(( ram_wo_ring - stm32_ram )))"
over=
[ "$flash" -le "$STM32_TLS_FLASH_BUDGET" ] || over="flash $flash B > $STM32_TLS_FLASH_BUDGET B"
[ "$ram_wo_ring" -le "$STM32_TLS_RAM_BUDGET" ] || over="${over:+$over; }static RAM without the ring $ram_wo_ring B > $STM32_TLS_RAM_BUDGET B"
[ -z "$over" ] || die "nucleo-f429zi+tls is over its ceiling: $over"
echo "nucleo-f429zi+tls: over the 128 KiB / 32 KiB budget by design (TLS is opt-in); within its ceiling of 200 KiB flash, 48 KiB static RAM without the ring"

step "Board support unit tests (host)"
(cd "$here/boards/common" && CARGO_TARGET_DIR="$fw_target/common" cargo test --locked)

step "Core tests and the LAN9118 driver on a Cortex-M4 (QEMU mps2-an386, timeout ${qemu_timeout}s)"
(cd "$here/qemu-tests" && CARGO_TARGET_DIR="$fw_target/qemu-tests" cargo build --locked --release)
qemu_log=$(mktemp)
trap 'rm -f "$qemu_log"' EXIT
status=0
timeout "$qemu_timeout" qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic \
  -semihosting-config enable=on,target=native \
  -kernel "$fw_target/qemu-tests/thumbv7em-none-eabihf/release/qemu-tests" </dev/null \
  | tee "$qemu_log" || status=$?
[ "$status" -ne 124 ] || die "QEMU run timed out after ${qemu_timeout}s"
[ "$status" -eq 0 ] || die "core tests failed on the Cortex-M4 (QEMU exit status $status)"
# Every test the core defines must have run: the list in target_tests.rs is kept by hand.
defined=$(grep -rhE '^\s*#\[(cfg_attr\(test, test\)|test)\]\s*$' "$here/core/src" | wc -l)
ran=$(grep -c '^test .* \.\.\. ok$' "$qemu_log" || true)
[ "$ran" -eq "$defined" ] \
  || die "QEMU ran $ran tests but firmware/core/src defines $defined: list them all in core/src/target_tests.rs"
grep -q '^driver lan9118 loopback (.*) \.\.\. ok$' "$qemu_log" \
  || die "the LAN9118 driver's loopback test against QEMU's model did not pass"

step "Done in $(( $(date +%s) - started )) s"

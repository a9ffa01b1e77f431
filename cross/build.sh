#!/usr/bin/env bash
# Cross-builds the gateway (and devsim) for 64-bit (aarch64) and 32-bit (armv7) ARM Linux with
# Debian's cross gcc, and packages the gateway as telemetry-gateway_<version>_{arm64,armhf}.deb.
# Installs what is missing first (targets, cross gcc, qemu-user), so it is safe to run again.
#
#   bash cross/build.sh                  # both targets, binaries and .debs
#   bash cross/build.sh --target aarch64 # one target (aarch64 | armv7 | a Rust target triple)
#   bash cross/build.sh --no-deb         # binaries only
#   bash cross/build.sh --no-devsim      # the gateway only
#
# Outputs (CARGO_TARGET_DIR defaults to /var/cache/iot-gateway/target, as in tests/run-all):
#   $CARGO_TARGET_DIR/dist/<target>/{telemetry-gateway,devsim}  stripped copies (what is shipped)
#   $CARGO_TARGET_DIR/deb/telemetry-gateway_<v>-1_<arch>.deb
# Built with the `ship` profile (root Cargo.toml: opt-level "z", fat LTO, one codegen unit),
# not `release` as the host binaries of tests/run-all: the shipped binary is ~46 % smaller
# (docs/benchmarks.md, "Footprint (issue 16)"); the host side of the build (build scripts, proc
# macros) is built once for both targets.
# The linker settings live in cross/cargo-config.toml, passed with `cargo --config`, so plain
# host builds never see them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/iot-gateway/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

targets=() deb=yes devsim=yes
while (($#)); do
  case "$1" in
    --target)
      case "${2:?--target needs a value}" in
        aarch64 | arm64) targets+=(aarch64-unknown-linux-gnu) ;;
        armv7 | armhf) targets+=(armv7-unknown-linux-gnueabihf) ;;
        *) targets+=("$2") ;;
      esac
      shift 2 ;;
    --no-deb) deb=no; shift ;;
    --no-devsim) devsim=no; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "cross/build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

bash "$root/cross/install-prerequisites"

packages=(-p gateway)
[ $devsim = yes ] && packages+=(-p devsim)
debs=()
for target in "${targets[@]}"; do
  started=$(date +%s)
  cargo --config "$root/cross/cargo-config.toml" build --locked --profile ship \
    --target "$target" "${packages[@]}"
  dist="$CARGO_TARGET_DIR/dist/$target"
  mkdir -p "$dist"
  case "$target" in
    aarch64-*) strip_tool=aarch64-linux-gnu-strip ;;
    armv7-*) strip_tool=arm-linux-gnueabihf-strip ;;
    *) echo "cross/build.sh: no strip tool known for $target" >&2; exit 2 ;;
  esac
  for bin in telemetry-gateway devsim; do
    [ $bin = devsim ] && [ $devsim = no ] && continue
    "$strip_tool" -o "$dist/$bin.tmp" "$CARGO_TARGET_DIR/$target/ship/$bin"
    mv "$dist/$bin.tmp" "$dist/$bin"
  done
  echo "cross/build.sh: $target built in $(($(date +%s) - started)) s:"
  ls -l "$dist"/*
  if [ $deb = yes ]; then
    started=$(date +%s)
    debs+=("$(bash "$root/cross/package-deb.sh" "$target" \
      "$dist/telemetry-gateway" "$CARGO_TARGET_DIR/deb")")
    echo "cross/build.sh: ${debs[-1]} packaged in $(($(date +%s) - started)) s"
  fi
done

# Check the packages: metadata, contents, the unit (systemd-analyze) and lintian if present.
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
for f in "${debs[@]}"; do
  echo
  echo "=== $f"
  dpkg-deb --info "$f"
  dpkg-deb --contents "$f"
  if command -v lintian >/dev/null; then
    # Not for the Debian archive: no ITP bug to close.
    lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs "$f"
  fi
  if command -v systemd-analyze >/dev/null; then
    tree="$check/$(basename "$f" .deb)"
    dpkg-deb --extract "$f" "$tree"
    # Syntax, directives and ExecStart of the packaged unit (ExecStart pointed at the unpacked
    # binary). verify exits 0 on unknown keys, so any output counts as a failure.
    sed "s|/usr/bin/telemetry-gateway|$tree/usr/bin/telemetry-gateway|" \
      "$tree/usr/lib/systemd/system/telemetry-gateway.service" >"$tree/telemetry-gateway.service"
    findings=$(systemd-analyze verify "$tree/telemetry-gateway.service" 2>&1) || true
    if [ -n "$findings" ]; then
      echo "systemd-analyze verify: $findings" >&2
      exit 1
    fi
    echo "systemd-analyze verify: telemetry-gateway.service OK;" \
      "$(systemd-analyze security --offline=yes "$tree/telemetry-gateway.service" 2>/dev/null | tail -n 1)"
  fi
done

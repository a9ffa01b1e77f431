#!/usr/bin/env bash
# Builds the decoder fuzz target with libFuzzer's coverage instrumentation on the stable
# toolchain (the same LLVM passes cargo-fuzz enables; no sanitizer is needed for safe Rust)
# and fuzzes for FUZZ_SECONDS (default 30), starting from the committed corpus.
# New inputs go to a scratch directory so the committed corpus stays small and reviewed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-30}
target_dir=${CARGO_TARGET_DIR:-$here/target}/fuzz
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS off build scripts (they have no libFuzzer to link).
host=$(rustc -vV | sed -n "s/^host: //p")
cargo build --manifest-path "$here/Cargo.toml" --release --target "$host" --target-dir "$target_dir" --bin decode
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$target_dir/$host/release/decode" -max_total_time="$seconds" -max_len=4200 \
  -artifact_prefix="$here/artifacts-" "$scratch" "$here/corpus/decode"

#!/usr/bin/env bash
# Runs cipherline's fuzz targets, each for a bounded time, one after the
# other on one core.
#
#   fuzz/run.sh TARGET|all [SECONDS]     (default: all, 60 seconds each)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on stable Rust:
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags, and the targets are
# built without a sanitizer (the code under test forbids `unsafe`, so
# AddressSanitizer would find nothing that a panic does not already show).
# New inputs go to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET
# (both gitignored); fuzz/seeds/TARGET is the committed seed corpus
# (regenerate it with `cargo run --release --example make_seeds
# --manifest-path fuzz/Cargo.toml -- fuzz/seeds`). Prints one summary line
# per target: name, seconds, executions, crashes.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(deframer handshake_message server_handshake client_handshake record_open session app_message key_file)
which="${1:-all}"
seconds="${2:-60}"
if [ "$which" = all ]; then
  targets=("${TARGETS[@]}")
else
  targets=("$which")
fi

export RUSTC_BOOTSTRAP=1
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  cargo fuzz build --sanitizer none -O
fi
bin_dir="target/x86_64-unknown-linux-gnu/release"

status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  log="artifacts/$t/last-run.log"
  echo "== $t: ${seconds}s"
  set +e
  "$bin_dir/$t" "corpus/$t" "seeds/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(find "artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  echo "fuzz $t seconds=$seconds execs=$execs crashes=$crashes exit=$rc"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -5 || true
  fi
done
exit "$status"

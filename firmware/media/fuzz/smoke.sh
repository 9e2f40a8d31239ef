#!/usr/bin/env bash
# Runs every fuzz target for a short while on stable Rust (libFuzzer with
# coverage passes set by hand; cargo-fuzz itself needs nightly). CI calls this
# with a few seconds per target as a smoke test; run longer by hand:
#   FUZZ_SECONDS=600 firmware/media/fuzz/smoke.sh
set -euo pipefail
cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-15}"
host="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
  cargo build --quiet --locked --release --target "$host"
for t in sps annexb playlist fmp4 llhls amf0 rtmp_client aac blocking_query rtmp_mux aes_decrypt dash_path; do
    mkdir -p "corpus/$t" artifacts
    echo "fuzz $t for ${secs}s"
    "./target/$host/release/$t" "corpus/$t" -max_total_time="$secs" \
        -artifact_prefix=artifacts/ -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|ERROR|panicked" || true
    if ls artifacts/crash-* >/dev/null 2>&1; then
        echo "fuzz target $t crashed: see firmware/media/fuzz/artifacts/" >&2
        exit 1
    fi
done

#!/usr/bin/env bash
# Runs fuzz targets one after the other, one core each: `fuzz/run.sh [seconds] [target...]`
# (default 300 s, every target of this README except store_model). Prints libFuzzer's final
# statistics per target; crashes land in fuzz/artifacts/<target>/. Extra libFuzzer flags go in
# FUZZ_ARGS, e.g. FUZZ_ARGS="-fork=1 -ignore_crashes=1" to keep going after a known crash.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ironedge/fuzz-target}"
seconds="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(route_parse manifest_validate manifest_mutate protocol_sas protocol_connection_string
    protocol_identity protocol_topics protocol_twin mqtt_packets mqtt_session hub_query hub_rest
    createoptions_translate)
fi
cargo +nightly fuzz build
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -f "dicts/$target.dict" ] && args+=(-dict="dicts/$target.dict")
  # shellcheck disable=SC2206 # FUZZ_ARGS is a list of flags on purpose
  args+=(${FUZZ_ARGS:-})
  echo "== $target (${seconds}s)"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- "${args[@]}" 2>&1 \
    | awk '/panicked at/ { print; getline; print; next }
           /^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|^Done|^SUMMARY|^==[0-9]+==|Test unit written/' || true
done

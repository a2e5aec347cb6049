#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer targets with clang 14 and runs each for SECONDS
# (fuzz_reply, fuzz_url; fuzz_http drives raw bytes through a served tempest::http::App).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-20}
dir=$TEMPEST_ROOT/build-fuzz
CXX=clang++-14 cmake -S "$TEMPEST_ROOT" -B "$dir" -DTEMPEST_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j "$(nproc)"
for target in fuzz_reply fuzz_url fuzz_http; do
  corpus=$dir/corpus/$target
  mkdir -p "$corpus"
  cp "$TEMPEST_ROOT"/tests/fuzz/seeds/$target/* "$corpus"/ 2>/dev/null || true
  options=()
  # fuzz_http costs a TCP round trip per input (a served App): inputs up to 4 KiB (the server's
  # body limit), and 10 s before an input counts as a hang (each read has a 2 s deadline).
  if [[ $target == fuzz_http ]]; then options=(-max_len=4096 -timeout=10); fi
  echo "-- $target for ${seconds}s"
  (cd "$dir" && "./tests/fuzz/$target" -max_total_time="$seconds" -print_final_stats=0 \
    "${options[@]}" "$corpus" 2>&1 | tail -1)
done

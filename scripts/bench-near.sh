#!/usr/bin/env bash
# make bench-near: section 8 of make bench on its own (the near cache's hits beside Redis-backed
# hits, with and without a writer invalidating 1% of the keys a second, and the invalidation
# delay); updates that section of BENCHMARKS.md and docs/bench/near_throughput.png. RUNS=N runs
# per figure (default 3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages gnuplot-nox
trap stop_redis EXIT
trap 'exit 130' INT TERM
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target tempest_cli >/dev/null
start_redis
export REDIS_URL REDIS_PORT REDIS_PID
/usr/bin/python3 bench/near_bench.py
/usr/bin/python3 scripts/sync_readme_perf.py

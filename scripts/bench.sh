#!/usr/bin/env bash
# make bench: every comparison in one run (client GETs, cached hits, a cold-key stampede, HTTP,
# cost growth), here and against the peers; writes BENCHMARKS.md and docs/bench/*.png.
# RUNS=N runs per figure (default 3); QUICK=1 for smaller sizes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages wrk gnuplot-nox valgrind python3-fastapi python3-uvicorn python3-uvloop python3-hiredis
trap 'stop_redis; stop_cluster' EXIT
trap 'exit 130' INT TERM
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target tempest_cli users_service tempest_micro_bench asio_pingpong epoll_pingpong hiredis_pingpong >/dev/null
start_redis
start_cluster
export REDIS_URL REDIS_PORT REDIS_PID CLUSTER_URL CLUSTER_DIR
/usr/bin/python3 bench/run_all.py
/usr/bin/python3 scripts/sync_readme_perf.py

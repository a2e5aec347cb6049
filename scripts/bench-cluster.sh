#!/usr/bin/env bash
# make bench-cluster: section 7 of make bench on its own (tempest on a local 6-node Redis Cluster
# beside redis-benchmark --cluster and beside one redis-server); updates that section of
# BENCHMARKS.md and docs/bench/cluster_throughput.png. RUNS=N runs per figure (default 3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages gnuplot-nox valgrind
trap 'stop_redis; stop_cluster' EXIT
trap 'exit 130' INT TERM
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target tempest_cli tempest_micro_bench >/dev/null
start_redis
start_cluster
export REDIS_URL REDIS_PORT REDIS_PID CLUSTER_URL CLUSTER_DIR
/usr/bin/python3 bench/cluster_bench.py
/usr/bin/python3 scripts/sync_readme_perf.py

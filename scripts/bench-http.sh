#!/usr/bin/env bash
# make bench-http: section 4 of make bench on its own. examples/users_service against the same
# app in Python (bench/python_app.py: FastAPI + uvicorn + redis.asyncio from Debian), the same wrk
# command for both, one after the other on one redis-server: one thread against one uvicorn
# worker, two threads against `uvicorn --workers 2`, the response cache beside the cached()
# route. Requests/s, p50/p99, peak RSS and server CPU per request; updates that section of
# BENCHMARKS.md, its goal rows, docs/bench/http_latency.png and README's tables. RUNS=N runs per
# figure (default 3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages wrk gnuplot-nox python3-fastapi python3-uvicorn python3-uvloop python3-hiredis
trap stop_redis EXIT
trap 'exit 130' INT TERM
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target users_service >/dev/null
start_redis
export REDIS_URL REDIS_PORT REDIS_PID
/usr/bin/python3 bench/http_bench.py
/usr/bin/python3 scripts/sync_readme_perf.py

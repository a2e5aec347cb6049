#!/usr/bin/env bash
# make bench-cache: warm cached hits (`tempest bench --mode cached`, a 5-field described struct)
# beside plain GETs (`--mode get`) and beside the Python original's decorator (bench/python_cached.py
# on python3-redis + hiredis + uvloop), same machine, same redis-server, for C = 1, 16, 64
# (override with CONCURRENCY); medians of RUNS runs (default 5). Then the micro benchmarks.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages python3-redis python3-hiredis python3-uvloop
trap stop_redis EXIT INT TERM
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target tempest_cli tempest_micro_bench >/dev/null
start_redis
runs=${RUNS:-5}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ops() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["ops_per_sec"])'; }
printf '%-12s %12s %14s %14s %16s %14s\n' concurrency "get ops/s" "cached ops/s" "cached/get" "python ops/s" "tempest/python"
for c in ${CONCURRENCY:-1 16 64}; do
  n=$((c == 1 ? 40000 : 300000))
  g=$(for _ in $(seq "$runs"); do build-release/bin/tempest bench --url "$REDIS_URL" --mode get --concurrency "$c" --requests "$n" | ops; done | median)
  t=$(for _ in $(seq "$runs"); do build-release/bin/tempest bench --url "$REDIS_URL" --mode cached --concurrency "$c" --requests "$n" | ops; done | median)
  p=$(for _ in $(seq "$runs"); do /usr/bin/python3 bench/python_cached.py --url "$REDIS_URL" --concurrency "$c" --requests $((n / 10)) | ops; done | median)
  printf '%-12s %12.0f %14.0f %13.2fx %16.0f %13.1fx\n' "$c" "$g" "$t" "$(python3 -c "print($t/$g)")" "$p" "$(python3 -c "print($t/$p)")"
done
echo
build-release/bin/tempest_micro_bench --benchmark_min_time=0.5 2>/dev/null | grep -E '^(Benchmark|Key|Decode|Encode)'

#!/usr/bin/env bash
# make bench-client: tempest bench --mode get beside redis-benchmark -t get -c 1 -P C on the same
# machine, same value size, for C = 1, 16, 64 (override with CONCURRENCY="1 4 16"); medians of
# RUNS runs (default 5). Prints a table with the ratio, and as references hiredis' blocking client
# (pipelined C deep), bench/asio_pingpong (the least an Asio client does per round trip) and
# bench/epoll_pingpong, a client of bare system calls, plain and with redis-benchmark's
# per-request epoll_ctl (see BENCHMARKS.md, section 1).
# With two or more CPUs, redis-server runs on CPU 0 and every client on CPU 1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages
trap stop_redis EXIT INT TERM
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target tempest_cli asio_pingpong epoll_pingpong hiredis_pingpong >/dev/null
start_redis
pin=()
if (($(nproc) >= 2)); then
  taskset -pc 0 "$REDIS_PID" >/dev/null
  pin=(taskset -c 1)
fi
requests=${REQUESTS:-300000}
size=${VALUE_SIZE:-3}
runs=${RUNS:-5}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# redis-benchmark -t get reads the one key "key:__rand_int__" (-d sizes only what it SETs): give
# it a value of the same size, so both clients get the same replies (not nil).
redis-cli -p "$REDIS_PORT" set key:__rand_int__ "$(head -c "$size" /dev/zero | tr '\0' x)" >/dev/null
printf '%-12s %14s %18s %8s %12s %12s %12s %18s\n' concurrency "tempest ops/s" "redis-benchmark" \
  ratio hiredis "bare Asio" "bare epoll" "epoll + epoll_ctl"
for c in ${CONCURRENCY:-1 16 64}; do
  n=$requests
  ((c == 1)) && n=$((requests / 5))
  # The clients' runs alternate, so all see the same drift of the machine; each
  # run's output is captured first and parsed after it exits (nothing else runs beside a
  # measurement: a parser starting up beside the client skews the figure).
  ts=() rs=() hs=() as=() es=() cs=()
  for _ in $(seq "$runs"); do
    out=$("${pin[@]}" build-release/bin/tempest bench --url "$REDIS_URL" --mode get --concurrency "$c" \
      --requests "$n" --value-size "$size" 2>/dev/null)
    ts+=("$(sed -n 's/.*"ops_per_sec":\([0-9.]*\).*/\1/p' <<<"$out")")
    out=$("${pin[@]}" redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t get -c 1 -P "$c" -n "$n" \
      -d "$size" --csv 2>/dev/null)
    rs+=("$(tail -1 <<<"$out" | cut -d, -f2 | tr -d '"')")
    hs+=("$("${pin[@]}" build-release/bin/hiredis_pingpong "$REDIS_PORT" "$c" "$n" "$size")")
    as+=("$("${pin[@]}" build-release/bin/asio_pingpong "$REDIS_PORT" "$c" "$n" "$size")")
    es+=("$("${pin[@]}" build-release/bin/epoll_pingpong "$REDIS_PORT" "$c" "$n" "$size")")
    cs+=("$("${pin[@]}" build-release/bin/epoll_pingpong "$REDIS_PORT" "$c" "$n" "$size" --epoll-ctl)")
  done
  t=$(printf '%s\n' "${ts[@]}" | median)
  r=$(printf '%s\n' "${rs[@]}" | median)
  h=$(printf '%s\n' "${hs[@]}" | median)
  a=$(printf '%s\n' "${as[@]}" | median)
  e=$(printf '%s\n' "${es[@]}" | median)
  x=$(printf '%s\n' "${cs[@]}" | median)
  ratio=$(python3 -c "print(f'{$t / $r:.2f}')")
  printf '%-12s %14.0f %18.0f %7sx %12.0f %12.0f %12.0f %18.0f\n' "$c" "$t" "$r" "$ratio" "$h" "$a" "$e" "$x"
done

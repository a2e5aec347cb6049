#!/usr/bin/env bash
# make bench-http: wrk -t1 -c64 -d10s on a warm /users/1 of examples/users_service and of the
# same app in Python (bench/python_app.py: FastAPI + uvicorn + redis.asyncio from Debian), one
# after the other on one redis-server; requests/s, p50/p99 latency and each server's peak RSS.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages wrk python3-fastapi python3-uvicorn python3-uvloop python3-hiredis
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  stop_redis
}
trap cleanup EXIT
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DTEMPEST_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "$(nproc)" --target users_service >/dev/null
start_redis
duration=${DURATION:-10s}

# peak_rss PID: VmHWM of a running process, in MiB.
peak_rss() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

measure() {  # measure NAME COMMAND...
  local name=$1 port
  shift
  port=$(free_port)
  PORT=$port REDIS_URL=$REDIS_URL HOST=127.0.0.1 "$@" >/dev/null 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/users/1" && break; sleep 0.05; done
  curl -s "http://127.0.0.1:$port/users/1" >/dev/null  # warm
  local out
  out=$(wrk -t1 -c64 -d"$duration" --latency "http://127.0.0.1:$port/users/1")
  local rps p50 p99 rss
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  rss=$(peak_rss "$SERVER_PID")
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  printf '%-16s %12s %10s %10s %14s\n' "$name" "$rps" "$p50" "$p99" "$rss"
  eval "${name//[^a-z]/_}_rps=$rps"
}
printf '%-16s %12s %10s %10s %14s\n' server "requests/s" p50 p99 "peak RSS MiB"
measure tempest build-release/bin/users_service
measure python /usr/bin/python3 bench/python_app.py
python3 -c "print(f'tempest / python: {$tempest_rps / $python_rps:.1f}x')"

#!/usr/bin/env bash
# make demo: builds, starts a local redis-server (127.0.0.1, free port, throwaway directory)
# unless REDIS_URL is set, starts examples/users_service, prints what to try, and stops both on
# Ctrl-C. `scripts/demo.sh --smoke` (make demo-smoke) walks through it instead and exits 0 only
# if every step holds. With CLUSTER=1 (make demo-cluster, make demo-smoke-cluster) the Redis is a
# local Redis Cluster: 3 masters with a replica each. With SENTINEL=1 (make demo-sentinel, make
# demo-smoke-sentinel) it is a master, a replica and three sentinels, and the smoke walk-through
# kills the master to see the service follow the failover.
# It builds only what it runs (users_service and the libraries it links; make test builds
# everything), showing each file as it compiles, and prints how long it took from the start to the
# service's first answer. TEMPEST_JOBS sets the build's parallelism (default: nproc).
set -uo pipefail
demo_start=$(date +%s)
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
smoke=0
[[ ${1:-} == --smoke ]] && smoke=1
# since_start: "M:SS" since the script started.
since_start() {
  local s=$(($(date +%s) - demo_start))
  printf '%d:%02d' $((s / 60)) $((s % 60))
}
ensure_packages
# Stop only what this script starts, whatever the caller exported.
unset REDIS_PID REDIS_DIR REDIS_PORT CLUSTER_DIR SENTINEL_DIR
SERVICE_PID=""
cleanup() {
  [[ -n $SERVICE_PID ]] && kill "$SERVICE_PID" 2>/dev/null && wait "$SERVICE_PID" 2>/dev/null
  stop_redis
  stop_cluster
  stop_sentinel_group
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The first build compiles 29 files, 260 CPU-seconds: from a fresh clone, `make demo` answered in
# 3:00 on 2 cores (2 jobs, no ccache, another build running beside it). An existing build/ (or
# ccache's cache) makes later ones take seconds.
echo "== building users_service and the tempest libraries it links into build/" \
  "(a first build takes 2 to 3 minutes on 2 cores; later ones seconds)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTEMPEST_WERROR=ON >/dev/null ||
  { echo "cmake configure failed"; exit 1; }
# One line per file as it starts compiling, with the time since the start: "[ 30%] 0:42 src/...".
# Not a sub-make of `make demo`'s: no "Entering directory" lines, no inherited jobserver.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
  cmake --build build -j "${TEMPEST_JOBS:-$(nproc)}" --target users_service 2>&1 |
  while IFS= read -r line; do
    case $line in
      *"Built target "* | "Consolidate compiler generated dependencies"*) ;;
      "["*"%] Building CXX object "*)
        file=$(sed -E 's#^\[ *([0-9]+)%\] Building CXX object (.*)/CMakeFiles/[^/]+\.dir/(.*)\.o$#\2/\3#' <<<"$line")
        echo "${line%%]*}] $(since_start) $file"
        ;;
      "["*"%] "*) echo "${line%%]*}] $(since_start)${line#*]}" ;;
      *) echo "$line" ;;
    esac
  done
((PIPESTATUS[0] == 0)) || { echo "build failed"; exit 1; }
build_took=$(since_start)
own_redis=0
own_cluster=0
own_sentinel=0
if [[ -z ${REDIS_URL:-} && ${SENTINEL:-0} == 1 ]]; then
  start_sentinel_group || { echo "the Sentinel group did not start"; exit 1; }
  # A short backoff cap: the service tries the new master soon after the sentinels promote it.
  REDIS_URL="$SENTINEL_URL?reconnect_max=500ms"
  own_sentinel=1
elif [[ -z ${REDIS_URL:-} && ${CLUSTER:-0} == 1 ]]; then
  start_cluster || { echo "the Redis Cluster did not start"; exit 1; }
  REDIS_URL=$CLUSTER_URL
  own_cluster=1
elif [[ -z ${REDIS_URL:-} ]]; then
  start_redis
  own_redis=1
fi
PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
REDIS_URL=$REDIS_URL HOST=127.0.0.1 PORT=$PORT build/bin/users_service &
SERVICE_PID=$!
answered=0
for _ in $(seq 1 200); do
  curl -s -o /dev/null "$BASE/health/liveness" && { answered=1; break; }
  sleep 0.05
done
if ((answered)); then
  echo "== users_service answered its first request $(since_start) (min:s) after the start" \
    "(build done at $build_took)"
else
  echo "users_service did not answer $BASE/health/liveness within 10 s"
  ((smoke)) && exit 1
fi

if ((smoke == 0)); then
  cat <<TXT

users_service is up at $BASE (Redis: $REDIS_URL). Try:
  curl $BASE/users/1                      # 20 ms the first time, then a cache hit
  curl -i $BASE/users/1/orders            # X-Cache: MISS, then HIT (the response cache)
  curl $BASE/users/1/orders?fresh=true    # bypasses the cache
  curl -X POST -d '{"name":"Zoe"}' $BASE/users/1   # updates and invalidates tag user:1
  curl $BASE/named   $BASE/cached
  curl -i $BASE/health/readiness
  curl $BASE/metrics
Ctrl-C stops the service and the Redis it started.
TXT
  wait "$SERVICE_PID"
  exit $?
fi

# ---- smoke walk-through ----------------------------------------------------------------------
fail=0
check() {  # check DESCRIPTION CONDITION...
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE$1"; }
seconds() { curl -s -o /dev/null -w '%{time_total}' --max-time 5 "$BASE$1"; }
# wait_status PATH CODE LIMIT_S: seconds until PATH answers CODE (or 99 after LIMIT_S)
wait_status() {
  local start now
  start=$(date +%s.%N)
  while :; do
    [[ $(status "$1") == "$2" ]] && break
    now=$(date +%s.%N)
    if (($(echo "$now - $start > $3" | bc -l))); then echo 99; return; fi
    sleep 0.05
  done
  now=$(date +%s.%N)
  echo "$now - $start" | bc -l
}
lt() { (($(echo "$1 < $2" | bc -l))); }
# get_user_profile's cache hits so far, from /metrics
profile_hits() {
  curl -s "$BASE/metrics" | awk '/^tempest_cache_hits_total\{function="get_user_profile"\}/ {print $2}'
}

cold=$(seconds /users/1)
warm=$(seconds /users/1)
echo "cold /users/1 ${cold}s, warm ${warm}s"
check "cold /users/1 pays the 20 ms read" lt 0.019 "$cold"
check "warm /users/1 is much faster (< cold / 4)" lt "$warm" "$(echo "$cold / 4" | bc -l)"
check "readiness 200 with Redis up" test "$(status /health/readiness)" = 200
if ((own_redis)); then
  port=$REDIS_PORT
  dir=$REDIS_DIR
  kill "$REDIS_PID"
  took=$(wait_status /health/readiness 503 2)
  echo "readiness turned 503 in ${took}s after Redis stopped"
  check "readiness 503 within 2 s of Redis stopping" lt "$took" 2
  check "/users/1 still answers 200 with Redis down" test "$(status /users/1)" = 200
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" --daemonize yes --pidfile "$dir/redis.pid"
  for _ in $(seq 1 100); do [[ -s $dir/redis.pid ]] && break; sleep 0.02; done
  REDIS_PID=$(cat "$dir/redis.pid")
  took=$(wait_status /health/readiness 200 2)
  echo "readiness back to 200 in ${took}s after Redis restarted"
  check "readiness 200 within 2 s of Redis coming back" lt "$took" 2
  (void=$(seconds /users/1))  # refill after the restart emptied Redis
  hits_before=$(profile_hits)
  warm=$(seconds /users/1)
  hits_after=$(profile_hits)
  echo "after the restart: warm /users/1 ${warm}s, hits ${hits_before} -> ${hits_after}"
  check "hits resume after Redis is back" test "$hits_after" -gt "$hits_before"
elif ((own_sentinel)); then
  # The master killed: readiness 503 until the sentinels promote the replica, then 200 again.
  master_port=$(sentinel_master_port)
  kill -9 "$(cat "$SENTINEL_DIR/$master_port/redis.pid")"
  took=$(wait_status /health/readiness 503 4)
  echo "readiness turned 503 in ${took}s after the master was killed"
  check "readiness 503 within 4 s of the master dying" lt "$took" 4
  check "/users/1 still answers 200 during the failover" test "$(status /users/1)" = 200
  took=$(wait_status /health/readiness 200 15)
  echo "readiness back to 200 in ${took}s (the sentinels promoted $(sentinel_master_port))"
  check "readiness 200 within 15 s: the service follows the new master" lt "$took" 15
  (void=$(seconds /users/1))
  hits_before=$(profile_hits)
  warm=$(seconds /users/1)
  hits_after=$(profile_hits)
  echo "after the failover: warm /users/1 ${warm}s, hits ${hits_before} -> ${hits_after}"
  check "hits resume on the new master" test "$hits_after" -gt "$hits_before"
elif ((own_cluster)); then
  # A master and its replica frozen (SIGSTOP): a slot range has no reachable master.
  nodes=$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster nodes)
  master_line=$(grep ' master ' <<<"$nodes" | grep -v fail | head -1)
  [[ -z $master_line ]] && master_line=$(grep 'master' <<<"$nodes" | grep -v fail | head -1)
  master_id=$(awk '{print $1}' <<<"$master_line")
  port_of() { sed -E 's/.*:([0-9]+)@.*/\1/' <<<"$1"; }
  master_port=$(port_of "$(awk '{print $2}' <<<"$master_line")")
  replica_port=$(port_of "$(awk -v m="$master_id" '$4 == m {print $2}' <<<"$nodes" | head -1)")
  frozen=("$(cat "$CLUSTER_DIR/$master_port/redis.pid")" "$(cat "$CLUSTER_DIR/$replica_port/redis.pid")")
  kill -STOP "${frozen[@]}"
  took=$(wait_status /health/readiness 503 4)
  echo "readiness turned 503 in ${took}s after a master and its replica froze"
  check "readiness 503 within 4 s of a slot range losing its master" lt "$took" 4
  check "/users/1 still answers 200 with part of the cluster down" test "$(status /users/1)" = 200
  kill -CONT "${frozen[@]}"
  took=$(wait_status /health/readiness 200 15)
  echo "readiness back to 200 in ${took}s after they resumed"
  check "readiness 200 within 15 s of the cluster recovering" lt "$took" 15
  (void=$(seconds /users/1))
  hits_before=$(profile_hits)
  warm=$(seconds /users/1)
  hits_after=$(profile_hits)
  echo "after recovery: warm /users/1 ${warm}s, hits ${hits_before} -> ${hits_after}"
  check "hits resume after the cluster recovers" test "$hits_after" -gt "$hits_before"
else
  echo "skipped the Redis stop/start steps: REDIS_URL points at a Redis this script did not start"
fi
check "POST /users/1 invalidates, the next GET shows the new name" \
  sh -c "curl -s -X POST -d '{\"name\":\"Zoe\"}' $BASE/users/1 >/dev/null && curl -s $BASE/users/1 | grep -q Zoe"
if [[ ${NEAR_CACHE:-0} == 1 ]]; then
  near_hits() { curl -s "$BASE/metrics" | awk '/^tempest_near_cache_hits_total/ {s += $2} END {print s + 0}'; }
  before=$(near_hits)
  for _ in 1 2 3 4 5; do curl -s -o /dev/null "$BASE/users/1"; done
  after=$(near_hits)
  echo "near cache hits ${before} -> ${after}"
  check "NEAR_CACHE=1: hits are served from the near cache" test "$after" -ge $((before + 4))
  if ((own_redis)); then
    key=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'users:get_user_profile:*' | head -1)
    redis-cli -p "$REDIS_PORT" SET "$key" '{"id":"1","name":"Outsider"}' >/dev/null
    check "NEAR_CACHE=1: a write by another process reaches the near cache" \
      sh -c "for i in 1 2 3 4 5 6 7 8 9 10; do curl -s $BASE/users/1 | grep -q Outsider && exit 0; sleep 0.1; done; exit 1"
  fi
fi
orders=$(curl -s "$BASE/users/1/orders")
echo "GET /users/1/orders: $orders"
check "numbers written as Python writes them (19.9, 5.0; no exponent form)" \
  sh -c "echo '$orders' | grep -q '\"total\":19.9' && echo '$orders' | grep -q '\"total\":5.0' && ! echo '$orders' | grep -q 'E[0-9]'"
headers() { curl -s -o /dev/null -D - "$@" | tr -d '\r'; }
second=$(headers "$BASE/users/1/orders")
etag=$(awk 'tolower($1) == "etag:" {print $2}' <<<"$second")
echo "GET /users/1/orders again: $(grep -i '^x-cache' <<<"$second"), etag $etag"
check "the response cache answers the second GET /users/1/orders (X-Cache: HIT)" \
  grep -qi '^x-cache: HIT' <<<"$second"
check "If-None-Match with its ETag: 304" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BASE/users/1/orders")" = 304
check "unknown route 404" test "$(status /nope)" = 404
kill -TERM "$SERVICE_PID"
wait "$SERVICE_PID"
code=$?
SERVICE_PID=""
check "SIGTERM: graceful exit 0" test "$code" = 0
exit $fail

# Shared helpers for the project's scripts (sourced, not run).
# shellcheck shell=bash

TEMPEST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the demo need.
TEMPEST_PACKAGES=(
  g++ cmake make pkg-config ccache python3
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libhiredis-dev libspdlog-dev libssl-dev openssl
  libgtest-dev libbenchmark-dev
  redis-server redis-tools redis-sentinel python3-redis python3-starlette curl bc
  clang-14 libclang-rt-14-dev clang-format
  libcli11-dev dpkg-dev file doxygen
)

# ensure_packages [extra packages...]: installs what is missing (apt-get update only then).
ensure_packages() {
  local wanted=("${TEMPEST_PACKAGES[@]}" "$@") missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

# free_port: prints a TCP port on 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_redis: starts a throwaway redis-server on a free port; sets REDIS_PORT, REDIS_URL,
# REDIS_DIR, REDIS_PID. Pair with stop_redis (the callers trap it on EXIT).
start_redis() {
  REDIS_DIR=$(mktemp -d /tmp/tempest-redis.XXXXXX)
  REDIS_PORT=$(free_port)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" --enable-debug-command yes \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid"
  local i
  for i in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  REDIS_PID=$(cat "$REDIS_DIR/redis.pid")
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export REDIS_PORT REDIS_URL REDIS_DIR REDIS_PID
  echo "== redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
}

stop_redis() {
  if [[ -n ${REDIS_PID:-} ]]; then
    kill -CONT "$REDIS_PID" 2>/dev/null || true
    kill "$REDIS_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$REDIS_PID" 2>/dev/null || true
  fi
  [[ -n ${REDIS_DIR:-} ]] && rm -rf "$REDIS_DIR"
  REDIS_PID=""
}

# start_cluster [masters] [replicas]: a throwaway Redis Cluster (default 3 masters, 1 replica
# each) on free ports, created with redis-cli --cluster create and waited for until every node
# says cluster_state:ok and agrees on the slots. Sets CLUSTER_DIR, CLUSTER_PORTS, CLUSTER_URL.
# Pair with stop_cluster (the callers trap it on EXIT). Node timeout 1000 ms: failovers are fast.
start_cluster() {
  local masters=${1:-3} replicas=${2:-1} n i port nodes=() ok
  n=$((masters * (1 + replicas)))
  CLUSTER_DIR=$(mktemp -d /tmp/tempest-cluster.XXXXXX)
  CLUSTER_PORTS=()
  export CLUSTER_DIR
  for ((i = 0; i < n; i++)); do
    port=$(free_port)
    mkdir -p "$CLUSTER_DIR/$port"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --dir "$CLUSTER_DIR/$port" --logfile "$CLUSTER_DIR/$port/redis.log" \
      --cluster-enabled yes --cluster-port "$(free_port)" --cluster-config-file nodes.conf \
      --cluster-node-timeout 1000 \
      --enable-debug-command yes --daemonize yes --pidfile "$CLUSTER_DIR/$port/redis.pid" ||
      return 1
    CLUSTER_PORTS+=("$port")
    nodes+=("127.0.0.1:$port")
  done
  for port in "${CLUSTER_PORTS[@]}"; do
    for i in $(seq 1 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.05
    done
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes \
    >"$CLUSTER_DIR/create.log" 2>&1 || { cat "$CLUSTER_DIR/create.log"; return 1; }
  for i in $(seq 1 300); do
    ok=1
    for port in "${CLUSTER_PORTS[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || { ok=0; break; }
    done
    # ... and every node knows every replica as one (CLUSTER SLOTS lists a replica only then).
    if ((ok)); then
      for port in "${CLUSTER_PORTS[@]}"; do
        [[ $(redis-cli -p "$port" cluster nodes 2>/dev/null | grep -cE '[ ,]slave ') -eq \
          $((n - masters)) ]] || { ok=0; break; }
      done
    fi
    if ((ok)) && redis-cli --cluster check "127.0.0.1:${CLUSTER_PORTS[0]}" 2>/dev/null |
      grep -q 'All nodes agree about slots configuration'; then
      CLUSTER_URL="redis://127.0.0.1:${CLUSTER_PORTS[0]}?cluster=true"
      export CLUSTER_URL
      echo "== redis cluster ($masters masters, $replicas replica(s) each) on ports ${CLUSTER_PORTS[*]}"
      return 0
    fi
    sleep 0.1
  done
  echo "the cluster did not become ok within 30 s" >&2
  return 1
}

stop_cluster() {
  local d pid
  [[ -z ${CLUSTER_DIR:-} ]] && return 0
  for d in "$CLUSTER_DIR"/*/; do
    [[ -f $d/redis.pid ]] || continue
    pid=$(cat "$d/redis.pid")
    kill -CONT "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$CLUSTER_DIR"
  CLUSTER_DIR=""
}

# start_sentinel_group [service]: a throwaway Redis Sentinel deployment on free ports: a master,
# one replica and three sentinels (quorum 2, down-after 1000 ms, failover-timeout 5000 ms),
# waited for (15 s at most) until the replica's link is up and every sentinel knows the master,
# the replica and the two other sentinels. Sets SENTINEL_DIR, SENTINEL_SERVICE, SENTINEL_PORTS
# (the sentinels'), SENTINEL_DATA_PORTS (master first), SENTINEL_URL
# (redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/<service>). Pair with
# stop_sentinel_group (the callers trap it on EXIT).
start_sentinel_group() {
  local service=${1:-mymaster} port i ok conf used=() replicaof=() sentinel=redis-sentinel
  command -v redis-sentinel >/dev/null 2>&1 || sentinel=redis-server
  SENTINEL_DIR=$(mktemp -d /tmp/tempest-sentinel.XXXXXX)
  SENTINEL_SERVICE=$service
  SENTINEL_DATA_PORTS=()
  SENTINEL_PORTS=()
  export SENTINEL_DIR SENTINEL_SERVICE
  for i in 0 1; do
    port=$(free_port)
    while [[ " ${used[*]} " == *" $port "* ]]; do port=$(free_port); done
    used+=("$port")
    mkdir -p "$SENTINEL_DIR/$port"
    # --repl-diskless-sync-delay 0: a replica's full sync starts at once, not 5 s later.
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --repl-diskless-sync-delay 0 --dir "$SENTINEL_DIR/$port" \
      --logfile "$SENTINEL_DIR/$port/redis.log" --enable-debug-command yes "${replicaof[@]}" \
      --daemonize yes --pidfile "$SENTINEL_DIR/$port/redis.pid" || return 1
    SENTINEL_DATA_PORTS+=("$port")
    replicaof=(--replicaof 127.0.0.1 "$port")
  done
  # The replica's link first: a sentinel's first INFO of the master then lists it.
  for i in $(seq 1 200); do
    redis-cli -p "${SENTINEL_DATA_PORTS[1]}" info replication 2>/dev/null |
      grep -q 'master_link_status:up' && break
    ((i == 200)) && { echo "the replica's link did not come up within 10 s" >&2; return 1; }
    sleep 0.05
  done
  for i in 0 1 2; do
    port=$(free_port)
    while [[ " ${used[*]} " == *" $port "* ]]; do port=$(free_port); done
    used+=("$port")
    conf="$SENTINEL_DIR/sentinel-$port.conf"
    # Each sentinel rewrites its own config file as it learns.
    cat >"$conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
pidfile $SENTINEL_DIR/sentinel-$port.pid
logfile $SENTINEL_DIR/sentinel-$port.log
dir $SENTINEL_DIR
sentinel monitor $service 127.0.0.1 ${SENTINEL_DATA_PORTS[0]} 2
sentinel down-after-milliseconds $service 1000
sentinel failover-timeout $service 5000
sentinel parallel-syncs $service 1
CONF
    if [[ $sentinel == redis-sentinel ]]; then
      redis-sentinel "$conf" || return 1
    else
      redis-server "$conf" --sentinel || return 1
    fi
    SENTINEL_PORTS+=("$port")
  done
  for i in $(seq 1 150); do
    ok=1
    for port in "${SENTINEL_PORTS[@]}"; do
      # SENTINEL master: one line per key and per value.
      [[ $(redis-cli -p "$port" sentinel master "$service" 2>/dev/null | awk '
        NR % 2 == 1 { k = $0; next } { v[k] = $0 }
        END { print v["flags"], v["num-slaves"], v["num-other-sentinels"] }') == "master 1 2" ]] ||
        { ok=0; break; }
    done
    if ((ok)); then
      SENTINEL_URL="redis+sentinel://127.0.0.1:${SENTINEL_PORTS[0]},127.0.0.1:${SENTINEL_PORTS[1]},127.0.0.1:${SENTINEL_PORTS[2]}/$service"
      export SENTINEL_URL
      echo "== redis sentinel: master ${SENTINEL_DATA_PORTS[0]}, replica ${SENTINEL_DATA_PORTS[1]}, sentinels ${SENTINEL_PORTS[*]}"
      return 0
    fi
    sleep 0.1
  done
  echo "the sentinels did not all know the master, the replica and each other within 15 s" \
    "(logs in $SENTINEL_DIR)" >&2
  return 1
}

# sentinel_master_port: the port the sentinels of start_sentinel_group name as the master now.
sentinel_master_port() {
  local port
  for port in "${SENTINEL_PORTS[@]}"; do
    redis-cli -p "$port" sentinel get-master-addr-by-name "$SENTINEL_SERVICE" 2>/dev/null |
      sed -n 2p | grep -E '^[0-9]+$' && return 0
  done
  return 1
}

stop_sentinel_group() {
  local f pid
  [[ -z ${SENTINEL_DIR:-} ]] && return 0
  for f in "$SENTINEL_DIR"/sentinel-*.pid "$SENTINEL_DIR"/*/redis.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f")
    kill -CONT "$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$SENTINEL_DIR"
  SENTINEL_DIR=""
}

# configure_build DIR [cmake args...]: configures (once) and builds DIR.
configure_build() {
  local dir=$1
  shift
  cmake -S "$TEMPEST_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTEMPEST_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}

# Shared helpers for the project's scripts (sourced, not run).
# shellcheck shell=bash

TEMPEST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the demo need.
TEMPEST_PACKAGES=(
  g++ cmake make pkg-config ccache python3
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libhiredis-dev libspdlog-dev libssl-dev openssl
  libgtest-dev libbenchmark-dev
  redis-server redis-tools python3-redis curl bc
  clang-14 libclang-rt-14-dev clang-format
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

# configure_build DIR [cmake args...]: configures (once) and builds DIR.
configure_build() {
  local dir=$1
  shift
  cmake -S "$TEMPEST_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTEMPEST_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}

#!/usr/bin/env bash
# make demo: builds and runs the example against a local Redis (a throwaway redis-server on a
# free port unless REDIS_URL is set), then stops what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages
trap stop_redis EXIT INT TERM
configure_build build
if [[ -z ${REDIS_URL:-} ]]; then start_redis; fi
echo "== examples/quickstart against $REDIS_URL"
build/bin/quickstart "$REDIS_URL"
echo "== examples/cached_profile: the documented @cached example in C++"
build/bin/cached_profile "$REDIS_URL"
echo "== tempest bench --mode get (64 coroutines, one connection)"
build/bin/tempest bench --url "$REDIS_URL" --mode get --concurrency 64 --requests 200000
echo "== tempest bench --mode cached (warm hits of a cached function)"
build/bin/tempest bench --url "$REDIS_URL" --mode cached --concurrency 64 --requests 200000

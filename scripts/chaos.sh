#!/usr/bin/env bash
# make chaos: faults under load, measured (tests/chaos/chaos.cpp). A redis-server of its own
# (append-only) behind a fault-injecting proxy and a Redis Cluster (3 masters, a replica each),
# two load processes of 64 callers each on both (one with the near cache), users_service under
# HTTP load on the first, faults injected at random for DURATION (default 180s); the seed is
# printed and SEED=N replays a run; FAULTS=kind,kind limits the kinds; EACH=1 (make chaos-each)
# runs every kind alone, DURATION each (default 20s). The last line is JSON; the exit status is 1
# when a value was wrong, an acknowledged write was lost, a call outlived its deadline past the
# margin, a process's RSS grew, or users_service answered wrong or readiness lied.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages
dir=${CHAOS_BUILD:-build}
configure_build "$dir" >/dev/null
args=(--duration "${DURATION:-180s}")
[[ -n ${SEED:-} ]] && args+=(--seed "$SEED")
[[ -n ${FAULTS:-} ]] && args+=(--faults "$FAULTS")
[[ -n ${CALLERS:-} ]] && args+=(--callers "$CALLERS")
[[ -n ${EACH:-} ]] && args+=(--each 1)
exec "$dir/tests/tempest_chaos" "${args[@]}"

#!/usr/bin/env bash
# make test: every test. Installs what is missing, builds, starts redis-server and a Redis Cluster
# (6 nodes) on free ports, runs the suites, stops every server it started (also on failure), ends
# with "N passed, N failed".
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"

ensure_packages
trap 'stop_redis; stop_cluster' EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
failures=()
record() {  # record NAME STATUS
  if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}
# ctest_count NAME LOGFILE STATUS: adds the individual test counts ctest reported.
ctest_count() {
  local line total bad
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$2" | tail -1)
  if [[ -z $line ]]; then record "$1" 1; return; fi
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.*tests passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
  ((bad)) && failures+=("$1")
  [[ $3 -ne 0 && $bad -eq 0 ]] && record "$1 (ctest exit)" 1
  return 0
}

echo "== format check"
bash scripts/format.sh --check
record "clang-format" $?

echo "== make docs: the API reference, every public symbol documented (Doxygen warnings are errors)"
bash scripts/docs.sh
record "docs" $?

echo "== build (RelWithDebInfo, -Werror)"
if configure_build build; then
  start_redis
  export TEMPEST_REDIS_URL=$REDIS_URL
  if start_cluster; then
    export TEMPEST_CLUSTER_URL=$CLUSTER_URL
  else
    record "redis cluster start" 1
  fi
  echo "== tests"
  ctest --test-dir build --output-on-failure --timeout 600 2>&1 | tee build/ctest.log
  ctest_count "tests" build/ctest.log "${PIPESTATUS[0]}"

  echo "== make package, the .deb unpacked (dpkg -x), the consumer project built against it (CMake, pkg-config)"
  bash scripts/consumer.sh build
  record "consumer project" $?
else
  record "build" 1
fi

echo "== make demo-smoke: users_service end to end through curl"
env -u REDIS_URL -u REDIS_PID -u REDIS_DIR -u REDIS_PORT bash scripts/demo.sh --smoke
record "demo-smoke" $?

echo "== make demo-smoke with NEAR_CACHE=1: the same walk-through with the near cache on"
env -u REDIS_URL -u REDIS_PID -u REDIS_DIR -u REDIS_PORT NEAR_CACHE=1 bash scripts/demo.sh --smoke
record "demo-smoke (near cache)" $?

echo "== make demo-smoke-cluster: the same service on a Redis Cluster (a master and its replica frozen), near cache on"
env -u REDIS_URL -u REDIS_PID -u REDIS_DIR -u REDIS_PORT -u CLUSTER_DIR CLUSTER=1 NEAR_CACHE=1 \
  bash scripts/demo.sh --smoke
record "demo-smoke-cluster" $?

echo "== make demo-smoke-sentinel: the same service through Redis Sentinel, its master killed"
env -u REDIS_URL -u REDIS_PID -u REDIS_DIR -u REDIS_PORT -u CLUSTER_DIR -u SENTINEL_DIR SENTINEL=1 \
  bash scripts/demo.sh --smoke
record "demo-smoke-sentinel" $?

echo "== make chaos, short: 45 s of faults under load (DURATION=10m make chaos for the long run)"
if [[ -x build/tests/tempest_chaos ]]; then
  build/tests/tempest_chaos --duration 45s
  record "chaos" $?
  echo "== make chaos-each, short: every fault kind alone for 15 s, so that a failure names its cause"
  build/tests/tempest_chaos --each 1 --duration 15s
  record "chaos, each kind alone" $?
else
  record "chaos (not built)" 1
fi

echo "== fuzzers (clang 14 libFuzzer, bounded time)"
bash scripts/fuzz.sh 20
record "fuzzers" $?

echo "== ASan+UBSan build of the test suite"
if configure_build build-asan -DTEMPEST_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DTEMPEST_BUILD_TOOLS=ON; then
  [[ -z ${REDIS_PID:-} ]] && start_redis && export TEMPEST_REDIS_URL=$REDIS_URL
  [[ -z ${CLUSTER_DIR:-} ]] && start_cluster && export TEMPEST_CLUSTER_URL=$CLUSTER_URL
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --timeout 900 2>&1 | tee build-asan/ctest.log
  ctest_count "asan tests" build-asan/ctest.log "${PIPESTATUS[0]}"
  echo "== chaos in the ASan+UBSan build: a sanitizer report fails a load process, and the run"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build-asan/tests/tempest_chaos --duration 30s
  record "chaos (asan)" $?
else
  record "asan build" 1
fi

echo "== ThreadSanitizer build of the Redis tests (a connection shared by the threads of an io_context)"
# Build (test discovery runs the binary) and run without address randomization: GCC 12's TSan
# cannot map its shadow memory under some kernels' ASLR settings.
no_aslr() { setarch "$(uname -m)" -R "$@"; }
if cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTEMPEST_WERROR=ON -DTEMPEST_TSAN=ON \
  >/dev/null && no_aslr cmake --build build-tsan -j "$(nproc)" --target tempest_redis_tests tempest_cluster_tests; then
  [[ -z ${REDIS_PID:-} ]] && start_redis && export TEMPEST_REDIS_URL=$REDIS_URL
  [[ -z ${CLUSTER_DIR:-} ]] && start_cluster && export TEMPEST_CLUSTER_URL=$CLUSTER_URL
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 no_aslr \
    ctest --test-dir build-tsan -R '^(redis|cluster)\.' --output-on-failure --timeout 900 2>&1 |
    tee build-tsan/ctest.log
  ctest_count "tsan tests" build-tsan/ctest.log "${PIPESTATUS[0]}"
else
  record "tsan build" 1
fi

stop_redis
stop_cluster
((${#failures[@]})) && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

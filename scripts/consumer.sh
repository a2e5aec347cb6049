#!/usr/bin/env bash
# consumer.sh BUILD_DIR: installs tempest from BUILD_DIR into a prefix, then builds and runs the
# consumer project under tests/consumer against it with find_package(tempest CONFIG).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=$(cd "$1" && pwd)
prefix=$build/install
rm -rf "$prefix" "$build/consumer"
cmake --install "$build" --prefix "$prefix" >/dev/null
cmake -S "$TEMPEST_ROOT/tests/consumer" -B "$build/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$build/consumer" -j "$(nproc)"
"$build/consumer/tempest_consumer" "${TEMPEST_REDIS_URL:-redis://127.0.0.1:6379/0}"

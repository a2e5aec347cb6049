#!/usr/bin/env bash
# consumer.sh BUILD_DIR: makes the Debian package from BUILD_DIR (scripts/package.sh), unpacks it
# into a scratch root with `dpkg -x` (no container, nothing installed on the machine), checks what
# it holds, then builds the consumer project under tests/consumer against that root twice, with
# find_package(tempest CONFIG) and with pkg-config, and runs both against the Redis at
# TEMPEST_REDIS_URL. The packaged CLI must answer --help.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=$(cd "$1" && pwd)
consumer=$TEMPEST_ROOT/tests/consumer
redis_url=${TEMPEST_REDIS_URL:-redis://127.0.0.1:6379/0}

bash "$TEMPEST_ROOT/scripts/package.sh" "$build"
deb=$(realpath "$build"/libtempest-dev_*.deb)
root=$build/pkgroot
rm -rf "$root" "$build/consumer" "$build/consumer-cmake" "$build/consumer-pkgconfig"
dpkg -x "$deb" "$root"
echo "== $(basename "$deb") unpacked into $root: $(dpkg -c "$deb" | grep -vc '/$') files"

# What the package must hold.
libdir=$(dirname "$(find "$root/usr/lib" -name libtempest_redis.a | head -1)")
bad=0
for f in "$libdir"/libtempest_{redis,cache,http}.a "$libdir"/cmake/tempest/tempestConfig.cmake \
  "$libdir"/cmake/tempest/tempestConfigVersion.cmake "$libdir"/cmake/tempest/tempestTargets.cmake \
  "$libdir"/pkgconfig/tempest-{redis,cache,http}.pc "$root/usr/include/tempest/redis/client.hpp" \
  "$root/usr/bin/tempest"; do
  [[ -f $f ]] || { echo "missing from the package: ${f#"$root"}"; bad=1; }
done
# Relocatable: no path of the build or source tree in the CMake and pkg-config files.
if grep -rlF -e "$build" -e "$TEMPEST_ROOT" "$libdir/cmake" "$libdir/pkgconfig"; then
  echo "the files above hold a build or source path"
  bad=1
fi
# Every dependency it declares (versions, virtual packages) is met here: dpkg-checkbuilddeps
# checks a list as apt would, so `apt install ./the.deb` would have nothing to fetch.
printf 'Source: tempest-consumer-check\n\nPackage: tempest-consumer-check\nArchitecture: any\n' \
  >"$build/consumer-depends.control"
dpkg-checkbuilddeps -d "$(dpkg-deb --field "$deb" Depends)" "$build/consumer-depends.control" ||
  bad=1
((bad == 0))

echo "== the packaged CLI: tempest --help"
"$root/usr/bin/tempest" --help >/dev/null

echo "== consumer with CMake: find_package(tempest CONFIG), CMAKE_PREFIX_PATH=$root/usr"
cmake -S "$consumer" -B "$build/consumer-cmake" -DCMAKE_PREFIX_PATH="$root/usr" >/dev/null
found=$(sed -n 's/^tempest_DIR:PATH=//p' "$build/consumer-cmake/CMakeCache.txt")
[[ $found == "$root"/* ]] || { echo "find_package(tempest) found $found, not the package's"; exit 1; }
cmake --build "$build/consumer-cmake" -j "$(nproc)"
"$build/consumer-cmake/tempest_consumer" "$redis_url"

echo "== consumer with pkg-config: g++ main.cpp \$(pkg-config --cflags --libs tempest-http)"
export PKG_CONFIG_PATH=$libdir/pkgconfig
flags=$(pkg-config --cflags --libs tempest-http)
echo "pkg-config --cflags --libs tempest-http: $flags"
mkdir -p "$build/consumer-pkgconfig"
# shellcheck disable=SC2086 # the flags are words
g++ -o "$build/consumer-pkgconfig/tempest_consumer" "$consumer/main.cpp" $flags
"$build/consumer-pkgconfig/tempest_consumer" "$redis_url"

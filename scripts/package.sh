#!/usr/bin/env bash
# make package: the Debian package libtempest-dev (CPack DEB) in build/: the static libraries,
# the headers, the CMake package, the pkg-config files and the `tempest` CLI. Builds only the
# installed targets (not the tests or the benchmarks), installed under /usr. Prints the .deb's
# path last. TEMPEST_JOBS overrides the build's parallelism (default: nproc).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages
build=${1:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTEMPEST_WERROR=ON \
  -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build "$build" -j "${TEMPEST_JOBS:-$(nproc)}" \
  --target tempest_redis tempest_cache tempest_http tempest_cli
rm -f "$build"/libtempest-dev_*.deb
(cd "$build" && cpack -G DEB >cpack.log 2>&1) || { cat "$build/cpack.log"; exit 1; }
deb=$(realpath "$build"/libtempest-dev_*.deb)
echo "== $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends
echo "install it with: sudo apt install $deb"

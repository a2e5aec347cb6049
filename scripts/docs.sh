#!/usr/bin/env bash
# make docs: the API reference with Doxygen (Debian's doxygen) over the public headers, into
# build/docs/html. Fails on any Doxygen warning, an undocumented public symbol included; detail/
# headers and detail namespaces are implementation and not documented.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$TEMPEST_ROOT"
ensure_packages
out=${TEMPEST_DOCS_OUT:-build/docs}
mkdir -p "$out"
rm -rf "$out/html"
if ! TEMPEST_DOCS_OUT=$out doxygen docs/Doxyfile 2>"$out/warnings.txt"; then
  cat "$out/warnings.txt" >&2
  echo "make docs: $(grep -cE '(warning|error):' "$out/warnings.txt") Doxygen warnings (listed above)" >&2
  exit 1
fi
if [[ -s $out/warnings.txt ]]; then  # FAIL_ON_WARNINGS exits non-zero; this guards older Doxygens
  cat "$out/warnings.txt" >&2
  exit 1
fi
echo "API reference: $out/html/index.html ($(find "$out/html" -name '*.html' | wc -l) pages, 0 warnings)"

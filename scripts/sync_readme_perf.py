#!/usr/bin/python3
"""Copies the measured tables of BENCHMARKS.md into README.md's Performance section.

Each README table is replaced by the BENCHMARKS.md table whose header starts the same way, and
the HTTP "Ratio: N.Nx." lines follow. Run by scripts/bench.sh after make bench writes
BENCHMARKS.md; exits non-zero (and leaves README.md alone) when a table is missing.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How each table's header line starts, in both files.
TABLES = ["| C | tempest ops/s", "| client (C=1)", "| C (TLS)", "| client | instructions per GET",
          "| C | tempest calls/s", "| server | requests/s | p50 ms | p99 ms | peak RSS",
          "| server | requests/s | p50 ms | p99 ms | server CPU", "| request | requests/s",
          "| benchmark | time",
          "| C | tempest, cluster ops/s", "| C | near cache calls/s"]


def table_at(lines, start):
    """Lines of the markdown table that starts at `start`."""
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end


def find(lines, prefix, what):
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            return table_at(lines, i)
    sys.exit(f"sync_readme_perf: no table starting with '{prefix}' in {what}")


def main():
    bench = open(os.path.join(ROOT, "BENCHMARKS.md")).read().splitlines()
    readme_path = os.path.join(ROOT, "README.md")
    readme = open(readme_path).read().splitlines()
    for prefix in TABLES:
        b0, b1 = find(bench, prefix, "BENCHMARKS.md")
        r0, r1 = find(readme, prefix, "README.md")
        readme[r0:r1] = bench[b0:b1]
    # The HTTP "Ratio: N.Nx" lines, in order (the first words only: BENCHMARKS.md explains more).
    ratio = [line.split(" (")[0].rstrip(".") + "." for line in bench if line.startswith("Ratio: ")]
    if len(ratio) != sum(line.startswith("Ratio: ") for line in readme):
        sys.exit("sync_readme_perf: BENCHMARKS.md and README.md differ in their 'Ratio:' lines")
    it = iter(ratio)
    readme = [next(it) if line.startswith("Ratio: ") else line for line in readme]
    with open(readme_path, "w") as f:
        f.write("\n".join(readme) + "\n")
    print("README.md tables updated from BENCHMARKS.md")


if __name__ == "__main__":
    main()

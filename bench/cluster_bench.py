#!/usr/bin/python3
"""Section 7 of make bench (and make bench-cluster on its own): tempest on a Redis Cluster.

Needs CLUSTER_URL and CLUSTER_DIR (scripts/lib.sh start_cluster: 3 masters, a replica each) and
REDIS_URL / REDIS_PORT (one redis-server, for the one-node figures beside them). Every server is
pinned to CPU 0 and every client to CPU 1; the compared clients alternate within each run.
On its own it writes its section into BENCHMARKS.md (between the cluster markers) and
docs/bench/cluster_throughput.png.
"""
import glob
import os
import re
import subprocess
import sys

# run_all's helpers, settings and spread notes: the running module itself when make bench runs
# this as its section 7, an import of it when this runs alone.
_main = sys.modules.get("__main__")
if _main is not None and hasattr(_main, "instructions_per_get") and hasattr(_main, "Figure"):
    ra = _main
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run_all as ra  # noqa: E402

CLUSTER_URL = os.environ["CLUSTER_URL"]
CLUSTER_DIR = os.environ["CLUSTER_DIR"]
BEGIN, END = "<!-- cluster:begin -->", "<!-- cluster:end -->"


def cluster_pids():
    return [open(p).read().strip() for p in glob.glob(os.path.join(CLUSTER_DIR, "*", "redis.pid"))]


def seed_port():
    return re.search(r":(\d+)", CLUSTER_URL.split("//", 1)[1]).group(1)


# redis-benchmark --cluster notices that its run is over on a 250 ms timer tick (measured: runs
# of 0.25, 0.75, 1.00, 1.25, 1.75 s whatever the request count), so the rate it prints is low by
# up to 250 ms over the run time. The goals use its highest possible rate, n / (T - 250 ms).
TICK = 0.25


def redis_benchmark_cluster(c, n):
    """redis-benchmark --cluster spreads its connections over the masters (fewer than one per
    master gives no result): 3 connections, each pipelined ceil(C/3) deep. Returns the printed
    rate, the highest rate its tick allows, and the requests in flight."""
    depth = max(1, -(-c // 3))
    out = ra.sh([*ra.CLIENT_CPU, "redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", seed_port(),
                 "-t", "get", "-c", "3", "-P", str(depth), "-n", str(n), "-d", "3", "--csv"])
    printed = float(out.strip().splitlines()[-1].split(",")[1].strip('"'))
    seconds = n / printed
    highest = n / (seconds - TICK) if seconds > 2 * TICK else printed
    return printed, highest, 3 * depth


def instructions_per_get(url, c=64):
    def cmd(n):
        return [ra.TEMPEST, "bench", "--url", url, "--mode", "get", "--concurrency", str(c),
                "--requests", str(n)]
    return ra.instructions_per_get(cmd)


def micro():
    out = ra.sh([os.path.join(ra.REL, "tempest_micro_bench"), "--benchmark_filter=Cluster",
                 "--benchmark_min_time=1"])
    ns = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0].startswith("Cluster"):
            ns[f[0]] = float(f[1]) * {"ns": 1, "us": 1000}.get(f[2], 1)
    return ns


def section():
    """Returns (markdown lines, goals as run_all's goal tuples)."""
    for pid in cluster_pids() + [os.environ.get("REDIS_PID", "")]:
        if pid and ra.PIN:
            ra.sh(["taskset", "-pc", "0", pid])
    # The keys redis-benchmark --cluster reads ("key:{tag}:__rand_int__", one tag per master)
    # get 3-byte values first, as tempest's own keys have.
    ra.sh(["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", seed_port(), "-t", "set", "-c", "3",
           "-n", "3000", "-d", "3", "-q"])
    rows, pts = [], {"tempest, cluster": [], "redis-benchmark --cluster": [], "tempest, one node": []}
    ratio = {}
    for c in [1, 64, 256]:
        # Runs of 7-9 s: redis-benchmark's 250 ms tick then moves its rate by 3% at most.
        n = (5000 if ra.QUICK else 40000) if c == 1 else \
            (500000 if ra.QUICK else (10000000 if c == 64 else 16000000))
        extra = {"in flight": 0, "highest": []}

        def rb(c=c, n=n, extra=extra):
            printed, highest, depth = redis_benchmark_cluster(c, n)
            extra["in flight"] = depth
            extra["highest"].append(highest)
            return printed
        clients = [lambda c=c, n=n: ra.tempest_bench("get", c, n, pin=ra.CLIENT_CPU, url=CLUSTER_URL)["ops_per_sec"],
                   rb,
                   lambda c=c, n=n: ra.tempest_bench("get", c, n, pin=ra.CLIENT_CPU)["ops_per_sec"]]
        runs = [[run() for run in clients] for _ in range(ra.RUNS)]
        t, r, one = [ra.Figure(f"cluster GET {name} C={c}", [x[i] for x in runs])
                     for i, name in enumerate(["tempest", "redis-benchmark --cluster", "tempest one node"])]
        high = ra.Figure(f"cluster GET redis-benchmark --cluster (highest) C={c}", extra["highest"])
        ratio[c] = t.median / high.median
        note = "" if extra["in flight"] == c else f" ({extra['in flight']} in flight)"
        rows.append(f"| {c} | {t} | {r} (at most {ra.fmt(high.median)}){note} | "
                    f"{t.median / r.median:.2f}x ({ratio[c]:.2f}x) | {one} | {t.median / one.median:.2f}x |")
        for label, fig in zip(pts, (t, high, one)):
            pts[label].append((c, fig.median))
    ra.plot("cluster_throughput", "GET throughput on a Redis Cluster (3 masters)", "concurrency C", "ops/s",
            list(pts.items()))

    cached = {}
    for c in [64]:
        n = 100000 if ra.QUICK else 400000
        clients = [lambda: ra.tempest_bench("cached", c, n, pin=ra.CLIENT_CPU, url=CLUSTER_URL)["ops_per_sec"],
                   lambda: ra.tempest_bench("cached", c, n, pin=ra.CLIENT_CPU)["ops_per_sec"]]
        runs = [[run() for run in clients] for _ in range(ra.RUNS)]
        cached[c] = [ra.Figure(f"cluster cached {name} C={c}", [x[i] for x in runs])
                     for i, name in enumerate(["cluster", "one node"])]
    instr_cluster = instructions_per_get(CLUSTER_URL)
    instr_one = instructions_per_get(ra.URL)
    ns = micro()

    md = [BEGIN, "## 7. Redis Cluster", "",
          "A local cluster of 3 masters with a replica each (`scripts/lib.sh start_cluster`), all six "
          "redis-server processes pinned to CPU 0 and the clients to CPU 1, the compared clients "
          "alternating. `tempest bench --mode get --url redis://...?cluster=true` (its 1,000 keys "
          "spread over the masters) beside `redis-benchmark --cluster -t get`, which needs at least "
          "one connection per master: `-c 3 -P ceil(C/3)`, so about C requests in flight (at C=1 it "
          "has 3, and the ratio there says little). redis-benchmark --cluster notices the end of its run on "
          "a 250 ms timer tick, so its printed rate is low by up to 250 ms over the run time; the "
          "runs last seconds, and the ratio in brackets (the one the goals use) is against its "
          "highest possible rate, n / (T - 250 ms). The last columns are tempest against the one "
          "redis-server of section 1 in the same run: what routing costs.", "",
          "| C | tempest, cluster ops/s | redis-benchmark --cluster ops/s | ratio (vs its highest) | tempest, one node ops/s | cluster / one node |",
          "|---|---|---|---|---|---|", *rows, "",
          "![cluster throughput](docs/bench/cluster_throughput.png)", "",
          f"Cached hits (`--mode cached`, C=64): {cached[64][0]} calls/s on the cluster, "
          f"{cached[64][1]} on one node ({cached[64][0].median / cached[64][1].median:.2f}x).", "",
          f"Instructions per GET at C=64 (callgrind, difference of two request counts): "
          f"{instr_cluster:,.0f} on the cluster, {instr_one:,.0f} on one node.", "",
          f"Routing a command (Google Benchmark): CRC16 of a 55-byte key with the hash-tag rule and the "
          f"slot table's entry {ns.get('ClusterSlotLookup', 0):.1f} ns (`ClusterSlotLookup`); the "
          f"whole of it for a GET, reading the encoded command and finding its key in the command "
          f"table too, {ns.get('ClusterRouteGet', 0):.1f} ns (`ClusterRouteGet`).", ""]
    goals = [
        ("cluster GET at C=64 vs redis-benchmark --cluster", ratio[64], ">= 0.8x", ratio[64] >= 0.8,
         f"{ratio[64]:.2f}x"),
        ("cluster GET at C=256 vs redis-benchmark --cluster", ratio[256], ">= 0.8x", ratio[256] >= 0.8,
         f"{ratio[256]:.2f}x"),
        ("CRC16 + slot lookup per command", ns.get("ClusterSlotLookup", 0), "<= 30 ns",
         ns.get("ClusterSlotLookup", 1e9) <= 30, f"{ns.get('ClusterSlotLookup', 0):.1f} ns"),
    ]
    md += ["| goal | target | measured | met |", "|---|---|---|---|",
           *[f"| {g[0]} | {g[2]} | {g[4]} | {'yes' if g[3] else '**no**'} |" for g in goals], "", END, ""]
    return md, goals


def main():
    os.makedirs(ra.PLOTS, exist_ok=True)
    md, goals = section()
    ra.write_section(md, BEGIN, END)
    ra.update_goal_rows(goals)
    print("\n".join(md))
    print("wrote the cluster section of BENCHMARKS.md and docs/bench/cluster_throughput.png")


if __name__ == "__main__":
    sys.exit(main())

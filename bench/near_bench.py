#!/usr/bin/python3
"""Section 8 of make bench (and make bench-near on its own): the near cache.

Needs REDIS_URL / REDIS_PORT / REDIS_PID (one redis-server: scripts/lib.sh start_redis). The
server is pinned to CPU 0 and the client to CPU 1; the compared runs alternate. On its own it
writes its section into BENCHMARKS.md (between the near markers) and
docs/bench/near_throughput.png.
"""
import os
import sys

_main = sys.modules.get("__main__")
if _main is not None and hasattr(_main, "tempest_bench") and hasattr(_main, "Figure"):
    ra = _main
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run_all as ra  # noqa: E402

BEGIN, END = "<!-- near:begin -->", "<!-- near:end -->"
KEYS = 1000
WRITES_PER_SEC = KEYS // 100  # 1% of the keys per second


def section():
    """Returns (markdown lines, goals as run_all's goal tuples)."""
    if ra.PIN and os.environ.get("REDIS_PID"):
        ra.sh(["taskset", "-pc", "0", os.environ["REDIS_PID"]])
    rows, pts = [], {"near cache": [], "near cache, writer 1%/s": [], "Redis-backed hits": []}
    figs = {}
    for c in [1, 16, 64]:
        # Runs of 1-3 s each: a near hit costs a few hundred ns, a Redis-backed one a round trip.
        n_near = 1000000 if ra.QUICK else 10000000
        n_redis = (4000 if ra.QUICK else 40000) if c == 1 else (100000 if ra.QUICK else 1000000)
        keys = ["--keys", str(KEYS)]
        clients = [
            lambda c=c: ra.tempest_bench("cached", c, n_near, ["--near", *keys], pin=ra.CLIENT_CPU),
            lambda c=c: ra.tempest_bench("cached", c, n_near,
                                         ["--near", "--writes-per-sec", str(WRITES_PER_SEC), *keys],
                                         pin=ra.CLIENT_CPU),
            lambda c=c: ra.tempest_bench("cached", c, n_redis, keys, pin=ra.CLIENT_CPU),
        ]
        runs = [[run() for run in clients] for _ in range(ra.RUNS)]
        near, written, redis = [ra.Figure(f"near cache {name} C={c}", [x[i]["ops_per_sec"] for x in runs])
                                for i, name in enumerate(["hits", "hits with a writer", "Redis-backed hits"])]
        invalidated = sorted(x[1].get("invalidations", 0) for x in runs)[len(runs) // 2]
        figs[c] = (near, written, redis)
        rows.append(f"| {c} | {near} | {written} ({invalidated} invalidations) | {redis} | "
                    f"{near.median / redis.median:.1f}x | {1e9 / near.median:.0f} ns |")
        for label, fig in zip(pts, (near, written, redis)):
            pts[label].append((c, fig.median))
    ra.plot("near_throughput", "Cached hits: near cache (process memory) vs Redis", "concurrency C",
            "calls/s", list(pts.items()))
    delays = [ra.last_json(ra.sh([*ra.CLIENT_CPU, ra.TEMPEST, "bench", "--url", ra.URL, "--mode",
                                  "invalidation", "--requests", "10000"])) for _ in range(ra.RUNS)]
    p50 = ra.Figure("invalidation delay p50", [d["p50_us"] for d in delays])
    p99 = ra.Figure("invalidation delay p99", [d["p99_us"] for d in delays])
    worst = max(d["max_us"] for d in delays)

    near1 = figs[1][0].median
    ratio64 = figs[64][0].median / figs[64][2].median
    md = [BEGIN, "## 8. Near cache", "",
          "`tempest bench --mode cached --near`: the 5-field struct of section 2 over "
          f"{KEYS:,} keys, every call a hit served from process memory (the key derived, looked up, "
          "the decoded value copied out), on one thread; beside it the same with a writer on another "
          f"connection rewriting {WRITES_PER_SEC} random keys a second (1% of them: each write's "
          "invalidation removes that entry and the next call goes to Redis), and the Redis-backed "
          "hits of section 2 (`--mode cached` without `--near`), alternating, redis-server on CPU 0 "
          "and the client on CPU 1. A near hit never suspends, so the benchmark's callers yield to "
          "the connections every 64 calls, as a server's own I/O would. Measured on "
          f"{ra.today()} (`make bench-near` runs this section alone).", "",
          "| C | near cache calls/s | with a writer at 1%/s | Redis-backed hits calls/s | near / Redis | per near hit |",
          "|---|---|---|---|---|---|", *rows, "",
          "![near cache throughput](docs/bench/near_throughput.png)", "",
          f"Invalidation delay (`tempest bench --mode invalidation --requests 10000`: 10,000 keys read "
          f"by a tracking client, then written once each by another connection; from each write's "
          f"return to its invalidation's arrival on loopback): p50 {p50} us, p99 {p99} us, worst "
          f"{worst:.0f} us over {ra.RUNS} runs.", ""]
    goals = [
        ("near cache hits on one thread", near1, ">= 4M calls/s", near1 >= 4e6, f"{ra.fmt(near1)} calls/s"),
        ("near cache vs Redis-backed hits at C=64", ratio64, ">= 5x", ratio64 >= 5, f"{ratio64:.1f}x"),
        ("invalidation delay p99 on loopback", p99.median, "<= 1 ms", p99.median <= 1000,
         f"{p99.median:.0f} us"),
    ]
    md += ["| goal | target | measured | met |", "|---|---|---|---|",
           *[f"| {g[0]} | {g[2]} | {g[4]} | {'yes' if g[3] else '**no**'} |" for g in goals], "", END, ""]
    return md, goals


def main():
    os.makedirs(ra.PLOTS, exist_ok=True)
    md, goals = section()
    ra.write_section(md, BEGIN, END, after=("<!-- cluster:end -->",),
                     before=("## Where the time goes", "## Spread"))
    ra.update_goal_rows(goals)
    print("\n".join(md))
    print("wrote the near cache section of BENCHMARKS.md and docs/bench/near_throughput.png")


if __name__ == "__main__":
    sys.exit(main())

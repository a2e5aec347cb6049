#!/usr/bin/python3
"""Section 4 of make bench (and make bench-http on its own): HTTP.

users_service against the same app in Python (bench/python_app.py: FastAPI + uvicorn), the same
wrk command for both, run after one another RUNS times: one thread against one uvicorn worker,
two threads against `uvicorn --workers 2`, and the response cache beside the cached() route.
Needs REDIS_URL / REDIS_PORT (one redis-server: scripts/lib.sh start_redis). On its own it
writes its section into BENCHMARKS.md (between the http markers), its rows of the goals table,
and docs/bench/http_latency.png.
"""
import os
import sys

_main = sys.modules.get("__main__")
if _main is not None and hasattr(_main, "wrk_server") and hasattr(_main, "Figure"):
    ra = _main
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run_all as ra  # noqa: E402

BEGIN, END = "<!-- http:begin -->", "<!-- http:end -->"


class Runs(list):
    """One server's results, run after run, with the name its figures are flagged under."""

    def __init__(self, name):
        super().__init__()
        self.name = name


def section():
    """Returns (markdown lines, goals as run_all's goal tuples)."""
    tr, pr = Runs("HTTP 1 thread"), Runs("HTTP 1 worker")
    t2, p2 = Runs("HTTP 2 threads"), Runs("HTTP 2 workers")
    rc = []
    py_app = [ra.PY, os.path.join(ra.ROOT, "bench", "python_app.py")]
    rc_paths = ("/users/1", "/users/1/orders", "/users/1/orders")
    for _ in range(ra.RUNS):
        tr.append(ra.wrk_server([ra.USERS], {"THREADS": "1"})[0])
        pr.append(ra.wrk_server(py_app, {})[0])
        t2.append(ra.wrk_server([ra.USERS], {"THREADS": "2"}, wrk_threads=2)[0])
        p2.append(ra.wrk_server(py_app, {"WORKERS": "2"}, wrk_threads=2)[0])
        plain_hit = ra.wrk_server([ra.USERS], {"THREADS": "2"}, rc_paths[:2], wrk_threads=2)
        not_modified = ra.wrk_server([ra.USERS], {"THREADS": "2"}, rc_paths[2:], wrk_threads=2,
                                     header=ra.etag_header)
        rc.append(plain_hit + not_modified)

    columns = ["requests/s", "p50", "p99", "peak RSS", "CPU per request"]

    def med(rs, i):
        return ra.Figure(f"{rs.name} {columns[i]}", [r[i] for r in rs])

    def col(rs, j, i):
        return ra.Figure(f"HTTP response cache, request {j + 1}, {columns[i]}", [r[j][i] for r in rs])

    trps, prps, t2rps, p2rps = med(tr, 0), med(pr, 0), med(t2, 0), med(p2, 0)
    ratio1, ratio2 = trps.median / prps.median, t2rps.median / p2rps.median
    p99_1, p99_2 = (med(tr, 2).median, med(pr, 2).median), (med(t2, 2).median, med(p2, 2).median)
    rss = med(tr, 3).median
    goals = [
        ("HTTP requests/s vs Python", ratio1, ">= 10x", ratio1 >= 10, f"{ratio1:.1f}x"),
        ("HTTP p99 lower than Python", p99_1[0], "lower", p99_1[0] < p99_1[1],
         f"{p99_1[0]:.2f} ms vs {p99_1[1]:.2f} ms"),
        ("HTTP, 2 threads vs uvicorn --workers 2", ratio2, ">= 10x", ratio2 >= 10, f"{ratio2:.1f}x"),
        ("HTTP p99, 2 threads vs 2 workers", p99_2[0], "lower", p99_2[0] < p99_2[1],
         f"{p99_2[0]:.2f} ms vs {p99_2[1]:.2f} ms"),
        ("users_service peak RSS", rss, "<= 30 MiB", rss <= 30, f"{rss:.1f} MiB"),
    ]
    md = [BEGIN, "## 4. HTTP", "",
          "`wrk -c64 -d10s --latency` on a warm `/users/1` of `examples/users_service` and of the "
          "same app in Python (`bench/python_app.py`: FastAPI + uvicorn + redis.asyncio from "
          "Debian's packages, the documented `@cached`), one after the other, "
          f"{ra.RUNS} time{'s' if ra.RUNS != 1 else ''}. The servers, wrk and redis-server share the machine's CPUs (no "
          f"pinning: the servers use them all). Measured on {ra.today()} (`make bench-http` runs "
          "this section alone).", "",
          "**One thread against one worker** (`THREADS=1`; `wrk -t1`). Goals: >= 10x the Python "
          "app's requests per second, a lower p99, users_service peak RSS <= 30 MiB.", "",
          "| server | requests/s | p50 ms | p99 ms | peak RSS MiB | server CPU µs per request |",
          "|---|---|---|---|---|---|",
          f"| users_service (C++), 1 thread | {trps} | {med(tr, 1).median:.2f} | {med(tr, 2).median:.2f} | {med(tr, 3).median:.1f} | {med(tr, 4).median:.1f} |",
          f"| FastAPI app (Python), 1 worker | {prps} | {med(pr, 1).median:.2f} | {med(pr, 2).median:.2f} | {med(pr, 3).median:.1f} | {med(pr, 4).median:.1f} |",
          "", f"Ratio: {ratio1:.1f}x.", "",
          "**Two threads against `uvicorn --workers 2`** (`THREADS=2` / `WORKERS=2`; the same "
          "`wrk -t2 -c64`). Goals: >= 10x, a lower p99.", "",
          "| server | requests/s | p50 ms | p99 ms | server CPU µs per request |", "|---|---|---|---|---|",
          f"| users_service (C++), 2 threads | {t2rps} | {med(t2, 1).median:.2f} | {med(t2, 2).median:.2f} | {med(t2, 4).median:.1f} |",
          f"| FastAPI app (Python), 2 workers | {p2rps} | {med(p2, 1).median:.2f} | {med(p2, 2).median:.2f} | {med(p2, 4).median:.1f} |",
          "", f"Ratio: {ratio2:.1f}x"
          f" ({'met' if ratio2 >= 10 else 'MISSED'}); p99 "
          f"{'lower' if p99_2[0] < p99_2[1] else 'NOT lower'}; CPU per request "
          f"{med(p2, 4).median / med(t2, 4).median:.1f}x less. On a machine with two CPUs, wrk, "
          "redis-server and the server share them, so the ratio moves with what a machine charges "
          "each side (seen between sessions: 7.5x on one VM, over 20x on another); the CPU "
          "column is what each request costs the server on this one.", "",
          "**The response cache** (users_service, 2 threads, `wrk -t2 -c64`): `/users/1` is the "
          "cached() route (a Redis GET and a decode per request, the handler runs); "
          "`/users/1/orders` is answered by the response cache from Redis without its handler "
          "(`X-Cache: HIT`); the 304 is the same request with `If-None-Match` and its ETag.", "",
          "| request | requests/s | p50 ms | p99 ms |", "|---|---|---|---|",
          *[f"| {name} | {col(rc, j, 0)} | {col(rc, j, 1).median:.2f} | {col(rc, j, 2).median:.2f} |"
            for j, name in enumerate(["`/users/1`, cached() hit", "`/users/1/orders`, X-Cache: HIT",
                                      "`/users/1/orders`, 304 Not Modified"])],
          "", "![HTTP latency](docs/bench/http_latency.png)", "", END, ""]
    ra.plot("http_latency", "HTTP latency on a warm /users/1 (wrk -c64)", "percentile", "ms",
            [("users_service, 1 thread", [(50, med(tr, 1).median), (99, med(tr, 2).median)]),
             ("FastAPI app, 1 worker", [(50, med(pr, 1).median), (99, med(pr, 2).median)]),
             ("users_service, 2 threads", [(50, med(t2, 1).median), (99, med(t2, 2).median)]),
             ("FastAPI app, 2 workers", [(50, med(p2, 1).median), (99, med(p2, 2).median)])], logx=False)
    return md, goals


def main():
    os.makedirs(ra.PLOTS, exist_ok=True)
    md, goals = section()
    ra.write_section(md, BEGIN, END, before=("## 5.", "## Spread"))
    ra.update_goal_rows(goals)
    print("\n".join(md))
    for name, _, target, ok, shown in goals:
        print(f"{name}: {shown} (goal {target}) {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The reliability section of BENCHMARKS.md from a `make chaos` run.

    build/tests/tempest_chaos --duration 10m > chaos.out
    python3 bench/chaos_report.py chaos.out [--each chaos-each.out] [--write]

Reads the last JSON line of each output (the mixed run's, and optionally a `--each 1` run's),
prints the section as Markdown, and with --write puts it into BENCHMARKS.md between the chaos
markers (make bench keeps that section as it is).
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"
KIND_NAMES = {
    "sigstop": "SIGSTOP", "sigkill": "SIGKILL + restart", "client_kill": "CLIENT KILL",
    "debug_sleep": "DEBUG SLEEP", "oom": "OOM (maxmemory 1)", "black_hole": "black hole",
    "delay": "delay", "reset_mid_reply": "reset mid-reply", "slow_drip": "slow drip",
    "accept_then_close": "accept-then-close", "failover": "cluster: CLUSTER FAILOVER",
    "master_kill": "cluster: master SIGKILLed", "slot_migration": "cluster: slots migrating",
}


def last_json(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith("{")]
    if not lines:
        sys.exit(f"{path}: no JSON line (did the run end?)")
    return json.loads(lines[-1])


def mib(kib):
    return f"{kib / 1024:.1f}"


def section(run, each=None):
    faults = run["faults"]
    procs = [p for p in run["processes"] if p]
    errors = {}
    for p in procs:
        for k, n in p["errors"].items():
            errors[k] = errors.get(k, 0) + n
    near_hits = sum(p.get("near_hits", 0) for p in procs)
    http = run.get("http") or {}
    ready = http.get("readiness", {})
    md = [BEGIN, "## 9. Reliability: `make chaos`", "",
          f"`build/tests/tempest_chaos --duration {run['duration_s'] // 60}m` "
          f"(seed {run['seed']}; `SEED={run['seed']} DURATION={run['duration_s'] // 60}m make chaos` "
          "replays its fault schedule): a redis-server behind the fault proxy and a Redis Cluster "
          "side by side, two load processes of 64 callers on each (one with the near cache), "
          "users_service under HTTP load on the first. What each check means: README, "
          "\"Reliability\".", "",
          "| | |", "|---|---|",
          f"| result | **{'passed' if run['ok'] else 'FAILED'}** |",
          f"| faults | {run['faults_total']}: "
          + ", ".join(f"{KIND_NAMES.get(k, k)} {n}" for k, n in sorted(faults.items(), key=lambda kv: -kv[1]))
          + " |",
          f"| calls | {run['calls'] / 1e6:.1f} million ({near_hits / 1e6:.1f} million near-cache hits) |",
          "| errors, all typed | " + ", ".join(f"{n:,} {k}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1])) + " |",
          f"| wrong values (incl. stale `cached()` results) | {run['wrong']} |",
          f"| acknowledged writes lost | {run['lost_writes']} ({sum(p['verified_keys'] for p in procs)} keys verified after the run) |",
          f"| worst overrun past a deadline | {run['max_overrun_ms']} ms (margin {run['margin_ms']} ms) |",
          f"| invalidations held to (a later read had to see them) | {sum(p.get('floors_raised', 0) for p in procs):,} of {sum(p['invalidations'] for p in procs):,} |",
          "| RSS at warm-up → halfway → end (MiB) | " + ", ".join(
              f"{p['name']} {mib(p['rss_start_kib'])} → {mib(p.get('rss_mid_kib', 0))} → {mib(p['rss_end_kib'])}"
              for p in procs) + " |"]
    if http:
        statuses = ", ".join(f"{n:,} × {s}" for s, n in http["statuses"].items())
        md += [f"| HTTP requests | {http['requests']:,} ({statuses}); wrong {http['wrong']}, stale renames {http['stale']}, "
               f"unanswered {http['no_answer']}; worst {http['max_ms']} ms |",
               f"| readiness probes | {ready.get('probes', 0)}: {ready.get('said_down_while_down', 0)} said 503 while Redis was "
               f"unreachable, {ready.get('said_up_while_up', 0)} said 200 in calm, {ready.get('lies', 0)} lies; "
               f"slowest {ready.get('max_ms', 0)} ms |"]
    md.append("")
    if each:
        md += [f"Each kind alone (`make chaos-each`, {each['duration_s_each']} s each, seed {each['seed']}):", "",
               "| kind | faults | calls | wrong | lost | worst overrun | result |", "|---|---|---|---|---|---|---|"]
        for k, r in each["each"].items():
            md.append(f"| {KIND_NAMES.get(k, k)} | {r.get('faults_total', '?')} | {r.get('calls', 0) / 1e6:.1f} M | "
                      f"{r.get('wrong', '?')} | {r.get('lost_writes', '?')} | {r.get('max_overrun_ms', '?')} ms | "
                      f"{'ok' if r['ok'] else 'FAILED'} |")
        md.append("")
    md.append(END)
    return md


def main():
    args = sys.argv[1:]
    write = "--write" in args
    args = [a for a in args if a != "--write"]
    each = None
    if "--each" in args:
        i = args.index("--each")
        each = last_json(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    md = section(last_json(args[0]), each)
    text = "\n".join(md)
    print(text)
    if write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        old = open(path).read()
        if BEGIN in old and END in old:
            old = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
        elif "## Spread" in old:
            old = old.replace("## Spread", text + "\n\n## Spread", 1)
        else:
            old += "\n" + text + "\n"
        with open(path, "w") as f:
            f.write(old)


if __name__ == "__main__":
    main()

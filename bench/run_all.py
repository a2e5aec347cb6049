#!/usr/bin/python3
"""make bench: every comparison in one run; writes BENCHMARKS.md and docs/bench/*.png.

Run by scripts/bench.sh, which installs what is missing, builds in Release and starts
redis-server; it passes REDIS_URL, REDIS_PORT and RUNS in the environment.
Each figure is the median of RUNS runs; the spread (max - min) / median is shown, and flagged
when it is over 20% (too wide to trust).
"""
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "build-release", "bin")
TEMPEST = os.path.join(REL, "tempest")
USERS = os.path.join(REL, "users_service")
PY = "/usr/bin/python3"
URL = os.environ["REDIS_URL"]
PORT = os.environ["REDIS_PORT"]
RUNS = int(os.environ.get("RUNS", "3"))
QUICK = os.environ.get("QUICK") == "1"  # smaller sizes, for trying the script out
PLOTS = os.path.join(ROOT, "docs", "bench")
WIDE = 0.20
wide_notes = []


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def last_json(out):
    return json.loads(out.strip().splitlines()[-1])


class Figure:
    def __init__(self, label, values):
        self.label, self.values = label, values
        self.median = statistics.median(values)
        self.spread = (max(values) - min(values)) / self.median if self.median else 0.0
        if self.spread > WIDE and len(values) > 1:
            wide_notes.append(f"{label}: spread {self.spread:.0%} over {len(values)} runs")

    def __str__(self):
        flag = " (!)" if self.spread > WIDE and len(self.values) > 1 else ""
        return f"{fmt(self.median)} ±{self.spread / 2:.0%}{flag}"


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


def repeat(label, fn):
    return Figure(label, [fn() for _ in range(RUNS)])


def tempest_bench(mode, c, n, extra=(), pin=(), url=None):
    return last_json(sh([*pin, TEMPEST, "bench", "--url", url or URL, "--mode", mode, "--concurrency", str(c),
                         "--requests", str(n), *extra]))


def redis_benchmark(c, n, size=3, port=None, tls=()):
    out = sh([*CLIENT_CPU, "redis-benchmark", "-h", "127.0.0.1", "-p", port or PORT, *tls, "-t", "get", "-c", "1",
              "-P", str(c), "-n", str(n), "-d", str(size), "--csv"])
    return float(out.strip().splitlines()[-1].split(",")[1].strip('"'))


def pingpong(tool, c, n, *flags, size=3):
    """ops/s of a reference client bench/<tool>_pingpong.cpp (asio, hiredis, epoll)."""
    return float(sh([*CLIENT_CPU, os.path.join(REL, f"{tool}_pingpong"), PORT, str(c), str(n), str(size),
                     *flags]))


# Sections 1 and 2 pin redis-server to CPU 0 and the clients to CPU 1 (when there are two):
# otherwise the scheduler now and then puts both on one core, where a C=1 round trip is ten times
# faster, and the figures jump with it. The other sections leave the scheduler free (a stampede
# runs on a cold key, and the HTTP section runs three processes).
PIN = (os.cpu_count() or 1) >= 2
CLIENT_CPU = ["taskset", "-c", "1"] if PIN else []


def pin_server(cpus):
    if PIN:
        sh(["taskset", "-pc", cpus, os.environ["REDIS_PID"]])


class TlsRedis:
    """A redis-server on a free port serving TLS only, with throwaway certificates (section 1b)."""

    def __init__(self):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="tempest-bench-tls.")
        d = self.dir
        for cmd in (["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                     "/CN=tempest-bench-ca", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt"],
                    ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                     "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr"]):
            sh(cmd)
        with open(f"{d}/ext.cnf", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        sh(["openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext.cnf", "-out",
            f"{d}/server.crt"])
        self.ca = f"{d}/ca.crt"
        self.port = str(free_port())
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", "0", "--tls-port", self.port,
             "--tls-cert-file", f"{d}/server.crt", "--tls-key-file", f"{d}/server.key",
             "--tls-ca-cert-file", self.ca, "--tls-auth-clients", "no", "--save", "", "--appendonly",
             "no", "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"rediss://127.0.0.1:{self.port}/0?tls_ca={self.ca}"
        for _ in range(200):
            if subprocess.run(self.cli("PING"), capture_output=True, text=True).stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        if PIN:
            sh(["taskset", "-pc", "0", str(self.proc.pid)])

    def cli(self, *args):
        return ["redis-cli", "--tls", "--cacert", self.ca, "-p", self.port, *args]

    def close(self):
        import shutil
        self.proc.terminate()
        self.proc.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)


def callgrind_total(cmd):
    """Instructions a command executes in all (valgrind --tool=callgrind)."""
    out = f"/tmp/tempest-bench-{os.getpid()}.cg"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                   check=True, capture_output=True)
    ann = sh(["callgrind_annotate", out])
    os.remove(out)
    return int(re.search(r"([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", ann).group(1).replace(",", ""))


def callgrind_split(cmd):
    """(all instructions, those in libcrypto) of a command: valgrind emulates no SHA extensions,
    so OpenSSL's SHA-256 runs its plain-x86 block function there, several times what it costs on
    a CPU with SHA-NI."""
    out = f"/tmp/tempest-bench-{os.getpid()}.cg"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
                   check=True, capture_output=True)
    ann = sh(["callgrind_annotate", "--threshold=100", out])
    os.remove(out)
    total = int(re.search(r"([\d,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", ann).group(1).replace(",", ""))
    crypto = sum(int(m.group(1).replace(",", "")) for m in
                 re.finditer(r"^\s*([\d,]+)\s+\([^)]*\)\s+.*libcrypto\.so.*$", ann, re.M))
    return total, crypto


# What libcrypto executes per cached hit on a CPU with SHA-NI, where valgrind (which emulates no
# SHA extensions: forcing OpenSSL onto them there is a SIGILL) runs the plain-x86 block function,
# ~2,040 instructions. A hit's key text fits one block: SHA256_Init (14 instructions, measured
# under callgrind) and SHA256_Transform, whose SHA-NI path in Debian 12's libcrypto.so.3 is 195
# instructions for one block (objdump -d: 6 of dispatch, 10 of entry, 171 in the loop, 8 of exit)
# plus the call into it (~5).
SHA_NI_HIT = 14 + 5 + 195


def instructions_per_hit(extra=(), n=20000):
    """Instructions per warm cached hit of the 5-field struct at C=64, and those of them in
    libcrypto (SHA-256 of the key): runs of 3n and n calls differenced, on keys written by the
    same options in an unmeasured run first."""
    sh(["redis-cli", "-p", PORT, "FLUSHALL"])
    cmd = lambda k: [TEMPEST, "bench", "--url", URL, "--mode", "cached", "--concurrency", "64",
                     "--requests", str(k), *extra]
    sh(cmd(2000))  # writes the keys: both measured runs then warm up on hits alike
    a, b = callgrind_split(cmd(n)), callgrind_split(cmd(3 * n))
    return (b[0] - a[0]) / (2 * n), (b[1] - a[1]) / (2 * n)


def instructions_per_get(cmd_for, n=10000):
    """Instructions per GET, machine-independent: the difference between runs of 2n and n GETs,
    so start-up, connection and warm-up cancel out."""
    return (callgrind_total(cmd_for(2 * n)) - callgrind_total(cmd_for(n))) / n


def python_cached(c, n, mode="cached", pin=()):
    return last_json(sh([*pin, PY, os.path.join(ROOT, "bench", "python_cached.py"), "--url", URL,
                         "--concurrency", str(c), "--requests", str(n), "--mode", mode]))


def redis_used_memory_mib():
    out = sh(["redis-cli", "-p", PORT, "INFO", "memory"])
    return int(re.search(r"used_memory:(\d+)", out).group(1)) / 2**20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    """CPU time (user + system) of a process and its live descendants (uvicorn's workers)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
            except (OSError, IndexError, ValueError):
                pass
    family, total, grew = {pid}, 0, True
    while grew:
        grew = False
        for p, (ppid, _) in stats.items():
            if ppid in family and p not in family:
                family.add(p)
                grew = True
    total = sum(stats[p][1] for p in family if p in stats)
    return total / os.sysconf("SC_CLK_TCK")


def wrk_server(cmd, env_extra, paths=("/users/1",), wrk_threads=1, header=None):
    """Starts a server, warms each path, runs the same wrk on each in turn; returns a list of
    (rps, p50 ms, p99 ms, peak RSS MiB of the server's main process, server CPU microseconds per
    request, its worker processes included), one per path. header:
    a function of the server's port giving one request header for wrk, or None."""
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", REDIS_URL=URL, **env_extra)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                sh(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}{paths[0]}"])
                break
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        results = []
        for path in paths:
            sh(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"])  # warm
            extra = ["-H", header(port, path)] if header else []
            cpu_before = cpu_seconds(proc.pid)
            out = sh(["wrk", f"-t{wrk_threads}", "-c64", "-d" + ("3s" if QUICK else "10s"), "--latency",
                      *extra, f"http://127.0.0.1:{port}{path}"])
            cpu = cpu_seconds(proc.pid) - cpu_before
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            total = int(re.search(r"(\d+) requests in", out).group(1))

            def ms(pct):
                v = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
                return float(v.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[v.group(2)]

            with open(f"/proc/{proc.pid}/status") as f:
                rss = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
            results.append((rps, ms(50), ms(99), rss, cpu * 1e6 / total))
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def etag_header(port, path):
    """The If-None-Match header that makes `path` a 304: its current ETag."""
    out = sh(["curl", "-s", "-o", "/dev/null", "-D", "-", f"http://127.0.0.1:{port}{path}"])
    return "If-None-Match: " + re.search(r"(?im)^etag:\s*(\S+)", out).group(1)


CHAOS_BEGIN, CHAOS_END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def write_section(md, begin, end, after=(), before=("## Spread",)):
    """A section run on its own (make bench-cluster, make bench-near): its lines (between its
    markers `begin` and `end`) replace its last version in BENCHMARKS.md, or go after the first of
    `after` (markers) present, or before the first of `before` (headings) present, or at the end."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    block = "\n".join(md).rstrip("\n")
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif any(a in text for a in after):
        a = next(a for a in after if a in text)
        at = text.index(a) + len(a)
        text = text[:at] + "\n\n" + block + text[at:]
    elif any(b in text for b in before):
        b = next(b for b in before if b in text)
        text = text.replace(b, block + "\n\n" + b, 1)
    else:
        text += "\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def today():
    """The date a section was measured (a section can be run again on its own)."""
    return time.strftime("%Y-%m-%d")


def update_goal_rows(goals):
    """A section run on its own: its rows of BENCHMARKS.md's goals tables (the summary's and its
    own), and the summary's list of missed goals, as this run measured them."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    for name, _, target, ok, shown in goals:
        row = f"| {name} | {target} | {shown} | {'yes' if ok else '**no**'} |"
        text = re.sub(rf"(?m)^\| {re.escape(name)} \|.*\|$", lambda _m: row, text)

    def missed_line(m):
        missed = m.group(1)  # names joined by ", " (a name may hold ", " itself)
        for name, _, _, ok, _ in goals:
            if ok:
                missed = missed.replace(", " + name, "").replace(name + ", ", "").replace(name, "")
            elif name not in missed:
                missed = f"{missed}, {name}" if missed else name
        return f"Missed in this run: {missed}." if missed else ""
    text = re.sub(r"(?m)^Missed in this run: (.*?)\. (?=Runs on)", lambda m: missed_line(m) + " ", text)
    with open(path, "w") as f:
        f.write(text)


def plot(name, title, xlabel, ylabel, series, logx=True, y2=None):
    """series: [(label, [(x, y)...])]; writes docs/bench/<name>.png with gnuplot."""
    data = os.path.join(PLOTS, f"{name}.dat")
    with open(data, "w") as f:
        for label, points in series + ([y2] if y2 else []):
            f.write(f"# {label}\n")
            for x, y in points:
                f.write(f"{x} {y}\n")
            f.write("\n\n")
    plots = [f"'{data}' index {i} with linespoints lw 2 pt 7 title '{label}'"
             for i, (label, _) in enumerate(series)]
    if y2:
        plots.append(f"'{data}' index {len(series)} axes x1y2 with linespoints lw 2 pt 5 dt 2 title '{y2[0]}'")
    script = f"""
set terminal pngcairo size 900,520 font 'Sans,11'
set termoption noenhanced
set output '{os.path.join(PLOTS, name + '.png')}'
set title '{title}'
set xlabel '{xlabel}'
set ylabel '{ylabel}'
set grid
set key top left
set yrange [0:*]
{'set y2range [0:*]' if y2 else ''}
{'set logscale x' if logx else ''}
{"set y2label '" + y2[0] + "'" if y2 else ''}
{'set y2tics' if y2 else ''}
plot {', '.join(plots)}
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    os.remove(data)


def main():
    os.makedirs(PLOTS, exist_ok=True)
    conc = [1, 4, 16, 64] if QUICK else [1, 4, 16, 64, 256]
    md = []

    # 1. client GET throughput
    # redis-benchmark -t get reads the one key "key:__rand_int__" (-d sizes only what it SETs):
    # give it a 3-byte value, so it gets the same replies as tempest (not nil).
    sh(["redis-cli", "-p", PORT, "set", "key:__rand_int__", "xxx"])
    rows, t_pts, r_pts, floor_rows = [], [], [], []
    pin_server("0")
    for c in conc:
        n = 20000 if c == 1 else (100000 if QUICK else 300000)
        # Runs alternate, so every client sees the same drift of the machine. At C=1 hiredis'
        # blocking client and the two system-call-only clients run too (the table below).
        clients = [lambda: tempest_bench("get", c, n, pin=CLIENT_CPU)["ops_per_sec"],
                   lambda: redis_benchmark(c, n), lambda: pingpong("asio", c, n)]
        if c == 1:
            clients += [lambda: pingpong("hiredis", c, n), lambda: pingpong("epoll", c, n),
                        lambda: pingpong("epoll", c, n, "--epoll-ctl")]
        runs = [[run() for run in clients] for _ in range(RUNS)]
        t, r, a, *floors = [Figure(f"GET {name} C={c}", [x[i] for x in runs]) for i, name in enumerate(
            ["tempest", "redis-benchmark", "bare Asio", "hiredis", "bare epoll", "bare epoll + epoll_ctl"]
            [:len(clients)])]
        rows.append(f"| {c} | {t} | {r} | {t.median / r.median:.2f}x | {a} | {a.median / r.median:.2f}x |")
        t_pts.append((c, t.median))
        r_pts.append((c, r.median))
        if c == 1:
            floors_c1 = floors
            floor_rows = [f"| {name} | {fig} | {fig.median / r.median:.2f}x |" for name, fig in [
                ("redis-benchmark -c 1 -P 1", r), ("tempest bench --concurrency 1", t),
                ("hiredis' blocking client (bench/hiredis_pingpong)", floors[0]),
                ("bench/asio_pingpong (bare Asio)", a), ("bench/epoll_pingpong (system calls only)", floors[1]),
                ("bench/epoll_pingpong --epoll-ctl (+ 2 epoll_ctl per request)", floors[2])]]
    get_tempest = dict(t_pts)
    get_ratio = {c: t / dict(r_pts)[c] for c, t in t_pts}
    c1_vs_epoll = get_tempest[1] / floors_c1[1].median
    plot("get_throughput", "GET throughput, one connection", "concurrency C", "ops/s",
         [("tempest bench --mode get", t_pts), ("redis-benchmark -c 1 -P C", r_pts)])
    md += ["## 1. Client GET throughput", "",
           "`tempest bench --mode get --concurrency C` (C coroutines, one connection) beside "
           "`redis-benchmark -t get -c 1 -P C` (one connection, pipeline depth C), 3-byte values "
           "(the one key redis-benchmark reads is given a 3-byte value first, so both get the same "
           "replies; the clients' runs alternate; redis-server runs on CPU 0 and the clients on CPU 1). "
           "Goals: >= 1.0x redis-benchmark at C=64; at C=1, >= 0.95x the plain system-call client "
           "below (what any client can reach on the machine; the redis-benchmark ratio stays printed).", "",
           "The last two columns are a reference: `bench/asio_pingpong`, the least an Asio client "
           "does per round trip (one socket, callbacks, no strand, no coroutines, no parsing).", "",
           "| C | tempest ops/s | redis-benchmark ops/s | ratio | bare Asio ops/s | bare Asio ratio |",
           "|---|---|---|---|---|---|", *rows, "",
           "![GET throughput](docs/bench/get_throughput.png)", "",
           "### One caller: what a round trip costs on this machine", "",
           "At C=1 every GET is a round trip in which both processes go idle and are woken. Below, "
           "the same C=1 runs beside hiredis' blocking client (what redis-plus-plus wraps, and what "
           "many C++ services use) and two clients that use nothing but system calls "
           "(`bench/epoll_pingpong`): one socket in an epoll set, send, epoll_wait, recv. The "
           "second adds, per request, an unrelated eventfd added to and removed from its epoll set, "
           "which redis-benchmark's event loop does with its own socket on every request. "
           "That is more work, yet where leaving idle is expensive (a VM) it makes the round trip "
           "faster: removing an epoll item queues an RCU callback, and a CPU with one pending keeps "
           "its scheduler tick through the next idle, which is then cheaper to leave. When even the "
           "plain system-call client is below 0.9x, the C=1 gap is the machine's idle path, not "
           "the cost of a client's code.", "",
           "| client (C=1) | ops/s | vs redis-benchmark |", "|---|---|---|", *floor_rows, ""]

    # 1b. TLS: what managed Redis services require
    tls = TlsRedis()
    try:
        sh(tls.cli("set", "key:__rand_int__", "xxx"))
        tls_rows, tls_ratio = [], {}
        for c in [1, 64]:
            n = 20000 if c == 1 else (100000 if QUICK else 300000)
            clients = [lambda: tempest_bench("get", c, n, pin=CLIENT_CPU, url=tls.url)["ops_per_sec"],
                       lambda: redis_benchmark(c, n, port=tls.port, tls=("--tls", "--cacert", tls.ca))]
            runs = [[run() for run in clients] for _ in range(RUNS)]
            t, r = [Figure(f"TLS GET {name} C={c}", [x[i] for x in runs])
                    for i, name in enumerate(["tempest", "redis-benchmark --tls"])]
            tls_ratio[c] = t.median / r.median
            tls_rows.append(f"| {c} | {t} | {r} | {tls_ratio[c]:.2f}x |")
    finally:
        tls.close()
    md += ["### TLS", "",
           "The same GETs over TLS (`rediss://`, TLS 1.3, a redis-server serving TLS only, pinned "
           "as above) beside `redis-benchmark --tls -c 1 -P C`. Goal at C=64: >= 0.9x.", "",
           "| C (TLS) | tempest ops/s | redis-benchmark --tls ops/s | ratio |", "|---|---|---|---|",
           *tls_rows, ""]

    # 1c. CPU per request, machine-independent
    def tempest_get(c):
        return lambda n: [TEMPEST, "bench", "--url", URL, "--mode", "get", "--concurrency", str(c),
                          "--requests", str(n)]

    instr = {
        "tempest C=1": instructions_per_get(tempest_get(1)),
        "tempest C=64": instructions_per_get(tempest_get(64)),
        "hiredis, pipelined 64 deep": instructions_per_get(
            lambda n: [os.path.join(REL, "hiredis_pingpong"), PORT, "64", str(n), "3"]),
        "redis-benchmark -c 1 -P 64": instructions_per_get(
            lambda n: ["redis-benchmark", "-h", "127.0.0.1", "-p", PORT, "-t", "get", "-c", "1", "-P", "64",
                       "-n", str(n), "-d", "3", "-q"]),
        "hiredis, one at a time": instructions_per_get(
            lambda n: [os.path.join(REL, "hiredis_pingpong"), PORT, "1", str(n), "3"]),
    }
    md += ["### CPU per request", "",
           "Instructions per GET counted by callgrind (machine-independent, repeatable): the "
           "difference between runs of 20,000 and 10,000 GETs, so start-up and connecting cancel "
           "out. Goals: tempest <= 1,800 at C=64 and <= 3,500 at C=1.", "",
           "| client | instructions per GET |", "|---|---|",
           *[f"| {k} | {v:,.0f} |" for k, v in instr.items()], ""]

    sh(["redis-cli", "-p", PORT, "FLUSHALL"])

    # 2. cached hits
    rows, t_pts, p_pts, cached_per_get = [], [], [], {}
    for c in conc:
        n = 20000 if c == 1 else (100000 if QUICK else 300000)
        # Alternated with the Python original and with tempest's GET (the ratio's other side),
        # so all three see the same drift of the machine.
        clients = [lambda: tempest_bench("cached", c, n, pin=CLIENT_CPU)["ops_per_sec"],
                   lambda: python_cached(c, max(2000, n // 15), pin=CLIENT_CPU)["ops_per_sec"],
                   lambda: tempest_bench("get", c, n, pin=CLIENT_CPU)["ops_per_sec"]]
        runs = [[run() for run in clients] for _ in range(RUNS)]
        t, p, g = [Figure(f"{name} C={c}", [x[i] for x in runs])
                   for i, name in enumerate(["cached tempest", "cached python", "GET tempest"])]
        cached_per_get[c] = t.median / g.median
        rows.append(f"| {c} | {t} | {p} | {t.median / p.median:.1f}x | {g} | {cached_per_get[c]:.2f}x |")
        t_pts.append((c, t.median))
        p_pts.append((c, p.median))
    cached_tempest = dict(t_pts)
    cached_vs_python = {c: t / dict(p_pts)[c] for c, t in t_pts}
    plot("cached_throughput", "Cached hits (5-field struct)", "concurrency C", "calls/s",
         [("tempest cached()", t_pts), ("Python @cached (redis.asyncio, hiredis, uvloop)", p_pts)])
    md += ["## 2. Cached hits", "",
           "`tempest bench --mode cached` (warm hits of a cached function returning a 5-field "
           "described struct) beside the Python original's decorator (`bench/python_cached.py` on "
           "Debian's python3-redis, python3-hiredis and python3-uvloop, C asyncio tasks, the "
           "default connection pool), on the CPUs of section 1. Goals at C=64: >= 12x Python, and "
           ">= 0.7x `--mode get`.", "",
           "| C | tempest calls/s | Python calls/s | tempest / Python | tempest GET ops/s "
           "(alternated) | tempest cached / GET |",
           "|---|---|---|---|---|---|"]
    md += rows
    md += [""]
    md += ["![cached throughput](docs/bench/cached_throughput.png)", ""]
    hit, hit_sha = instructions_per_hit()
    fresh, fresh_sha = instructions_per_hit(["--freshness"])
    md += ["Instructions per warm hit at C=64 (callgrind, runs of 60,000 and 20,000 calls "
           "differenced; `--freshness`: `early_refresh` 0.8 and `fail_safe_max` 60 s, entries "
           "written with their freshness times). Valgrind emulates no SHA extensions, so the key's "
           "SHA-256 costs there what it costs on a CPU without SHA-NI; the third column leaves "
           "libcrypto out, and the fourth puts back what libcrypto runs on a CPU with SHA-NI "
           f"(this machine's and CI's): {SHA_NI_HIT} instructions a hit (see SHA_NI_HIT in "
           "bench/run_all.py). Goals: <= 5,000 per hit, freshness options on <= +10%.", "",
           "| cached() | instructions per hit (valgrind) | without libcrypto | with SHA-NI |",
           "|---|---|---|---|",
           f"| options off | {hit:,.0f} | {hit - hit_sha:,.0f} | {hit - hit_sha + SHA_NI_HIT:,.0f} |",
           f"| early refresh + fail-safe on | {fresh:,.0f} ({(fresh / hit - 1) * 100:+.1f}%) | "
           f"{fresh - fresh_sha:,.0f} | {fresh - fresh_sha + SHA_NI_HIT:,.0f} |", ""]

    sh(["redis-cli", "-p", PORT, "FLUSHALL"])

    pin_server(f"0-{os.cpu_count() - 1}")

    # 3. stampede
    t = repeat("stampede tempest", lambda: tempest_bench("stampede", 1000, 1000)["function_runs"])
    p = repeat("stampede python", lambda: python_cached(1000, 1000, "stampede")["function_runs"])
    md += ["## 3. Cold-key stampede", "",
           "1,000 concurrent calls on one cold key of a 50 ms function: how many times it ran.", "",
           "| implementation | function runs (median) |", "|---|---|",
           f"| tempest `cached()` (single-flight) | {t.median:.0f} |",
           f"| Python `@cached` | {p.median:.0f} |", ""]

    # 4. HTTP (bench/http_bench.py; make bench-http runs it alone)
    import http_bench
    http_md, http_goals = http_bench.section()
    md += http_md

    # 5. growth
    keys_list = [1000, 10000, 100000] if QUICK else [1000, 10000, 100000, 1000000]
    rows, k_pts, m_pts = [], [], []
    for k in keys_list:
        sh(["redis-cli", "-p", PORT, "FLUSHALL"])
        f = repeat(f"growth keys={k}", lambda: tempest_bench("cached", 64, 200000, ["--keys", str(k)])["ops_per_sec"])
        used = redis_used_memory_mib()
        rss = tempest_bench("cached", 64, 20000, ["--keys", str(k)])["peak_rss_mib"]
        rows.append(f"| {k:,} | {f} | {used:.1f} | {rss:.1f} |")
        k_pts.append((k, f.median))
        m_pts.append((k, used))
    plot("growth_keys", "Cached hits as distinct keys grow (C=64)", "distinct keys", "calls/s",
         [("calls/s", k_pts)], y2=("Redis used_memory MiB", m_pts))
    md += ["## 5. Cost growth", "",
           "Cached-hit throughput (C=64) and memory as the number of distinct keys grows "
           "(Redis `used_memory` after the run; the bench process's peak RSS):", "",
           "| distinct keys | calls/s | Redis used_memory MiB | client peak RSS MiB |", "|---|---|---|---|",
           *rows, "", "![growth with keys](docs/bench/growth_keys.png)", ""]
    rows, v_pts, r_pts2 = [], [], []
    sizes = [100, 1024, 10240, 102400, 1048576]
    for size in sizes:
        sh(["redis-cli", "-p", PORT, "FLUSHALL"])
        keys = max(16, min(1000, (64 << 20) // size))
        n = max(2000, min(200000, (1 << 31) // size // 2))
        f = repeat(f"growth value={size}", lambda: tempest_bench("cached", 64, n, ["--keys", str(keys), "--value-size", str(size)])["ops_per_sec"])
        rss = tempest_bench("cached", 64, max(2000, n // 10), ["--keys", str(keys), "--value-size", str(size)])["peak_rss_mib"]
        rows.append(f"| {size:,} | {keys} | {f} | {f.median * size / 2**20:,.1f} | {rss:.1f} |")
        v_pts.append((size, f.median))
        r_pts2.append((size, rss))
    plot("growth_values", "Cached hits as the value grows (C=64)", "value bytes", "calls/s",
         [("calls/s", v_pts)], y2=("client peak RSS MiB", r_pts2))
    md += ["Cached-hit throughput and client memory as the stored value grows from 100 B to 1 MiB "
           "(the JSON of the 5-field struct with one field padded):", "",
           "| value bytes | keys | calls/s | MiB/s decoded | client peak RSS MiB |", "|---|---|---|---|---|",
           *rows, "", "![growth with value size](docs/bench/growth_values.png)", ""]

    stampede_runs = (t.median, p.median)

    # 6. CPU cost of a hit
    out = sh([os.path.join(REL, "tempest_micro_bench"), "--benchmark_min_time=0.5"])
    micro = [l.split() for l in out.splitlines() if l.startswith(("Key", "Decode", "Encode"))]
    goals = {"KeyOneShortString": "<= 400 ns", "DecodeFiveFieldStruct": "<= 500 ns"}
    md += ["## 6. CPU cost of a hit", "",
           "Google Benchmark (`build-release/bin/tempest_micro_bench`): key derivation for one short "
           "string argument and JSON decoding of the 5-field struct.", "",
           "| benchmark | time | goal |", "|---|---|---|",
           *[f"| {m[0]} | {m[1]} {m[2]} | {goals.get(m[0], '')} |" for m in micro], ""]

    micro_ns = {}
    for m in micro:
        scale = {"ns": 1, "us": 1000, "ms": 1e6}.get(m[2], 1)
        micro_ns[m[0]] = float(m[1]) * scale
    goals = [
        ("GET at C=1 vs the bare system-call client", c1_vs_epoll, ">= 0.95x", c1_vs_epoll >= 0.95,
         f"{c1_vs_epoll:.2f}x (redis-benchmark: {get_ratio[1]:.2f}x)"),
        ("GET at C=64 vs redis-benchmark", get_ratio[64], ">= 1.0x", get_ratio[64] >= 1.0, f"{get_ratio[64]:.2f}x"),
        ("TLS GET at C=64 vs redis-benchmark --tls", tls_ratio[64], ">= 0.9x", tls_ratio[64] >= 0.9,
         f"{tls_ratio[64]:.2f}x"),
        ("instructions per GET at C=64", instr["tempest C=64"], "<= 1,800", instr["tempest C=64"] <= 1800,
         f"{instr['tempest C=64']:,.0f}"),
        ("instructions per GET at C=1", instr["tempest C=1"], "<= 3,500", instr["tempest C=1"] <= 3500,
         f"{instr['tempest C=1']:,.0f}"),
        ("cached hits / GET at C=64 (alternated)", cached_per_get[64], ">= 0.7x",
         cached_per_get[64] >= 0.7, f"{cached_per_get[64]:.2f}x"),
        ("instructions per warm cached hit at C=64, SHA-256 on SHA-NI", hit - hit_sha + SHA_NI_HIT,
         "<= 5,000", hit - hit_sha + SHA_NI_HIT <= 5000,
         f"{hit - hit_sha + SHA_NI_HIT:,.0f} (valgrind's plain-x86 SHA-256: {hit:,.0f})"),
        ("freshness options on, per hit", fresh / hit, "<= +10%", fresh / hit <= 1.10,
         f"{(fresh / hit - 1) * 100:+.1f}%"),
        ("cached hits vs Python at C=64", cached_vs_python[64], ">= 12x", cached_vs_python[64] >= 12,
         f"{cached_vs_python[64]:.1f}x"),
        ("stampede: function runs", stampede_runs[0], "1", stampede_runs[0] == 1, f"{stampede_runs[0]:.0f}"),
        *http_goals,
        ("key for one short string", micro_ns.get("KeyOneShortString", 0), "<= 400 ns",
         micro_ns.get("KeyOneShortString", 1e9) <= 400, f"{micro_ns.get('KeyOneShortString', 0):.0f} ns"),
        ("decoding the 5-field struct", micro_ns.get("DecodeFiveFieldStruct", 0), "<= 500 ns",
         micro_ns.get("DecodeFiveFieldStruct", 1e9) <= 500, f"{micro_ns.get('DecodeFiveFieldStruct', 0):.0f} ns"),
    ]
    # 7. Redis Cluster (bench/cluster_bench.py; make bench-cluster runs it alone)
    if os.environ.get("CLUSTER_URL"):
        import cluster_bench
        cluster_md, cluster_goals = cluster_bench.section()
        md += cluster_md
        goals += cluster_goals
    # 8. The near cache (bench/near_bench.py; make bench-near runs it alone)
    import near_bench
    near_md, near_goals = near_bench.section()
    md += near_md
    goals += near_goals
    missed = [g for g in goals if not g[3]]
    goal_md = ["## Goals", "", "| goal | target | measured | met |", "|---|---|---|---|",
               *[f"| {g[0]} | {g[2]} | {g[4]} | {'yes' if g[3] else '**no**'} |" for g in goals], ""]
    if missed:
        goal_md += ["Missed in this run: " + ", ".join(g[0] for g in missed) +
                    ". Runs on this 2-core VM vary by about 10% between runs (client and server share "
                    "the two cores). For the GET goals, the bare Asio column of section 1 shows how "
                    "close any Asio client gets to redis-benchmark here, and its C=1 table how close "
                    "a client of bare system calls gets; the profile below shows where tempest's "
                    "time goes.", ""]
    sh(["redis-cli", "-p", PORT, "FLUSHALL"])
    # Where the time goes: callgrind profiles of the client at C=64 (instructions, repeatable).
    md += ["## Where the time goes", "",
           "The client and redis-server share this machine's two cores, so a figure moves by about 10% "
           "between runs; what the client spends per call is below: callgrind, instructions by "
           "function (exclusive), top 12. Valgrind has no SHA extensions, so the SHA-256 block "
           "function weighs more here than on the hardware.", ""]
    for mode in ("get", "cached"):
        cg = f"/tmp/tempest-bench-{mode}.cg"
        prof = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}", TEMPEST, "bench",
                               "--url", URL, "--mode", mode, "--concurrency", "64", "--requests", "20000"],
                              capture_output=True, text=True)
        if prof.returncode != 0:
            continue
        ann = sh(["callgrind_annotate", "--inclusive=no", cg]).splitlines()
        total = next((l for l in ann if "PROGRAM TOTALS" in l), "").split()[0]
        top = [l for l in ann if re.match(r"^\s*[\d,]+ \(\s*[\d.]+%\)", l)][1:13]
        md += [f"`valgrind --tool=callgrind tempest bench --mode {mode} --concurrency 64 --requests 20000` "
               f"({total} instructions in all, start-up and warm-up included):", "", "```",
               *[l[:150] for l in top], "```", ""]

    versions = {
        "redis-server": sh(["redis-server", "--version"]).split()[2],
        "g++": sh(["g++", "--version"]).splitlines()[0],
        "python3": sh([PY, "--version"]).strip(),
        "wrk": sh(["dpkg-query", "-W", "-f=${Version}", "wrk"]),
        "python3-redis": sh(["dpkg-query", "-W", "-f=${Version}", "python3-redis"]),
        "python3-fastapi": sh(["dpkg-query", "-W", "-f=${Version}", "python3-fastapi"]),
    }
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    head = ["# Benchmarks", "",
            f"Generated by `make bench` on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores ({cpu}), "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
            f"{platform.platform()}. Everything ran on this one machine, client and servers together, "
            f"in one run. Each figure is the median of {RUNS} runs, shown as median ±half the spread "
            "(max - min); (!) marks a spread over 20%, too wide to trust.", "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
            "Regenerate: `make bench` (options: `RUNS=5`, `QUICK=1`).", ""]
    tail = ["## Spread", ""] + ([f"- {n}" for n in wide_notes] or ["Every figure's spread was within 20%."]) + [""]
    # The reliability section comes from a long `make chaos` run, not from this one: kept as it is.
    path = os.path.join(ROOT, "BENCHMARKS.md")
    old = open(path).read() if os.path.exists(path) else ""
    kept = []
    if CHAOS_BEGIN in old and CHAOS_END in old:
        kept = [old[old.index(CHAOS_BEGIN):old.index(CHAOS_END) + len(CHAOS_END)], ""]
    with open(path, "w") as f:
        f.write("\n".join(head + goal_md + md + kept + tail))
    print("wrote BENCHMARKS.md and docs/bench/*.png")


if __name__ == "__main__":
    sys.exit(main())

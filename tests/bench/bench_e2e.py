#!/usr/bin/python3
"""End-to-end speed of nws against a one-hop Node.js `ws` relay (tests/README.md).

Two test hosts A and B (tests/lib/hosts.py). The C load generator nws-load
(tests/bench/load.c, built by make bench into $NWS_BENCH_BIN) sends 100-byte payloads,
each carrying its sequence number and CLOCK_MONOTONIC send time; the receiver reports
msgs/s and one-way latency.

  ceiling  C relay (nws-load relay) on A's loopback, sender and receiver on A: what the
           generator itself can do
  node     relay.js on A; sender on A (loopback), receiver on B (over the veth)
  nws      nws-proxy on A and on B; sender on A's proxy, receiver on B's proxy, one channel

Each is run flat out (THROUGHPUT_N messages, bounded by RUN_SECS: "msgs/s", and the p50
latency under that load), at 1k msgs/s (LATENCY_N messages: "p50 us", "p99 us"), and at
rising rates until one is not delivered whole at 95% of its rate ("sustained"). A run that
lost messages or was closed is listed with where it lost them. Per-process CPU (from /proc;
the generators report their own) and wake-ups during the flat-out run show which stage is
the bottleneck. NWS_BENCH_ONLY=ceiling,node,nws picks scenarios, NWS_BENCH_REPEAT the runs
per figure, NWS_BENCH_ROUNDS the rounds of all scenarios in turn (their runs pooled),
NWS_BENCH_VERBOSE=1 prints every run, NWS_BENCH_PERF=FILE profiles.

Each is also run flat out with 1 MiB broadcasts (BIG_N of them: "1MiB MB/s"), and
NWS_BENCH_BASE=DIR measures another build's nws-proxy as scenario "base" in the same run.

Targets (issue 12, tests/bench/README): nws at least 3x the node relay, a one-way p50 of at most 250 us
and p99 of at most 1 ms at 1k msgs/s, and 1 MiB broadcasts at 90% of the node relay. Exit status 1 when a scenario could not run, not on a missed target: these are
figures, not tests."""
import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts as hostlib  # noqa: E402

NWS_BIN = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")
BENCH_BIN = os.environ.get("NWS_BENCH_BIN") or os.path.join(ROOT, "build", "bench")
LOAD = os.path.join(BENCH_BIN, "nws-load")

THROUGHPUT_N = int(os.environ.get("NWS_BENCH_N", 200000))
LATENCY_N = 3000            # at LATENCY_RATE: 3 s
LATENCY_RATE = 1000
RUN_SECS = 30               # bound of one run (each process also bounds itself)
DISCOVERY_SECS = 30         # bound for the receiver to see the sender's connect
P50_TARGET_US = 250
PORT = 9009
LOWAT = int(os.environ.get("NWS_BENCH_LOWAT", 4096))
# 1 MiB broadcasts, flat out (MB/s): the payload leaves room for nws's JSON around it
# within the 1 MiB that nws-proxy (--max-message) and the relay (maxPayload) take.
BIG_SIZE = (1 << 20) - 64
BIG_N = int(os.environ.get("NWS_BENCH_BIG_N", 200))
SWEEP_RATES = (20000, 40000, 60000, 80000, 100000, 125000, 150000, 200000, 250000, 300000)
SWEEP_SECS = 2
REPEAT = int(os.environ.get("NWS_BENCH_REPEAT", 3))
# Rounds of every scenario in turn, REPEAT runs each: a noisy minute of this shared VM
# then falls on each build and the node relay alike, not on one of them.
ROUNDS = int(os.environ.get("NWS_BENCH_ROUNDS", 1))
ROUND = 0
VERBOSE = bool(os.environ.get("NWS_BENCH_VERBOSE"))
PERF = os.environ.get("NWS_BENCH_PERF")  # a perf.data path: profile the flat-out runs
# Another build's bin directory, measured in the same run as scenario "base" (before/after).
BASE = os.environ.get("NWS_BENCH_BASE")


class Proc:
    """A process in a host whose stdout lines we wait for, each wait with a deadline."""

    def __init__(self, host, argv, name, stdin=False, env=None):
        self.name = name
        self.err_path = os.path.join(host.dir, f"{name}.err")
        self.err = open(self.err_path, "wb")
        self.p = host.popen(argv, stdout=subprocess.PIPE, stderr=self.err,
                            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, env=env)
        self.buf = b""
        self.lines = []
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)

    def _read(self, timeout):
        if self.sel.select(max(timeout, 0)):
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                return False
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            self.lines += [x.decode(errors="replace") for x in done]
        return True

    def expect(self, prefix, timeout):
        """Waits for a stdout line starting with prefix; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.lines):
                if line.startswith(prefix):
                    del self.lines[:i + 1]
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no '{prefix}' within {timeout}s"
                                   f"{self.stderr()}")
            if not self._read(min(left, 0.5)):
                self.p.wait(5)
                raise RuntimeError(f"{self.name} exited ({self.p.returncode}) before "
                                   f"'{prefix}'{self.stderr()}")

    def result(self, timeout):
        """The JSON figures the process prints last, once it has exited."""
        line = self.expect("{", timeout)
        self.p.wait(timeout)
        return json.loads(line)

    def go(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()

    def stderr(self):
        self.err.flush()
        with open(self.err_path, errors="replace") as f:
            text = f.read().strip()
        return f": {text[-600:]}" if text else ""

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.sel.close()
        self.err.close()


# Per-process CPU, from /proc (utime + stime of each process of a tree).
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return comm, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK  # name, ppid, cpu s


def descendants(roots):
    """{pid: label} for the roots ({pid: label}) and every process below them."""
    found = dict(roots)
    for _ in range(8):
        more = {}
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) not in found:
                st = _stat(d)
                if st and st[1] in found:
                    more[int(d)] = found[st[1]]
        if not more:
            break
        found.update(more)
    return found


def _wakeups(pid):
    """Voluntary context switches of pid: how often it slept and was woken."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_sample(pids):
    """{pid: (label, cpu seconds, wake-ups)}"""
    out = {}
    for pid, label in pids.items():
        st = _stat(pid)
        if st:
            out[pid] = (f"{label}:{st[0]}", st[2], _wakeups(pid))
    return out


def cpu_report(before, after, wall):
    """[(name, cpu seconds, % of one core, wake-ups)] over wall seconds, busiest first."""
    rows = []
    for pid, (name, t1, w1) in after.items():
        _, t0, w0 = before.get(pid, (name, 0.0, 0))
        rows.append((name, t1 - t0, 100.0 * (t1 - t0) / wall, w1 - w0))
    return sorted(rows, key=lambda r: -r[1])


def machine_busy():
    """(busy, total) ticks of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def perf_start(pids):
    """With NWS_BENCH_PERF set: perf record of pids for the flat-out run."""
    if not PERF or not shutil.which("perf"):
        return None
    return subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-g", "-o", PERF,
                             "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(p):
    if not p:
        return
    p.send_signal(signal.SIGINT)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
    rep = subprocess.run(["perf", "report", "-i", PERF, "--no-children", "--stdio",
                          "--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "1"],
                         capture_output=True, text=True, timeout=120)
    print("    perf (self time, >= 1%):")
    for line in rep.stdout.splitlines():
        if line.strip() and not line.startswith("#"):
            print("    " + line.rstrip())


@contextlib.contextmanager
def test_hosts(n):
    """n hosts of tests/lib/hosts.py, torn down however the block ends (hosts.py has no
    context manager of its own; its Network also cleans up at exit and on SIGTERM)."""
    net = hostlib.Network()
    try:
        yield net.add(n)
    finally:
        net.close()


def check_clock(hosts):
    """The latencies compare CLOCK_MONOTONIC read in two namespaces: check that a reading
    taken inside each host falls between two taken outside it."""
    for h in hosts:
        t0 = time.monotonic_ns()
        v = int(h.run([LOAD, "clock"], timeout=10).stdout)
        t1 = time.monotonic_ns()
        if not t0 <= v <= t1:
            raise RuntimeError(f"CLOCK_MONOTONIC differs inside {h.name} "
                               f"({v} not within {t0}..{t1}): latencies would be wrong")


def run_pair(rx_host, rx_url, tx_host, tx_url, n, rate, raw, peer, watch, size=100):
    """One sender and one receiver; returns (recv figures, send figures, cpu rows)."""
    secs = RUN_SECS if not rate else n / rate + 10
    if peer:
        # A fresh channel per run: no peer of an earlier run can pass for the sender.
        suffix = "-" + secrets.token_hex(4)
        rx_url, tx_url = rx_url + suffix, tx_url + suffix
    # But in latency runs the receiver wakes up per 4 KiB, not per message: a relay that
    # writes each message in its own segment would otherwise make it spend several us per
    # message of the two cores it shares with the relay.
    rx = Proc(rx_host, [LOAD, "recv", rx_url, "-n", str(n), "-t", str(secs + DISCOVERY_SECS),
                        "--idle", "5", "--lowat",
                        "1" if rate == LATENCY_RATE else str(LOWAT)], "recv")
    tx = None
    try:
        rx.expect("ready", 10)
        argv = [LOAD, "send", tx_url, "-n", str(n), "-t", str(secs + DISCOVERY_SECS),
                "--wait", "-s", str(size)]
        if rate:
            argv += ["-r", str(rate)]
        if raw:
            argv.append("--raw")
        tx = Proc(tx_host, argv, "send", stdin=True)
        tx.expect("ready", 10)
        if peer:
            rx.expect("peer", DISCOVERY_SECS)
        pids = descendants(watch)
        prof = perf_start([*pids, rx.p.pid, tx.p.pid]) if not rate else None
        c0, m0, t0 = cpu_sample(pids), machine_busy(), time.monotonic()
        tx.go()
        r = rx.result(secs + 15)
        c1, m1, t1 = cpu_sample(pids), machine_busy(), time.monotonic()
        perf_stop(prof)
        busy_s = (m1[0] - m0[0]) / TICK
        s = tx.result(45)
        if VERBOSE:
            print(f"    recv {r}\n    send {s}", flush=True)
        # The generators report their own CPU as they exit (the setup in it is tiny).
        c1[rx.p.pid] = ("recv:nws-load", r["cpu_s"], r["wakeups"])
        c1[tx.p.pid] = ("send:nws-load", s["cpu_s"], s["wakeups"])
        # Shares of a core over the traffic itself, not the receiver's idle wait at the end.
        r["window_s"] = min(t1 - t0, r["elapsed_s"]) if r["elapsed_s"] > 0 else t1 - t0
        r["machine_busy"] = min(100.0, 100.0 * busy_s / (r["window_s"] * os.cpu_count()))
        return r, s, cpu_report(c0, c1, r["window_s"])
    finally:
        rx.stop()
        if tx:
            tx.stop()


def complete(fig):
    return fig["received"] == fig["expected"] and not fig["closed"]


def median_run(key, runs):
    """The median run by key among those that delivered every message, if any did: the
    rate of a run cut short by a close or a loss is not a throughput."""
    whole = [r for r in runs if complete(r[0])] or runs
    return sorted(whole, key=lambda x: x[0][key])[len(whole) // 2]


def measure(label, rx_host, rx_url, tx_host, tx_url, raw, peer=False, watch=None,
            n=THROUGHPUT_N, rates=None):
    """REPEAT runs of each kind (a 2-core VM is noisy): the median by rate, and by p50."""
    watch = watch or {}
    runs = {
        "thr": [run_pair(rx_host, rx_url, tx_host, tx_url, n, 0, raw, peer, watch)
                for _ in range(REPEAT)],
        "lat": [run_pair(rx_host, rx_url, tx_host, tx_url, LATENCY_N, LATENCY_RATE, raw,
                         peer, watch) for _ in range(REPEAT)],
        "big": [run_pair(rx_host, rx_url, tx_host, tx_url, BIG_N, 0, raw, peer, watch,
                         size=BIG_SIZE) for _ in range(REPEAT)],
    }
    # The sweep takes long and moves little: the first round's stands for all.
    sustained = sweep(rx_host, rx_url, tx_host, tx_url, raw, peer,
                      SWEEP_RATES if rates is None else rates) if not ROUND else 0
    return summarize(label, runs, sustained)


def summarize(label, runs, sustained):
    """The figures of a scenario from its runs (of every round so far)."""
    thr, sent, cpu = median_run("rate", runs["thr"])
    lat, _, _ = median_run("p50_us", runs["lat"])
    big, _, bigcpu = median_run("rate", runs["big"])
    return {"label": label, "thr": thr, "sent": sent, "lat": lat, "cpu": cpu, "big": big,
            "big_cpu": bigcpu,
            "lat_runs": [(r[0]["p50_us"], r[0]["p99_us"]) for r in runs["lat"]],
            "incomplete": [r[0] for r in runs["thr"] + runs["lat"] + runs["big"]
                           if not complete(r[0])],
            "runs": sum(len(v) for v in runs.values()),
            "sustained": sustained, "raw": runs}


def merge(old, new):
    """One scenario's figures over two rounds: the medians of all their runs."""
    runs = {k: old["raw"][k] + new["raw"][k] for k in old["raw"]}
    r = summarize(old["label"], runs, old["sustained"])
    if "local" in old:
        r["local_runs"] = old["local_runs"] + new["local_runs"]
        r["local"], _, _ = median_run("p50_us", r["local_runs"])
    return r


def sweep(rx_host, rx_url, tx_host, tx_url, raw, peer, rates):
    """The highest offered rate (of SWEEP_RATES, SWEEP_SECS each) delivered whole and on
    time: every message, at 95% of the rate or better. Flat out measures how fast a burst
    drains; this says what load a channel carries without loss or a growing queue."""
    best = 0
    for rate in rates:
        r, _, _ = run_pair(rx_host, rx_url, tx_host, tx_url, int(rate * SWEEP_SECS), rate,
                           raw, peer, {})
        if not complete(r) or r["rate"] < 0.95 * rate:
            break
        best = rate
    return best


def wait_listening(host, port, timeout):
    def up():
        p = host.run(["ss", "-Hltn", f"sport = :{port}"], timeout=10)
        return p.returncode == 0 and p.stdout.strip()
    hostlib.wait_for(up, timeout, f"a listener on port {port} in {host.name}", 0.05)


def scenario_ceiling(a):
    relay = Proc(a, [LOAD, "relay", "-a", "127.0.0.1", "-p", "0", "-t", "300"], "crelay")
    try:
        port = relay.expect("listening", 10).split()[1]
        url = f"ws://127.0.0.1:{port}/bench"
        # Ten times the messages: at this speed the usual count is over too soon to time.
        return measure("generator ceiling: C relay, loopback on A", a, url, a, url, True,
                       watch={relay.p.pid: "A"}, n=10 * THROUGHPUT_N, rates=())
    finally:
        relay.stop()


def node_ready():
    """Why the Node relay cannot run (a string), or None; installs npm ws when missing."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node and npm are not installed (make deps)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE,
                           capture_output=True, text=True, timeout=300)
        if p.returncode:
            return f"npm ci failed: {p.stderr.strip()[-300:]}"
    return None


def scenario_node(a, b):
    relay = Proc(a, ["node", os.path.join(HERE, "relay.js"), "0", "0.0.0.0"], "noderelay")
    try:
        port = relay.expect("listening", 20).split()[1]
        return measure("node ws relay: A loopback -> relay on A -> B over veth",
                       b, f"ws://{a.addr}:{port}/bench", a, f"ws://127.0.0.1:{port}/bench",
                       True, watch={relay.p.pid: "A"})
    finally:
        relay.stop()


def scenario_nws(a, b, bindir=NWS_BIN, label="nws"):
    proxy = os.path.join(bindir, "nws-proxy")
    if not os.access(proxy, os.X_OK):
        raise RuntimeError(f"nws-proxy is not built in {bindir} (run make)")
    # The proxy runs its pipeline from its own directory.
    procs = [Proc(h, [proxy, "-p", str(PORT)], f"proxy-{h.name}") for h in (a, b)]
    try:
        for h in (a, b):
            wait_listening(h, PORT, 20)
        chan = "bench-" + secrets.token_hex(8)
        url = f"ws://127.0.0.1:{PORT}/{chan}"
        r = measure(f"{label}: A proxy -> link -> link -> B proxy", b, url, a, url, False,
                    peer=True, watch={procs[0].p.pid: "A", procs[1].p.pid: "B"})
        # Both clients on B's proxy: the proxy's own share of the one-way latency.
        r["local_runs"] = [run_pair(b, url, b, url, LATENCY_N, LATENCY_RATE, False, True, {})
                           for _ in range(REPEAT)]
        r["local"], _, _ = median_run("p50_us", r["local_runs"])
        return r
    finally:
        for p in procs:
            if VERBOSE:
                print(f"    {p.name} stderr{p.stderr() or ': (empty)'}")
            p.stop()


def fmt_row(r):
    t, lat = r["thr"], r["lat"]
    lost = t["expected"] - t["received"]
    return (f"{r['label']:<55} {t['rate']:>10.0f} {lat['p50_us']:>8.0f} {lat['p99_us']:>8.0f}"
            f" {t['p50_us'] / 1e3:>11.1f} {lost:>6} {t['reordered']:>5}"
            f" {r['sustained'] or '-':>9} {r['big']['rate'] * BIG_SIZE / 1e6:>9.0f}")


def main():
    why = hostlib.missing()
    if why:
        print(f"skipped: {why}")
        return 0
    if not os.access(LOAD, os.X_OK):
        print(f"nws-load is not built in {BENCH_BIN} (run make bench)")
        return 1
    results, failed = [], []
    try:
        run_all(results, failed)
    except (RuntimeError, TimeoutError, OSError) as e:
        print(f"could not set up the test hosts: {e}")
        return 1
    report(results, failed)
    return 1 if failed else 0


def run_all(results, failed):
    with test_hosts(2) as (a, b):
        check_clock((a, b))
        print(f"hosts {a.name} {a.addr}, {b.name} {b.addr}; CLOCK_MONOTONIC shared: yes",
              flush=True)
        scenarios = [("ceiling", lambda: scenario_ceiling(a))]
        why = node_ready()
        if why:
            failed.append(("node", why))
        else:
            scenarios.append(("node", lambda: scenario_node(a, b)))
        scenarios.append(("nws", lambda: scenario_nws(a, b)))
        if BASE:
            scenarios.append(("base", lambda: scenario_nws(a, b, BASE, "base")))
        only = os.environ.get("NWS_BENCH_ONLY")
        if only:
            scenarios = [s for s in scenarios if s[0] in only.split(",")]
        global ROUND
        got = {}
        for ROUND in range(ROUNDS):
            for name, fn in scenarios:
                if any(f[0] == name for f in failed):
                    continue
                try:
                    r = fn()
                    got[name] = merge(got[name], r) if name in got else r
                    print(f"  {name}: done" + (f" (round {ROUND + 1})" if ROUNDS > 1 else ""),
                          flush=True)
                except (RuntimeError, TimeoutError, subprocess.TimeoutExpired, OSError,
                        ValueError) as e:
                    failed.append((name, str(e)))
                    print(f"  {name}: FAILED: {e}", flush=True)
        results.extend((name, got[name]) for name, _ in scenarios if name in got)


def report(results, failed):
    print()
    print(f"100-byte broadcasts; flat out: {THROUGHPUT_N} msgs (bounded by {RUN_SECS} s); "
          f"latency: {LATENCY_N} msgs at {LATENCY_RATE}/s, one way; median of "
          f"{REPEAT * ROUNDS} runs" + (f" ({ROUNDS} rounds)" if ROUNDS > 1 else ""))
    print(f"{'scenario':<55} {'msgs/s':>10} {'p50 us':>8} {'p99 us':>8} "
          f"{'p50 load ms':>9} {'lost':>6} {'reord':>5} {'sustained':>9} {'1MiB MB/s':>9}")
    got = dict(results)
    for name, r in results:
        print(fmt_row(r))
    for name, r in results:
        print(f"  {name} at {LATENCY_RATE}/s, each run (p50/p99 us): " +
              ", ".join(f"{a:.0f}/{b:.0f}" for a, b in r["lat_runs"]))
    for name, r in results:
        if r["incomplete"]:
            print(f"  {name}: {len(r['incomplete'])} of {r['runs']} runs did not deliver "
                  f"every message:")
        for t in r["incomplete"]:
            what = "flat out" if t["expected"] != LATENCY_N else f"at {LATENCY_RATE}/s"
            print(f"    {what}: {t['expected'] - t['received']} of {t['expected']} missing, "
                  f"{t['gaps']} gap(s), the first of {t['first_gap_len']} at message "
                  f"{t['first_gap']}; {t['reordered']} out of order; "
                  f"{t['connects']} connect event(s)"
                  + (f"; closed {t['close_code']} {t['close_reason']} after "
                     f"{t['received']}" if t["closed"] else ""))
    for name, r in results:
        t = r["thr"]
        print(f"\nCPU during the flat-out run of {name} ({t['window_s']:.2f} s; all cores "
              f"{t['machine_busy']:.0f}% busy):")
        print(f"  {'process':<22} {'% core':>7} {'us/msg':>7} {'msgs/wake-up':>12}")
        count = max(t["received"], 1)
        for proc, cpu, pct, wakes in r["cpu"]:
            if pct >= 0.5:
                print(f"  {proc:<22} {pct:7.1f} {1e6 * cpu / count:7.2f} "
                      f"{count / max(wakes, 1):12.1f}")
        total = sum(row[1] for row in r["cpu"])
        print(f"  {'total':<22} {100 * total / t['window_s']:7.1f} {1e6 * total / count:7.2f}")
    print(f"\nCPU per 1 MiB broadcast (ms, the median 1 MiB run; the load generators "
          f"are the same in every scenario):")
    for name, r in results:
        rows = r["big_cpu"]
        ours = sum(row[1] for row in rows if "nws-load" not in row[0])
        print(f"  {name:<8} {1e3 * sum(row[1] for row in rows) / BIG_N:6.2f} all, "
              f"{1e3 * ours / BIG_N:6.2f} without the load generators")
    if "nws" in got:
        loc = got["nws"]["local"]
        print(f"\nnws with both clients on one proxy (B), at {LATENCY_RATE}/s: p50 "
              f"{loc['p50_us']:.0f} us, p99 {loc['p99_us']:.0f} us; so the pipelines and the "
              f"link add {got['nws']['lat']['p50_us'] - loc['p50_us']:.0f} us of the p50")
    if "node" in got and "nws" in got:
        sus = got["nws"]["sustained"] / max(got["node"]["sustained"], 1)
        print(f"\nnws / node sustained rate (whole, on time, {SWEEP_SECS} s steps): {sus:.2f}")
        ratio = got["nws"]["thr"]["rate"] / max(got["node"]["thr"]["rate"], 1)
        p50 = got["nws"]["lat"]["p50_us"]
        whole = complete(got["nws"]["thr"])
        print(f"nws / node flat-out throughput: {ratio:.2f} (target >= 3: "
              f"{'met' if ratio >= 3 and whole else 'MISSED'}"
              f"{'' if whole else ', no flat-out run delivered every message'})")
        print(f"nws one-way p50 at {LATENCY_RATE}/s: {p50:.0f} us (target <= {P50_TARGET_US}: "
              f"{'met' if p50 <= P50_TARGET_US else 'MISSED'})")
        big = got["nws"]["big"]["rate"] / max(got["node"]["big"]["rate"], 1e-9)
        print(f"nws / node 1 MiB broadcasts: {big:.2f} (target >= 0.9: "
              f"{'met' if big >= 0.9 else 'MISSED'})")
    for name, why in failed:
        print(f"\n{name}: not measured: {why}")


if __name__ == "__main__":
    sys.exit(main())

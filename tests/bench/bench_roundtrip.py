#!/usr/bin/python3
"""Round trip between two clients of nws-proxy, the original's own benchmark loop: one
python3-websockets process sends a 100-byte broadcast on one client and waits for it on
the other, then sends the next (one message in flight). Both clients live in one process
and are timed by one clock, even when they are on two hosts: the second client's socket
is made after entering the other host's network namespace (setns), which a socket keeps.

  one proxy         both clients on one nws-proxy, pipeline running, no remote peer
  one proxy --local both clients on one nws-proxy --local (no pipeline)
  two proxies       one client on each of two nws-proxy processes on one host (-p 9010)
  two hosts         one client on each of two hosts' nws-proxy

Prints p50 and p99 of N round trips (after WARMUP), each run and the medians of REPEAT
runs, the scenarios interleaved run by run so a busy moment of this shared machine falls
on all of them. NWS_BENCH_BASE=DIR (another build's bin directory) measures that build
too, in the same runs, for before/after figures. Needs root (network namespaces)."""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts as hostlib  # noqa: E402

N = int(os.environ.get("NWS_BENCH_N", 2000))
WARMUP = 200
SIZE = 100
REPEAT = int(os.environ.get("NWS_BENCH_REPEAT", 5))
RUN_SECS = 60          # bound of one run
DISCOVERY_SECS = 30    # bound for the two clients to see each other

CLIENT = r'''
import asyncio, ctypes, json, os, socket, sys, time, websockets
url1, url2, ns2, n, warm, size, bound, piped = sys.argv[1:9]
n, warm, size, bound = int(n), int(warm), int(size), float(bound)
seen = set()

def sock_in(ns, port):
    if ns:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/run/netns/" + ns, os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

async def ident(ws):
    await ws.send(json.dumps({"action": "status"}))
    peers = set()
    while True:
        m = json.loads(await ws.recv())
        seen.add(m["action"])
        if m["action"] == "connect":
            peers.add(m["target"])
        elif m["action"] == "status":
            return m["source"], peers

async def main():
    s1 = sock_in(None, int(url1.split(":")[2].split("/")[0]))
    s2 = sock_in(ns2, int(url2.split(":")[2].split("/")[0]))
    a = await websockets.connect(url1, sock=s1, max_size=None, compression=None)
    b = await websockets.connect(url2, sock=s2, max_size=None, compression=None)
    ida, apeers = await ident(a)
    idb, bpeers = await ident(b)
    end = time.monotonic() + bound
    # Each sees the other first: a proxy sends a broadcast to the peers it knows of
    # when it is sent, and a remote peer is known once its connect has arrived.
    for ws, peers, other in ((b, bpeers, ida), (a, apeers, idb)):
        while other not in peers:
            m = json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic()))
            seen.add(m["action"])
            if m["action"] == "connect":
                peers.add(m["target"])
    # With a pipeline, its stages have the channel once it is advertised: until then
    # (its key is derived, ~0.1 s or more) nothing would reach them.
    while piped == "1" and "advertised" not in seen:
        m = json.loads(await asyncio.wait_for(a.recv(), end - time.monotonic()))
        seen.add(m["action"])
    payload = json.dumps({"action": "broadcast", "data": "x" * size})
    rt = []
    for i in range(warm + n):
        t0 = time.perf_counter_ns()
        await a.send(payload)
        while True:
            m = json.loads(await asyncio.wait_for(b.recv(), 5))
            if m["action"] == "broadcast":
                break
        if i >= warm:
            rt.append((time.perf_counter_ns() - t0) / 1000)
    print(json.dumps({"rt": rt}), flush=True)
    await a.close()
    await b.close()
asyncio.run(main())
'''


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))]


def start_proxy(host, binary, port, extra=()):
    err = open(os.path.join(host.dir, f"proxy{port}.err"), "ab")
    p = host.popen([binary, "-p", str(port), *extra], stdin=subprocess.DEVNULL,
                   stdout=err, stderr=err)
    # ip netns exec execs the proxy: p.pid is the proxy's, its stages are its children.
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"
    hostlib.wait_for(lambda: host.run([sys.executable, "-c", probe]).returncode == 0, 10,
                     f"nws-proxy on {host.name}:{port}", interval=0.1)
    return p


def stage_wakeups(proxy_pid):
    """Context switches so far of the stages of a proxy's pipeline (its children)."""
    total = 0
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != proxy_pid:
                    continue
            with open(f"/proc/{pid}/status") as f:
                total += sum(int(line.split()[1]) for line in f
                             if "ctxt_switches" in line)
        except (OSError, ValueError, IndexError):
            continue
    return total


def run_once(h1, port1, h2, port2, channel, piped):
    """Round trips (us) of one run, or an error string. The first client asks for link
    events, to see the channel advertised when the proxy runs a pipeline."""
    args = [f"ws://127.0.0.1:{port1}/{channel}?events=link",
            f"ws://127.0.0.1:{port2}/{channel}", "" if h2 is h1 else h2.ns, str(N),
            str(WARMUP), str(SIZE), str(DISCOVERY_SECS), "1" if piped else "0"]
    try:
        r = h1.run([sys.executable, "-c", CLIENT, *args], timeout=RUN_SECS, text=True)
    except subprocess.TimeoutExpired:
        return "timed out"
    if r.returncode != 0:
        return (r.stderr.strip().splitlines() or ["exited " + str(r.returncode)])[-1]
    return json.loads(r.stdout.strip().splitlines()[-1])["rt"]


def main():
    why = hostlib.missing()
    if why:
        print(f"bench_roundtrip: skipped: {why}")
        return 0
    builds = [("nws", os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin"))]
    if os.environ.get("NWS_BENCH_BASE"):
        builds.append(("base", os.environ["NWS_BENCH_BASE"]))
    net = hostlib.Network()
    status = 0
    try:
        a, b = net.add(2)
        scen, watch = [], {}
        for k, (label, bindir) in enumerate(builds):
            proxy = os.path.join(bindir, "nws-proxy")
            p0 = 9009 + 10 * k
            one = start_proxy(a, proxy, p0)
            start_proxy(a, proxy, p0 + 1, ["--local"])
            start_proxy(a, proxy, p0 + 2)
            start_proxy(b, proxy, p0)
            watch[f"{label}: one proxy"] = one.pid
            scen += [(f"{label}: one proxy", a, p0, a, p0),
                     (f"{label}: one proxy --local", a, p0 + 1, a, p0 + 1),
                     (f"{label}: two proxies, one host", a, p0, a, p0 + 2),
                     (f"{label}: two hosts", a, p0, b, p0)]
        print(f"round trip: send a {SIZE}-byte broadcast on one client, wait for it on "
              f"another; {N} after {WARMUP} warm-up, python3-websockets, {REPEAT} runs "
              f"(load average at start: {os.getloadavg()[0]:.2f})")
        figs = {s[0]: [] for s in scen}
        for run in range(REPEAT):
            for label, h1, p1, h2, p2 in scen:
                # A fresh channel per run: no state left over from the run before.
                w0 = stage_wakeups(watch[label]) if label in watch else 0
                rt = run_once(h1, p1, h2, p2, f"bench-rt-{run}-{abs(hash(label)) % 10**6}",
                              "--local" not in label)
                woke = ""
                if label in watch and not isinstance(rt, str):
                    per = (stage_wakeups(watch[label]) - w0) / (N + WARMUP)
                    woke = f", pipeline stages woke {per:.2f} times per message"
                if isinstance(rt, str):
                    print(f"  {label}: run {run + 1}: failed: {rt}", flush=True)
                    status = 1
                    continue
                figs[label].append((pct(rt, 0.5), pct(rt, 0.99)))
                print(f"  {label}: run {run + 1}: p50 {pct(rt, 0.5):.0f} us, "
                      f"p99 {pct(rt, 0.99):.0f} us{woke}", flush=True)
        print(f"medians of {REPEAT} runs (load average now: {os.getloadavg()[0]:.2f}):")
        for label, f in figs.items():
            if f:
                print(f"  {label}: p50 {statistics.median(x[0] for x in f):.0f} us, "
                      f"p99 {statistics.median(x[1] for x in f):.0f} us")
        return status
    finally:
        net.close()


if __name__ == "__main__":
    sys.exit(main())

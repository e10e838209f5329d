#!/usr/bin/python3
"""End-to-end latency through nws-proxy on two test hosts: a WebSocket client on host A
broadcasts 100-byte messages at 1,000 a second; a client on host B timestamps each one.
Path: client -> nws-proxy -> nws-browse -> nws-link -> network -> nws-link ->
nws-advertise -> nws-proxy -> client. Both hosts share this machine's CLOCK_MONOTONIC, so
one-way latency is receive time minus the send time carried in the message.

Prints p50, p99, mean and max over 1,000 messages (after 100 warm-up messages), and the
same between two clients of one proxy, as a baseline of what the clients and one proxy
cost without the pipeline and the network. Needs root
(network namespaces); uses $NWS_BIN (default build/bin)."""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts as hostlib  # noqa: E402

N = 1000
WARMUP = 100
RATE = 1000          # messages per second
SIZE = 100           # bytes of data per broadcast
CHANNEL = "bench-latency"

CLIENT = r'''
import asyncio, json, sys, time, websockets
role, n, warm, rate, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
async def main():
    ws = await websockets.connect("ws://localhost:9009/%s" % sys.argv[6], max_size=None)
    await ws.send(json.dumps({"action": "status"}))
    peers = set()
    while True:
        m = json.loads(await ws.recv())
        if m["action"] == "connect":
            peers.add(m["target"])
        if m["action"] == "status":
            me = m["source"]
            break
    print(json.dumps({"id": me}), flush=True)
    if role == "recv":
        lat = []
        while len(lat) < n:
            raw = await ws.recv()
            now = time.monotonic_ns()
            m = json.loads(raw)
            if m["action"] != "broadcast":
                continue
            kind, ts = m["data"].split(":")[:2]
            if kind == "t":
                lat.append((now - int(ts)) / 1000)
        print(json.dumps({"lat": lat}), flush=True)
        return
    peer = sys.argv[7]
    while peer not in peers:
        m = json.loads(await ws.recv())
        if m["action"] == "connect":
            peers.add(m["target"])
    period = 1e9 / rate
    start = time.monotonic_ns()
    for i in range(warm + n):
        due = start + i * period
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        head = "%s:%d:" % ("w" if i < warm else "t", time.monotonic_ns())
        await ws.send(json.dumps({"action": "broadcast", "data": head + "x" * (size - len(head))}))
    await asyncio.sleep(1)
    print(json.dumps({"sent": warm + n}), flush=True)
asyncio.run(main())
'''


def line(proc, timeout):
    import select
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    if not r:
        raise TimeoutError("a bench client did not answer")
    out = proc.stdout.readline()
    if not out:
        raise EOFError("a bench client exited")
    return json.loads(out)


def measure(sender_host, receiver_host, channel):
    """Latencies (us, sorted) of N broadcasts from a client on sender_host to one on
    receiver_host."""
    args = [str(N), str(WARMUP), str(RATE), str(SIZE), channel]
    recv = receiver_host.popen([sys.executable, "-c", CLIENT, "recv", *args],
                               stdout=subprocess.PIPE, text=True)
    rid = line(recv, 10)["id"]
    send = sender_host.popen([sys.executable, "-c", CLIENT, "send", *args, rid],
                             stdout=subprocess.PIPE, text=True)
    line(send, 10)
    lat = line(recv, 60)["lat"]
    for p in (send, recv):
        p.terminate()
        p.wait(10)
    return sorted(lat)


def main():
    why = hostlib.missing()
    if why:
        print(f"bench_proxy: skipped: {why}")
        return 0
    bindir = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")
    proxy = os.path.join(bindir, "nws-proxy")
    net = hostlib.Network()
    try:
        a, b = net.add(2)
        for h in (a, b):
            err = open(os.path.join(h.dir, "proxy.err"), "ab")
            h.popen([proxy], stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            probe = "import socket; socket.create_connection(('127.0.0.1', 9009), 1)"
            hostlib.wait_for(lambda: h.run([sys.executable, "-c", probe]).returncode == 0, 10,
                             f"nws-proxy on {h.name}", interval=0.1)
        print(f"nws-proxy one-way latency, {SIZE}-byte broadcasts at {RATE}/s, {N} messages "
              f"(after {WARMUP} warm-up), python3-websockets clients:")
        for label, sender, channel in (("client on A -> client on B (end to end)", a, CHANNEL),
                                       ("client on B -> client on B (one proxy, baseline)", b,
                                        CHANNEL + "-local")):
            lat = measure(sender, b, channel)
            p50 = lat[len(lat) // 2]
            p99 = lat[int(len(lat) * 0.99) - 1]
            print(f"  {label}: p50 {p50:.0f} us, p99 {p99:.0f} us, "
                  f"mean {statistics.mean(lat):.0f} us, max {lat[-1]:.0f} us")
        return 0
    finally:
        net.close()


if __name__ == "__main__":
    sys.exit(main())

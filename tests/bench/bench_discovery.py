#!/usr/bin/python3
"""Discovery latency: from starting nws-advertise for a new channel on host A to the
`found` frame of a running nws-browse on host B (DESIGN.md §9: the seed needs ~8 s).
Prints each run and the median of 10. Needs root (test hosts)."""
import json
import os
import secrets
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts  # noqa: E402

RUNS = 10
BIN = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")


def read_until(proc, pred, timeout):
    """Reads JSON lines from proc until pred(frame); returns the time it came."""
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), True)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("nws-browse exited")
        if pred(json.loads(line)):
            return time.monotonic()
    raise TimeoutError("no found frame in time")


def one(a, b, beacon):
    ch = "bench-" + secrets.token_hex(8)
    browse = b.popen([os.path.join(BIN, "nws-browse"), "-a", ch], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    # The browser is up once it reports the beacon, which is always there.
    read_until(browse, lambda f: f.get("action") == "found" and f.get("port") == beacon, 20)
    t0 = time.monotonic()
    adv = a.popen([os.path.join(BIN, "nws-advertise"), "-p", "5001", ch],
                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = read_until(browse, lambda f: f.get("action") == "found" and f.get("channel") == ch, 20)
    for p in (adv, browse):
        p.terminate()
        p.wait(5)
    return t1 - t0


def main():
    why = hosts.missing()
    if why:
        print(f"bench_discovery: skipped: {why}")
        return 0
    net = hosts.Network()
    try:
        a, b = net.add(2)
        beacon = a.popen([os.path.join(BIN, "nws-advertise"), "-p", "5000", "beacon"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        times = []
        for i in range(RUNS):
            t = one(a, b, 5000)
            times.append(t)
            print(f"run {i + 1}: advertise start -> found {t * 1000:.0f} ms", flush=True)
        beacon.terminate()
        print(f"discovery median of {RUNS}: {statistics.median(times) * 1000:.0f} ms "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    finally:
        net.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

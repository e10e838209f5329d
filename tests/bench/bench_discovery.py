#!/usr/bin/python3
"""Discovery latency: from starting nws-advertise for a new channel on host A to the
`found` frame of a running nws-browse on host B (the seed needs ~8 s: tests/README.md).
Prints each run and the median of 10. Needs root (test hosts)."""
import json
import os
import secrets
import select
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
    """Reads JSON lines from proc's stdout (raw, so select sees every byte not yet taken)
    until pred(frame); returns the time that frame came."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = getattr(proc, "linebuf", b"")
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip() and pred(json.loads(line)):
                proc.linebuf = buf
                return time.monotonic()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError("no found frame in time")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError("nws-browse exited")
        buf += chunk


def one(a, b, beacon):
    ch = "bench-" + secrets.token_hex(8)
    browse = b.popen([os.path.join(BIN, "nws-browse"), "-a", ch], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # The browser is up once it reports the beacon, which is always there.
    read_until(browse, lambda f: f.get("action") == "found" and f.get("port") == beacon, 20)
    t0 = time.monotonic()
    with open(os.path.join(a.dir, "advertise.err"), "ab") as err:
        adv = a.popen([os.path.join(BIN, "nws-advertise"), "-p", "5001", ch],
                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    try:
        t1 = read_until(browse, lambda f: f.get("action") == "found" and f.get("channel") == ch,
                        20)
    finally:
        for p in (adv, browse):
            p.terminate()
            p.wait(5)
    if adv.returncode != 0:
        raise RuntimeError(f"nws-advertise exited with {adv.returncode}; see {a.dir}/advertise.err")
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

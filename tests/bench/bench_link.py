#!/usr/bin/python3
"""nws-link throughput between two test hosts, one sender and one receiver (issue 4):
- broadcasts per second of 100-byte messages,
- MB/s of 1 MiB messages.
Both ends speak CBOR (as the spawned pipelines do); the sender's input is written from a
prebuilt buffer and the receiver's output is counted in bytes (a link forwards a frame's
bytes unchanged), so Python is not what is measured. Each figure is the median of 5 runs.
Needs root (test hosts)."""
import os
import select
import statistics
import subprocess
import sys
import threading
import time

import cbor2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts  # noqa: E402

RUNS = 5
BIN = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")
CH = "bench-link"


def frames_of(stream):
    """Splits a CBOR sequence into its decoded maps (control frames only: small)."""
    import io
    f = io.BytesIO(stream)
    out = []
    while f.tell() < len(stream):
        out.append(cbor2.load(f))
    return out


class Node:
    def __init__(self, host):
        self.proc = host.popen([os.path.join(BIN, "nws-link"), "--cbor", "--listen",
                                f"{host.addr}:0", CH], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.host = host
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)

    def read_frames(self, want, timeout=20):
        """Reads control frames until want(frame) matches one; returns it."""
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            select.select([self.fd], [], [], 0.1)
            try:
                d = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                continue
            buf += d
            try:
                for f in frames_of(buf):
                    if want(f):
                        return f
            except (cbor2.CBORDecodeError, EOFError):
                pass
        raise TimeoutError("no such frame")

    def send(self, obj):
        self.proc.stdin.write(cbor2.dumps(obj))
        self.proc.stdin.flush()


def run_once(a, b, frame, count):
    """Writes count copies of frame into a, returns seconds until b has them all."""
    total = len(frame) * count
    chunk = frame * max(1, (1 << 20) // len(frame))
    got = 0

    def writer():
        left = count
        per = len(chunk) // len(frame)
        while left > 0:
            n = min(per, left)
            a.proc.stdin.write(chunk[:n * len(frame)])
            left -= n
        a.proc.stdin.flush()
    # Status frames (linked) from before the run are not part of it.
    while select.select([b.fd], [], [], 0.3)[0]:
        os.read(b.fd, 1 << 20)
    t0 = time.monotonic()
    w = threading.Thread(target=writer)
    w.start()
    deadline = t0 + 120
    while got < total and time.monotonic() < deadline:
        select.select([b.fd], [], [], 0.5)
        try:
            got += len(os.read(b.fd, 1 << 20))
        except BlockingIOError:
            pass
    t1 = time.monotonic()
    w.join()
    if got != total:
        raise RuntimeError(f"received {got} of {total} bytes")
    return t1 - t0


def main():
    why = hosts.missing()
    if why:
        print(f"bench_link: skipped: {why}")
        return 0
    net = hosts.Network()
    try:
        ha, hb = net.add(2, avahi=False)
        a, b = Node(ha), Node(hb)
        la = a.read_frames(lambda f: f.get("action") == "listening")
        b.send({"action": "found", "channel": CH, "instance": "bench", "host": "a",
                "address": ha.addr, "port": la["port"],
                "interface": ha.iface})
        b.send({"action": "connect", "channel": CH, "target": "b1"})
        a.read_frames(lambda f: f.get("action") == "connect")
        small = cbor2.dumps({"action": "broadcast", "channel": CH, "source": "a1",
                             "data": "x" * 100})
        big = cbor2.dumps({"action": "broadcast", "channel": CH, "source": "a1",
                           "data": os.urandom(1 << 20)})
        n_small, n_big = 200000, 200
        rates, mbs = [], []
        for i in range(RUNS):
            s = run_once(a, b, small, n_small)
            rates.append(n_small / s)
            s = run_once(a, b, big, n_big)
            mbs.append(n_big * (1 << 20) / s / 1e6)
            print(f"run {i + 1}: {rates[-1]:,.0f} broadcasts/s (100 B), "
                  f"{mbs[-1]:,.1f} MB/s (1 MiB)", flush=True)
        print(f"nws-link broadcasts/s, 100-byte messages, median of {RUNS}: "
              f"{statistics.median(rates):,.0f}")
        print(f"nws-link MB/s, 1 MiB messages, median of {RUNS}: "
              f"{statistics.median(mbs):,.1f}")
        return 0
    finally:
        net.close()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Lines per second through nws-pipe: `seq` output (100-byte lines) into `nws-pipe -w 1 -1`
on test host A, out of `nws-pipe` on test host B. B counts lines as they arrive; a run's
rate is its lines over the time from B's first line to its last. Median of 5 runs, each
with a fresh sender (so its discovery is not in the figure). Needs root (test hosts)."""
import os
import select
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts as hostlib  # noqa: E402

BIN = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")
LINES = int(os.environ.get("BENCH_PIPE_LINES", "200000"))
RUNS = 5
RUN_TIMEOUT = 60
VERBOSE = ["-v"] if os.environ.get("BENCH_PIPE_VERBOSE") else []


def receive(proc, n, deadline):
    """Reads B's stdout until n lines arrived; returns (first, last) arrival times."""
    fd = proc.stdout.fileno()
    got = 0
    first = None
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"{got} of {n} lines arrived")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise RuntimeError(f"the receiver ended after {got} lines")
        if first is None:
            first = time.monotonic()
        got += chunk.count(b"\n")
    return first, time.monotonic()


def main():
    why = hostlib.missing()
    if why:
        print(f"bench_pipe: skipped: {why}")
        return 0
    pipe = os.path.join(BIN, "nws-pipe")
    seq = ["seq", "-f", "%099g", "1", str(LINES)]
    net = hostlib.Network()
    rates = []
    try:
        a, b = net.add(2)
        recv = b.popen([pipe, *VERBOSE, "bench-pipe"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE)
        for run in range(RUNS):
            send = a.popen([pipe, *VERBOSE, "-w", "1", "-1", "bench-pipe"], stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL)
            # seq writes on its own while B is read here: a writer in this process would
            # leave B unread, and its backpressure would stall the sender.
            writer = subprocess.Popen(seq, stdout=send.stdin)
            send.stdin.close()
            first, last = receive(recv, LINES, time.monotonic() + RUN_TIMEOUT)
            writer.wait(RUN_TIMEOUT)
            rc = send.wait(RUN_TIMEOUT)
            if rc != 0:
                raise RuntimeError(f"the sender exited with {rc}")
            rate = (LINES - 1) / (last - first)
            rates.append(rate)
            print(f"run {run + 1}: {LINES} lines in {last - first:.3f} s = {rate:,.0f} lines/s",
                  flush=True)
        hostlib._stop(recv)
    finally:
        net.close()
    print(f"nws-pipe lines/s (100-byte lines, host A -> host B, median of {RUNS}): "
          f"{statistics.median(rates):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

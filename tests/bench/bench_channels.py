#!/usr/bin/python3
"""Many channels at once: an nws-proxy on each of two test hosts, and on each a client
that opens the same 100 channels (one WebSocket each) at once; prints the time from the
last socket opened until, on both hosts, every channel has seen the other host's peer
(a connect), with the 10th, 50th and 90th percentile of when channels met, and the time
one Argon2id derivation takes here alone (each channel costs that once per pipeline
stage per host: the floor under the total). Needs root (test hosts)."""
import json
import os
import secrets
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts as hostlib  # noqa: E402

CHANNELS = int(os.environ.get("NWS_BENCH_CHANNELS", "100"))
TIMEOUT = 300

# Opens every channel, says when the last socket is open, then prints for each channel
# the CLOCK_MONOTONIC time its first connect came.
CLIENT = r'''
import asyncio, json, sys, time, websockets
names = sys.argv[1:]
async def one(name, opened, met):
    ws = await websockets.connect("ws://localhost:9009/" + name, max_size=None)
    opened.append(time.monotonic())
    while True:
        m = json.loads(await ws.recv())
        if m.get("action") == "connect":
            met[name] = time.monotonic()
            break
    return ws
async def main():
    opened, met = [], {}
    tasks = [asyncio.create_task(one(n, opened, met)) for n in names]
    while len(opened) < len(names):
        await asyncio.sleep(0.01)
    print(json.dumps({"opened": max(opened)}), flush=True)
    socks = await asyncio.gather(*tasks)
    print(json.dumps({"met": met}), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
'''


def line(proc, timeout):
    import select
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    if not r:
        raise TimeoutError("a bench client did not answer in time")
    out = proc.stdout.readline()
    if not out:
        raise EOFError("a bench client exited")
    return json.loads(out)


def argon2_alone():
    from nacl import pwhash
    t = time.monotonic()
    pwhash.argon2id.kdf(32, b"bench", b"0" * 16, opslimit=pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                        memlimit=pwhash.argon2id.MEMLIMIT_INTERACTIVE)
    return time.monotonic() - t


def main():
    why = hostlib.missing()
    if why:
        print(f"bench_channels: skipped: {why}")
        return 0
    bindir = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")
    names = [f"bench-{secrets.token_hex(8)}" for _ in range(CHANNELS)]
    net = hostlib.Network()
    clients = []
    try:
        hs = net.add(2)
        for h in hs:
            err = open(os.path.join(h.dir, "proxy.err"), "ab")
            h.popen([os.path.join(bindir, "nws-proxy")], stdin=subprocess.DEVNULL,
                    stdout=err, stderr=err)
            probe = "import socket; socket.create_connection(('127.0.0.1', 9009), 1)"
            hostlib.wait_for(lambda: h.run([sys.executable, "-c", probe]).returncode == 0, 10,
                             f"nws-proxy on {h.name}", interval=0.1)
        clients = [h.popen([sys.executable, "-c", CLIENT, *names], stdout=subprocess.PIPE,
                           text=True) for h in hs]
        t0 = max(line(c, 60)["opened"] for c in clients)
        met = []
        for c in clients:
            met += [t - t0 for t in line(c, TIMEOUT)["met"].values()]
        met.sort()

        def pct(p):
            return met[min(len(met) - 1, int(len(met) * p))]
        print(f"{CHANNELS} channels on two nws-proxy hosts: all met {met[-1]:.1f} s after the "
              f"last socket opened (10% {pct(0.1):.1f} s, 50% {pct(0.5):.1f} s, "
              f"90% {pct(0.9):.1f} s); one Argon2id derivation alone: "
              f"{argon2_alone() * 1000:.0f} ms", flush=True)
        return 0
    except (TimeoutError, EOFError) as e:
        print(f"bench_channels: {e}")
        return 1
    finally:
        for c in clients:
            c.terminate()
            c.wait(10)
        net.close()


if __name__ == "__main__":
    sys.exit(main())

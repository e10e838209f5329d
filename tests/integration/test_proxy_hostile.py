"""nws-proxy against clients and pages that misbehave: readers that stop reading, many
clients, half-sent requests, pages that open channels in a loop. One proxy on loopback of
this machine (as in test_proxy.py: no avahi-daemon, links on 127.0.0.1 only)."""
import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_proxy import T, action, connect, run, status  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from hosts import wait_for  # noqa: E402
from nwsproxy import Agent  # noqa: E402

TCP_CLOSE = 7


class RawClient:
    """A WebSocket client on a plain socket, so a test decides when (if ever) it reads."""

    def __init__(self, port, path, origin=None, rcvbuf=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Origin: {origin}\r\n" if origin else ""
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{extra}"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                       .encode())
        head = b""
        self.s.settimeout(T)
        while b"\r\n\r\n" not in head:   # byte by byte: nothing after the head is read
            c = self.s.recv(1)
            if not c:
                raise EOFError(f"closed during the upgrade: {head!r}")
            head += c
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""

    def tcp_state(self):
        return self.s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]

    def send_text(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + struct.pack(">H", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def read_all(self):
        """Everything the kernel holds for us, until end of stream or reset."""
        self.s.settimeout(T)
        try:
            while True:
                chunk = self.s.recv(1 << 20)
                if not chunk:
                    break
                self.buf += chunk
        except (ConnectionResetError, socket.timeout):
            pass

    def frames(self):
        """(opcode, payload) of each whole frame read so far."""
        out, b = [], self.buf
        while len(b) >= 2:
            n, at = b[1] & 0x7f, 2
            if n == 126:
                n, at = struct.unpack(">H", b[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack(">Q", b[2:10])[0], 10
            if len(b) < at + n:
                break
            out.append((b[0] & 0x0f, b[at:at + n]))
            b = b[at + n:]
        return out

    def close(self):
        self.s.close()


def seqs(frames):
    """The sequence numbers of the broadcasts among frames, in order."""
    return [int(json.loads(p)["data"][:8]) for op, p in frames
            if op == 1 and json.loads(p).get("action") == "broadcast"]


async def flood_until_dropped(p, channel, ids, n, size, on_left=lambda i: None):
    """Broadcasts n numbered messages of size bytes into channel from a sender, with a
    watcher that reads everything; stops once the watcher saw every id in ids leave
    (calling on_left(id) at once for each). Returns (messages sent, time each id left)."""
    watcher = await connect(f"{p.url}/{channel}", max_size=None)
    sender = await connect(f"{p.url}/{channel}")
    await status(watcher)
    await status(sender)
    left = {}
    pad = "x" * (size - 8)
    sent = 0
    for i in range(n):
        await sender.send(json.dumps({"action": "broadcast", "data": f"{i:08d}{pad}"}))
        sent += 1
        while True:
            m = await watcher.recv()
            if m["action"] == "disconnect" and m["target"] in ids:
                left.setdefault(m["target"], time.monotonic())
                on_left(m["target"])
            elif m["action"] == "broadcast":
                break
        if len(left) == len(ids):
            break
    deadline = time.monotonic() + 10
    while len(left) < len(ids) and time.monotonic() < deadline:
        m = await watcher.recv()
        if m["action"] == "disconnect" and m["target"] in ids:
            left.setdefault(m["target"], time.monotonic())
            on_left(m["target"])
    await watcher.close()
    await sender.close()
    return sent, left


async def join_raw(p, channel, origin=None):
    """A raw client in channel, and its peer id (learnt from a websockets client that
    joined first and sees it connect)."""
    first = await connect(f"{p.url}/{channel}")
    await status(first)
    raw = RawClient(p.port, f"/{channel}", origin=origin, rcvbuf=32768)
    m = await first.until(action("connect"))
    await first.close()
    return raw, m["target"]


def test_stalled_reader_loses_nothing_gets_1008_and_its_connection_ends(proxy):
    p = proxy()

    async def go():
        # resumes reading once the proxy dropped it; never reads
        late, late_id = await join_raw(p, "stall")
        never, never_id = await join_raw(p, "stall")
        reader = threading.Thread(target=late.read_all)
        sent, left = await flood_until_dropped(
            p, "stall", {late_id, never_id}, 768, 65536,
            on_left=lambda i: i == late_id and reader.start())
        assert set(left) == {late_id, never_id}, f"not dropped after {sent} of 48 MB"
        reader.join()
        # The connection of the reader that never reads ends within seconds: a reset,
        # not a close that waits for it to read.
        wait_for(lambda: never.tcp_state() == TCP_CLOSE, 6, "the stalled connection to end")
        assert time.monotonic() - left[never_id] < 8
        # (What it had not read went with the reset.) The one that read got every
        # message before the close, in order, none skipped, then 1008.
        got = seqs(late.frames())
        assert got == list(range(len(got))), got[:5]
        assert len(got) > 8
        op, payload = late.frames()[-1]
        assert op == 8 and struct.unpack(">H", payload[:2])[0] == 1008
        assert payload[2:] == b"too slow"
        late.close()
        never.close()
    run(go())


def test_stalled_reader_below_the_queue_bound_is_closed_within_seconds(proxy):
    p = proxy()

    async def go():
        stalled, stalled_id = await join_raw(p, "stuck")
        # About 4 MB: past what the sockets hold, far below the 8 MiB queue.
        sent, left = await flood_until_dropped(p, "stuck", {stalled_id}, 64, 65536)
        assert sent == 64
        assert stalled_id in left, "a reader that took nothing for 10 s was kept"
        wait_for(lambda: stalled.tcp_state() == TCP_CLOSE, 6, "the stalled connection to end")
        stalled.close()
    run(go())


# ---------------------------------------------------------------- many clients

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


def cpu_s(pid):
    """User plus system CPU seconds of pid so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_1000_clients_in_100_channels(proxy):
    p = proxy("-v")

    async def go():
        clients = []
        for ch in range(100):
            clients += await asyncio.gather(*(connect(f"{p.url}/many-{ch}")
                                              for _ in range(10)))
        # Each learns its 9 channel mates, and a broadcast reaches exactly them.
        ids = await asyncio.gather(*(status(c) for c in clients))
        for k, c in enumerate(clients):
            want = {ids[j] for j in range(k - k % 10, k - k % 10 + 10)} - {ids[k]}
            got = set()
            while got != want:
                got.add((await c.until(action("connect")))["target"])
        # Once the 100 channel keys are derived (Argon2id's 64 MiB given back).
        wait_for(lambda: derive_counts(p.stderr())[-1:] == [0], 60, "the keys of 100 channels")
        print(f"\nnws-proxy RSS with 1000 clients in 100 channels: "
              f"{rss_kb(p.proc.pid) / 1024:.1f} MiB")
        assert rss_kb(p.proc.pid) < 64 * 1024
        await clients[0].send(json.dumps({"action": "broadcast", "data": "to 9"}))
        for c in clients[1:10]:
            assert (await c.until(action("broadcast")))["data"] == "to 9"
        assert not [m for m in await clients[10].quiet() if m["action"] == "broadcast"]
        await asyncio.gather(*(c.close() for c in clients))
    run(go())


def test_500_half_sent_requests_do_not_delay_a_new_client(proxy):
    p = proxy()
    held = []
    try:
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", p.port))
            s.sendall(f"GET /held-{i} HTTP/1.1\r\nHost: localhost:{p.port}\r\n".encode())
            held.append(s)

        async def go():
            t0 = time.monotonic()
            c = await connect(f"{p.url}/fresh", open_timeout=1)
            await status(c)
            assert time.monotonic() - t0 < 1, "a new client waited behind half-sent requests"
            await c.close()
        run(go())
    finally:
        for s in held:
            s.close()


# ---------------------------------------------------------------- channel keys

def derive_counts(err):
    return [int(line.rsplit(":", 1)[1]) for line in err.splitlines()
            if line.startswith("nws-proxy: channel keys being derived:")]


def test_foreign_origin_cannot_queue_unbounded_key_derivations(proxy):
    p = proxy("-v")
    evil = "https://evil.example"

    async def go():
        # A page holding many channels open at once: past the cap, an error and 1013.
        burst = await asyncio.gather(*(connect(f"{p.url}/burst-{i}", origin=evil)
                                       for i in range(40)))
        refused = 0
        for c in burst:
            try:
                await c.send(json.dumps({"action": "status"}))
            except websockets.exceptions.ConnectionClosed:
                pass
            m = await c.recv()   # status, or the error that came first
            if m.get("action") == "error":
                assert m["code"] == 429
                assert (await c.closed())[0] == 1013
                refused += 1
        assert refused > 0
        await asyncio.gather(*(c.close() for c in burst))
        # 1,000 connect/close cycles, 20 at a time, each its own channel.
        for i in range(0, 1000, 20):
            cs = await asyncio.gather(*(connect(f"{p.url}/cycle-{j}", origin=evil)
                                        for j in range(i, i + 20)))
            await asyncio.gather(*(c.close() for c in cs))
    run(go())
    assert max(derive_counts(p.stderr())) <= 4
    # What is left is done within seconds, and then nothing derives any more.
    wait_for(lambda: derive_counts(p.stderr())[-1] == 0, 10, "pending derivations to end")
    pids = [p.proc.pid] + children(p.proc.pid)
    before = [cpu_s(x) for x in pids]
    time.sleep(1)   # measuring CPU over a second, not waiting for a condition
    used = sum(cpu_s(x) for x in pids) - sum(before)
    assert used < 0.3, f"{used:.2f} s of CPU in the second after the page stopped"


def test_argon2id_runs_once_per_channel_per_host(hosts, host_proxy):
    net = hosts(2)
    procs = [host_proxy(h, "-vv") for h in net]
    agents = [Agent(h, "ws://localhost:9009/keyshare?events=link") for h in net]
    try:
        ids = [a.status() for a in agents]
        # Linked and advertised with the one key the proxy derived and passed on.
        agents[0].until(lambda m: m.get("action") == "connect" and m["target"] == ids[1],
                        timeout=20)
        agents[1].until(lambda m: m.get("action") == "connect" and m["target"] == ids[0],
                        timeout=20)
        for a in agents:
            a.until(lambda m: m.get("action") == "advertised", timeout=20)
        agents[1].send({"action": "broadcast", "data": "one key"})
        m = agents[0].until(lambda m: m.get("action") == "broadcast")
        assert m["data"] == "one key"
        for p in procs:
            err = p.stderr()
            derives = [line for line in err.splitlines() if "deriving a channel key" in line]
            # nws-proxy's own, never nws-browse's, nws-link's or nws-advertise's.
            assert derives == ["nws-proxy: deriving a channel key (Argon2id)"], err[-3000:]
        for a in agents:
            assert not [m for m in a.pending if "key" in m]
    finally:
        for a in agents:
            a.close()


def listening_addresses(pid):
    """The local addresses of the TCP sockets pid listens on, from ss."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if f"pid={pid}," in line]


def test_listen_binds_exactly_the_address_given(proxy):
    p = proxy()   # the fixture passes --listen 127.0.0.1:0 (to nws-link)

    def link_pid():
        for pid in children(p.proc.pid):
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "nws-link":
                    return pid
    pid = wait_for(link_pid, T, "nws-link to start")
    addrs = wait_for(lambda: listening_addresses(pid), T, "nws-link to listen")
    assert all(a.startswith("127.0.0.1:") for a in addrs), addrs
    # And nws-proxy's own sockets: loopback only.
    assert sorted(a.rsplit(":", 1)[0] for a in listening_addresses(p.proc.pid)) == \
        ["127.0.0.1", "[::1]"]

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_proxy import T, action, connect, proxy, run, status  # noqa: E402,F401

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from hosts import wait_for  # noqa: E402

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

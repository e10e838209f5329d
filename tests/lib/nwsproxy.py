"""nws-proxy driven by a test, and a WebSocket client that runs beside it in a test host.
Each is a Proc: stopped by PID, and proxy.stop_clean() is the clean-exit check (exit 0 at
SIGTERM, no sanitizer report on stderr, the stages' included). The fixtures `proxy` and
`host_proxy` (tests/conftest.py) start them and make that check at the end of the test.

    p = Proxy(binary, str(tmp_path), "--max-queue", "256k")   # loopback, p.url
    hp = HostProxy(host, binary)                  # ws://localhost:9009/ inside host
    a = Agent(host, "ws://localhost:9009/chat")
    a.send({"action": "status"})
    a.until(lambda m: m.get("action") == "status")
"""
import json
import socket
import subprocess
import sys
import time

from proc import JsonLines, Proc

T = 10  # seconds any single expected event may take
PORT = 9009  # nws-proxy's default port, where HostProxy serves
# No avahi-daemon is reachable at this D-Bus address: a loopback proxy links nothing.
NO_DBUS = "unix:path=/nonexistent/nws-test"
LOOPBACK = ("-p", "PORT", "--listen", "127.0.0.1:0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connectable(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Proxy(Proc):
    """One nws-proxy on this machine's loopback that cannot reach any avahi-daemon, its
    stderr in a file in errdir. options (PORT: a free port) choose where it serves; env is
    added to its environment."""

    def __init__(self, binary, errdir, *args, options=LOOPBACK, env=None):
        self.port = free_port()
        opts = [o.replace("PORT", str(self.port)) for o in options]
        super().__init__([binary, *opts, *args],
                         env={"DBUS_SYSTEM_BUS_ADDRESS": NO_DBUS, **(env or {})},
                         stdin=subprocess.DEVNULL, stderr_file=errdir)
        self.wait_until(lambda: connectable(self.port), T, "nws-proxy to listen")
        self.url = f"ws://localhost:{self.port}"


class HostProxy(Proc):
    """nws-proxy -v on port 9009 in a test host; its stderr and its stages' in a file."""

    def __init__(self, host, binary, *args):
        super().__init__([binary, "-v", *args], host=host, stdin=subprocess.DEVNULL,
                         stderr_file=True)
        self.wait_until(lambda: host.run(["ss", "-Hltn", f"sport = :{PORT}"],
                                         timeout=5).stdout.strip(),
                        T, f"nws-proxy on {host.name} to listen")


AGENT = r'''
import asyncio, json, sys, websockets
async def main(url):
    ws = await websockets.connect(url, max_size=None)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async def pump():
        try:
            async for m in ws:
                out = {"text": m} if isinstance(m, str) else {"binary": m.hex()}
                print(json.dumps(out), flush=True)
        except websockets.ConnectionClosed:
            pass
        print(json.dumps({"closed": ws.close_code, "reason": ws.close_reason}), flush=True)
    task = asyncio.ensure_future(pump())
    print(json.dumps({"open": True}), flush=True)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if "close" in cmd:
            await ws.close()
            break
        await ws.send(cmd["send"])
    await task
asyncio.run(main(sys.argv[1]))
'''


class Agent(JsonLines):
    """A WebSocket client running inside a test host: send() a text message, next() the
    next received message (a dict for JSON text) within a deadline."""

    def __init__(self, host, url):
        self.pending = []
        self.id = None
        super().__init__([sys.executable, "-c", AGENT, url], host=host)
        assert self.next_json(T, "the agent")["open"]

    def next(self, timeout=T):
        m = self.next_json(timeout, "the agent")
        if "text" in m:
            return json.loads(m["text"])
        return m

    def until(self, pred, timeout=T):
        """The first message matching pred; the others are kept for later calls."""
        for i, m in enumerate(self.pending):
            if pred(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = self.next(max(0.01, deadline - time.monotonic()))
            if pred(m):
                return m
            if "closed" in m:
                raise AssertionError(f"closed while waiting: {self.pending}")
            self.pending.append(m)

    def send(self, obj):
        self.write(json.dumps({"send": json.dumps(obj)}) + "\n")

    def status(self):
        self.send({"action": "status"})
        self.id = self.until(lambda m: m.get("action") == "status")["source"]
        return self.id

    def close(self):
        try:
            self.write(json.dumps({"close": True}) + "\n")
        except BrokenPipeError:
            pass
        self.close_stdin()
        self.proc.wait(T)

"""nws-proxy: the seed's WebSocket protocol on ws://localhost:PORT/<channel>.

Local tests run one proxy on loopback (python3-websockets clients); it cannot reach any
avahi-daemon (its D-Bus address points nowhere) and links only on 127.0.0.1, so nothing
leaves the machine. Network tests run one proxy per test host, with clients started inside
each host's namespace (Agent, tests/lib/nwsproxy.py: a WebSocket client driven over
stdin/stdout). Every proxy must exit clean at the end (the fixtures in tests/conftest.py)."""
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import cbor2
import pytest
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from hosts import wait_for  # noqa: E402
from nwsproxy import T, Agent, connectable  # noqa: E402
from proc import wakeups  # noqa: E402


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


class Client:
    """A websockets connection with selective receive: until(pred) returns the first
    message (decoded JSON for text) that matches, keeping the others for later calls."""

    def __init__(self, ws):
        self.ws = ws
        self.pending = []

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    async def send(self, m):
        await self.ws.send(m)

    async def close(self):
        await self.ws.close()

    async def recv(self, timeout=T):
        if self.pending:
            return self.pending.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(raw, str):
            return json.loads(raw)
        if self.ws.subprotocol == "nws.cbor":
            return cbor2.loads(raw)
        return raw

    async def until(self, pred, timeout=T):
        for i, m in enumerate(self.pending):
            if pred(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching message; have {self.pending}")
            raw = await asyncio.wait_for(self.ws.recv(), left)
            if isinstance(raw, str):
                m = json.loads(raw)
            elif self.ws.subprotocol == "nws.cbor":
                m = cbor2.loads(raw)
            else:
                m = raw
            if pred(m):
                return m
            self.pending.append(m)

    async def closed(self, timeout=T):
        """Reads until the connection closes; returns (code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
        except websockets.exceptions.ConnectionClosed as e:
            return e.code, e.reason

    async def quiet(self, timeout=0.3):
        """What arrives within timeout, plus what was pending (to assert nothing extra)."""
        got, self.pending = self.pending, []
        try:
            while True:
                got.append(await self.recv(timeout))
        except asyncio.TimeoutError:
            return got


async def connect(url, **kw):
    return Client(await websockets.connect(url, **kw))


def action(name):
    return lambda m: isinstance(m, dict) and m.get("action") == name


async def status(c):
    await c.send(json.dumps({"action": "status"}))
    m = await c.until(action("status"))
    assert m["source"] == m["target"]
    return m["source"]


async def seed_scenario(urls):
    """The seed's three-peer scenario; urls[i] is the endpoint client i connects to."""
    clients = [await connect(u) for u in urls]
    ids = [await status(c) for c in clients]
    assert len(set(ids)) == 3
    # Each gets connect for the other two, addressed to itself.
    for i, c in enumerate(clients):
        want = {ids[j] for j in range(3) if j != i}
        got = set()
        while got != want:
            m = await c.until(action("connect"))
            assert m["source"] == ids[i]
            got.add(m["target"])
    # A broadcast from each reaches the other two, with its sender.
    for i, c in enumerate(clients):
        await c.send(json.dumps({"action": "broadcast", "data": f"hello from {i}"}))
    for i, c in enumerate(clients):
        got = set()
        while len(got) < 2:
            m = await c.until(action("broadcast"))
            assert m["data"] == f"hello from {ids.index(m['source'])}"
            got.add(m["source"])
        assert got == {ids[j] for j in range(3) if j != i}
    # Six direct messages reach exactly their targets.
    for i, c in enumerate(clients):
        for j in range(3):
            if i != j:
                await c.send(json.dumps({"action": "message", "target": ids[j],
                                         "data": f"{i}->{j}"}))
    for j, c in enumerate(clients):
        got = []
        while len(got) < 2:
            m = await c.until(action("message"))
            assert m["target"] == ids[j]
            assert m["data"] == f"{ids.index(m['source'])}->{j}"
            got.append(m["data"])
        assert sorted(got) == sorted(f"{i}->{j}" for i in range(3) if i != j)
    for c in clients:
        assert not [m for m in await c.quiet() if m["action"] == "message"]
    # Closing a client yields disconnect at the others.
    await clients[0].close()
    for k in (1, 2):
        m = await clients[k].until(action("disconnect"))
        assert m == {"action": "disconnect", "source": ids[k], "target": ids[0]}
    for c in clients[1:]:
        await c.close()


# ---------------------------------------------------------------- one proxy, loopback

def test_seed_scenario_one_proxy(proxy):
    p = proxy()
    run(seed_scenario([f"{p.url}/seedchat"] * 3))


def test_channels_are_separate_and_ipv6_loopback_works(proxy):
    p = proxy()

    async def go():
        a = await connect(f"{p.url}/one")
        b = await connect(f"ws://127.0.0.1:{p.port}/two")
        await a.send(json.dumps({"action": "broadcast", "data": "x"}))
        assert await b.quiet() == []
        if connectable(p.port, "::1"):
            c = await connect(f"ws://[::1]:{p.port}/one")
            m = await a.until(action("connect"))
            await c.close()
        await a.close()
        await b.close()
    run(go())


def test_status_and_json_values(proxy):
    p = proxy()

    async def go():
        a = await connect(f"{p.url}/vals")
        b = await connect(f"{p.url}/vals")
        ida = await status(a)
        await b.until(action("connect"))
        value = {"n": 1, "list": [1, 2.5, None, True], "s": "é"}
        await a.send(json.dumps({"action": "broadcast", "data": value}))
        m = await b.until(action("broadcast"))
        assert m == {"action": "broadcast", "source": ida, "data": value}
        # A client cannot pretend to be someone else.
        await a.send(json.dumps({"action": "broadcast", "source": "ffffffffffffffff", "data": ""}))
        m = await b.until(action("broadcast"))
        assert m["source"] == ida and m["data"] == ""
        await a.close()
        await b.close()
    run(go())


def test_binary_is_a_broadcast_of_bytes_and_cbor_subprotocol(proxy):
    p = proxy()

    async def go():
        a = await connect(f"{p.url}/bin")
        c = await connect(f"{p.url}/bin", subprotocols=["nws.cbor"])
        assert c.subprotocol == "nws.cbor"
        ida = await status(a)
        await c.send(cbor2.dumps({"action": "status"}))
        idc = (await c.until(action("status")))["source"]
        payload = bytes(range(256)) * 4
        await a.send(payload)
        m = await c.until(action("broadcast"))
        assert m["source"] == ida and m["data"] == payload
        # CBOR in: a text broadcast and a direct message, seen by the JSON client.
        await c.send(cbor2.dumps({"action": "broadcast", "data": "from cbor"}))
        m = await a.until(action("broadcast"))
        assert m == {"action": "broadcast", "source": idc, "data": "from cbor"}
        await c.send(cbor2.dumps({"action": "message", "target": ida, "data": b"\x00\xff"}))
        m = await a.until(action("message"))
        assert base64.b64decode(m["data"]) == b"\x00\xff" and m.get("encoding") == "base64"
        # Bytes from CBOR reach a JSON client as a binary message.
        await c.send(cbor2.dumps({"action": "broadcast", "data": b"raw"}))
        m = await a.until(lambda m: isinstance(m, bytes))
        assert m == b"raw"
        await a.close()
        await c.close()
    run(go())


def test_bad_channel_name_is_400_and_foreign_host_is_403(proxy):
    p = proxy()

    async def go():
        ok = await connect(f"{p.url}/fine")
        other = await connect(f"{p.url}/fine")
        await status(ok)
        for path in ["/", "/bad%20name", "/a/b", "/" + "x" * 256, "/caf%C3%A9"]:
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
                await connect(f"{p.url}{path}")
            assert e.value.status_code == 400, path
        for host in ["evil.example:%d" % p.port, "localhost:1", "localhost",
                     "127.0.0.1.nip.io:%d" % p.port, ""]:
            assert upgrade_status(p.port, "/fine", host) == 403, host
        for host in [f"localhost:{p.port}", f"127.0.0.1:{p.port}", f"[::1]:{p.port}",
                     f"{socket.gethostname()}:{p.port}", f"LOCALHOST:{p.port}"]:
            assert upgrade_status(p.port, "/fine", host) == 101, host
        # The client already in the channel saw peers come and go, and still works.
        await ok.send(json.dumps({"action": "broadcast", "data": "still here"}))
        m = await other.until(action("broadcast"))
        assert m["data"] == "still here"
        await ok.close()
        await other.close()
    run(go())


def upgrade_status(port, path, host):
    """The status of a WebSocket upgrade sent with exactly this Host header."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split()[1])


def http_get(port, path, host=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or f'localhost:{port}'}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode(errors="replace").lower(), body


def test_console_and_polyfill_are_served(proxy):
    p = proxy()
    code, head, body = http_get(p.port, "/")
    assert code == 200 and "text/html" in head and b"nws console" in body
    assert "content-security-policy" in head
    code, head, body = http_get(p.port, "/nws.js")
    assert code == 200 and "javascript" in head and b"NetworkWebSocket" in body
    assert "access-control-allow-origin: *" in head
    assert http_get(p.port, "/console.js")[0] == 200
    assert http_get(p.port, "/console.css")[0] == 200
    assert http_get(p.port, "/no/such")[0] == 404
    assert http_get(p.port, "/nope")[0] == 400   # a channel: a WebSocket endpoint
    assert http_get(p.port, "/", host="attacker.example")[0] == 403


def test_malformed_and_unknown_input_gets_error_and_connection_stays(proxy):
    p = proxy()

    async def go():
        a = await connect(f"{p.url}/bad")
        b = await connect(f"{p.url}/bad")
        ida = await status(a)
        idb = await status(b)
        bad = ["{not json", "[]", "42", '{"data":"no action"}', '{"action":"fly"}',
               '{"action":"connect","target":"x"}', '{"action":"broadcast"}',
               '{"action":"message","data":"no target"}',
               '{"action":"message","target":"0000000000000000","data":"nobody"}',
               '{"action":"broadcast","data":"x"} trailing']
        for text in bad:
            await a.send(text)
            m = await a.until(action("error"))
            assert isinstance(m["reason"], str) and m["reason"], text
            assert m["code"] in (400, 404)
        # Still open, and the other client saw none of it and is unaffected.
        assert await status(a) == ida
        assert not [x for x in await b.quiet() if x["action"] != "connect"]
        await b.send(json.dumps({"action": "message", "target": ida, "data": "ok"}))
        m = await a.until(action("message"))
        assert m == {"action": "message", "source": idb, "target": ida, "data": "ok"}
        await a.close()
        await b.close()
    run(go())


def test_message_over_max_message_closes_with_1009(proxy):
    p = proxy("--max-message", "64k")

    async def go():
        a = await connect(f"{p.url}/big", max_size=None)
        b = await connect(f"{p.url}/big")
        await status(a)
        idb = await status(b)
        await a.send(json.dumps({"action": "broadcast", "data": "y" * 60000}))
        m = await b.until(action("broadcast"))
        assert len(m["data"]) == 60000
        await a.send(json.dumps({"action": "broadcast", "data": "z" * 70000}))
        assert (await a.closed())[0] == 1009
        await b.until(action("disconnect"))
        assert not [x for x in await b.quiet() if x["action"] == "broadcast"]
        assert await status(b) == idb
        await b.close()
    run(go())


def test_slow_client_is_closed_with_1008_others_unaffected(proxy):
    p = proxy("--max-queue", "256k")

    async def go():
        # The slow client reads nothing: websockets stops reading its socket once a
        # few messages wait unread (max_queue=1) and the kernel buffers fill.
        slow = await connect(f"{p.url}/flood", max_queue=1, read_limit=2**14)
        fast = await connect(f"{p.url}/flood")
        sender = await connect(f"{p.url}/flood")
        ids = await status(slow)
        await status(fast)
        await status(sender)
        chunk = "f" * 16000
        got = 0
        closed = False
        for i in range(2000):   # at most 32 MB, far past the 256 KiB queue plus socket buffers
            await sender.send(json.dumps({"action": "broadcast", "data": chunk}))
            while True:
                m = await fast.recv()
                if m["action"] == "broadcast":
                    got += 1
                    break
                if m["action"] == "disconnect" and m["target"] == ids:
                    closed = True
            if closed:
                break
        assert closed, "the slow client was never dropped"
        assert got == i + 1   # the fast client got every broadcast, in step
        assert await slow.closed() == (1008, "too slow")
        await fast.close()
        await sender.close()
    run(go())


def test_port_in_use_is_one_line_and_exit_1(nws_bin, proxy):
    p = proxy()
    r = subprocess.run([nws_bin("nws-proxy"), "-p", str(p.port), "--local"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nws-proxy: ") and str(p.port) in lines[0]
    assert "in use" in lines[0]


def test_sigterm_closes_clients_with_1001_and_exits_0(proxy):
    p = proxy()

    async def go():
        a = await connect(f"{p.url}/bye")
        await status(a)
        p.proc.send_signal(signal.SIGTERM)
        assert (await a.closed())[0] == 1001
    run(go())
    p.clean_exit(10, "SIGTERM")


def test_without_avahi_serves_locally_and_says_so_once(proxy):
    p = proxy()

    async def go():
        chans = []
        for name in ("n1", "n2", "n3"):
            x = await connect(f"{p.url}/{name}")
            y = await connect(f"{p.url}/{name}")
            idx = await status(x)
            await y.send(json.dumps({"action": "message", "target": idx, "data": name}))
            m = await x.until(action("message"))
            assert m["data"] == name
            chans += [x, y]
        wait_for(lambda: any(line.startswith("nws-proxy:") and "avahi" in line
                             for line in p.stderr().splitlines()),
                 T, "the proxy to say avahi is unreachable")
        for c in chans:
            await c.close()
    run(go())
    err = p.stderr()
    mine = [line for line in err.splitlines()
            if line.startswith("nws-proxy:") and "avahi" in line]
    assert len(mine) == 1, err
    for name in ("n1", "n2", "n3", "seed"):
        assert name not in err   # channel names are never logged by default


# ---------------------------------------------------------------- test hosts

def network_scenario(hosts_list, channel):
    """The seed scenario with client i on hosts_list[i]'s proxy."""
    agents = [Agent(h, f"ws://localhost:9009/{channel}") for h in hosts_list]
    try:
        ids = [a.status() for a in agents]
        n = len(agents)
        for i, a in enumerate(agents):
            want = {ids[j] for j in range(n) if j != i}
            got = set()
            while got != want:   # discovery + linking: allow a few seconds
                m = a.until(lambda m: m.get("action") == "connect", timeout=20)
                assert m["source"] == ids[i]
                got.add(m["target"])
        for i, a in enumerate(agents):
            a.send({"action": "broadcast", "data": f"hello from {i}"})
        for i, a in enumerate(agents):
            got = set()
            while len(got) < n - 1:
                m = a.until(lambda m: m.get("action") == "broadcast")
                assert m["data"] == f"hello from {ids.index(m['source'])}"
                got.add(m["source"])
        for i, a in enumerate(agents):
            for j in range(n):
                if i != j:
                    a.send({"action": "message", "target": ids[j], "data": f"{i}->{j}"})
        for j, a in enumerate(agents):
            got = []
            while len(got) < n - 1:
                m = a.until(lambda m: m.get("action") == "message")
                assert m["target"] == ids[j]
                got.append(m["data"])
            assert sorted(got) == sorted(f"{i}->{j}" for i in range(n) if i != j)
        agents[0].close()
        for k in range(1, n):
            m = agents[k].until(lambda m: m.get("action") == "disconnect")
            assert m["target"] == ids[0] and m["source"] == ids[k]
    finally:
        for a in agents:
            if a.proc.poll() is None:
                a.close()


@pytest.mark.parametrize("n", [2, 3])
def test_seed_scenario_across_hosts(hosts, host_proxy, n):
    net = hosts(n)
    procs = [host_proxy(h) for h in net]
    try:
        if n == 2:
            # Two clients on host A, one on host B: local and remote peers mixed.
            network_scenario([net[0], net[0], net[1]], "meshchat")
        else:
            network_scenario(net, "meshchat")
        # SIGTERM with a live pipeline: withdraw, end the stages, exit 0.
        for p in procs:
            p.proc.send_signal(signal.SIGTERM)
        for p in procs:
            p.clean_exit(10, "SIGTERM")
    except Exception:
        print("\n".join(f"--- {h.name}\n{p.stderr()[-3000:]}" for h, p in zip(net, procs)))
        raise


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return {int(p): c for p, c in (line.split(None, 1) for line in out.strip().splitlines())}


@contextlib.contextmanager
def two_proxies(hosts, host_proxy, channel):
    """A client on each of two hosts' proxies, a's having seen b's connect: (pa, pb, ca,
    cb, ida, idb). The proxies' stderr is printed when the test fails."""
    a, b = hosts(2)
    pa, pb = host_proxy(a), host_proxy(b)
    ca = Agent(a, f"ws://localhost:9009/{channel}")
    cb = Agent(b, f"ws://localhost:9009/{channel}")
    try:
        ida, idb = ca.status(), cb.status()
        ca.until(lambda m: m.get("action") == "connect" and m["target"] == idb, timeout=20)
        yield pa, pb, ca, cb, ida, idb
    except Exception:
        print(f"--- A\n{pa.stderr()[-3000:]}\n--- B\n{pb.stderr()[-3000:]}")
        raise
    finally:
        ca.close()
        cb.close()


def test_killing_nws_link_keeps_clients_and_peers_come_back(hosts, host_proxy):
    with two_proxies(hosts, host_proxy, "survive") as (pa, pb, ca, cb, ida, idb):
        # The proxy is run through ip netns exec, which execs: pa.pid is nws-proxy.
        link = wait_for(lambda: [p for p, c in children(pa.pid).items()
                                 if c.strip() == "nws-link"], T, "nws-link of host A")
        os.kill(link[0], signal.SIGKILL)
        # The remote peer goes and comes back; meanwhile the local client stays connected.
        m = ca.until(lambda m: m.get("action") == "connect" and m["target"] == idb, timeout=10)
        # A proxy sends a broadcast to the remote peers it knows of: b waits to see a again.
        for action in ("connect", "disconnect", "connect"):
            cb.until(lambda m: m.get("action") == action and m["target"] == ida, timeout=10)
        cb.send({"action": "broadcast", "data": "after the restart"})
        m = ca.until(lambda m: m.get("action") == "broadcast")
        assert m == {"action": "broadcast", "source": idb, "data": "after the restart"}
        assert ca.status() == ida   # the same connection, the same id
        assert pa.proc.poll() is None


def test_broadcasts_between_proxies_wake_only_nws_link(hosts, host_proxy):
    # The peers' frames go to and come from nws-link on its --data-fds: nws-browse and
    # nws-advertise, which only passed them on, are not woken by them (they were, once per
    # burst, on each side).
    N = 300
    with two_proxies(hosts, host_proxy, "quiet") as (pa, pb, ca, cb, ida, idb):
        cb.until(lambda m: m.get("action") == "connect" and m["target"] == ida, timeout=20)
        stages = {f"{side}:{c.strip()}": pid for side, p in (("A", pa), ("B", pb))
                  for pid, c in children(p.pid).items()
                  if c.strip() in ("nws-browse", "nws-advertise")}
        assert len(stages) == 4, stages
        before = {k: wakeups(pid) for k, pid in stages.items()}
        for i in range(N):
            ca.send({"action": "broadcast", "data": f"m{i}"})
            # One at a time, as a page that waits for an answer would: each its own burst.
            assert cb.until(lambda m: m.get("action") == "broadcast")["data"] == f"m{i}"
        woke = {k: wakeups(pid) - before[k] for k, pid in stages.items()}
        # mDNS goes on meanwhile (announcements, cache expiry): a few wake-ups, not N.
        assert all(n < N // 10 for n in woke.values()), woke


def test_without_avahi_then_joins_the_network_when_it_starts(hosts, host_proxy):
    a, b = hosts(2)
    a.stop_avahi()
    pa, pb = host_proxy(a), host_proxy(b)
    x1 = Agent(a, "ws://localhost:9009/late")
    x2 = Agent(a, "ws://localhost:9009/late")
    y = Agent(b, "ws://localhost:9009/late")
    try:
        # Same-machine peers work at once, and the proxy says once why the network does not.
        id1, id2, idy = x1.status(), x2.status(), y.status()
        x1.until(lambda m: m.get("action") == "connect" and m["target"] == id2)
        x2.send({"action": "message", "target": id1, "data": "local"})
        assert x1.until(lambda m: m.get("action") == "message")["data"] == "local"
        wait_for(lambda: "avahi" in pa.stderr(), T, "the proxy on A to say avahi is missing")
        a.start_avahi()
        # Now A joins: the peer on B appears at both clients of A, and talks.
        for x in (x1, x2):
            x.until(lambda m: m.get("action") == "connect" and m["target"] == idy, timeout=30)
        # A proxy sends a broadcast to the remote peers it knows of: y waits for both.
        for idx in (id1, id2):
            y.until(lambda m: m.get("action") == "connect" and m["target"] == idx, timeout=30)
        y.send({"action": "broadcast", "data": "welcome"})
        for x in (x1, x2):
            m = x.until(lambda m: m.get("action") == "broadcast")
            assert m == {"action": "broadcast", "source": idy, "data": "welcome"}
        said = [line for line in pa.stderr().splitlines()
                if line.startswith("nws-proxy:") and "avahi" in line and "again" not in line]
        assert len(said) == 1, pa.stderr()[-3000:]
        assert pa.proc.poll() is None
    except Exception:
        print(f"--- A\n{pa.stderr()[-3000:]}\n--- B\n{pb.stderr()[-3000:]}")
        raise
    finally:
        for c in (x1, x2, y):
            c.close()

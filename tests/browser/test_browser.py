"""Browser test: Debian's headless Chromium (npm playwright-core) on two test hosts.

Host A opens a page of another origin (served on 127.0.0.1:8765 in A) that uses
/nws.js from A's nws-proxy; host B opens B's console at http://localhost:9009/. They see
each other connect, exchange a broadcast each way and a direct message each way, and the
console is photographed into tests/artifacts/."""
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from hosts import wait_for  # noqa: E402
from proc import JsonLines  # noqa: E402

CHANNEL = "browsertest"


def missing():
    if not shutil.which("node"):
        return "browser tests need node (make deps)"
    if not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        return "browser tests need /usr/bin/chromium (make deps)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        return "browser tests need playwright-core (make deps runs npm ci in tests/browser)"
    return None


class Browser(JsonLines):
    """driver.js inside a host: call(cmd, **args) returns the command's value."""

    def __init__(self, host):
        self.what = f"the browser on {host.name}"
        self.n = 0
        super().__init__(["node", os.path.join(HERE, "driver.js")], host=host, cwd=HERE)
        assert self.next_json(60, self.what)["ready"]

    def call(self, cmd, timeout=30, **args):
        self.n += 1
        self.write(json.dumps({"id": self.n, "cmd": cmd, **args}) + "\n")
        r = self.next_json(timeout, self.what)
        if "error" in r:
            raise AssertionError(f"{cmd} {args} on {self.host.name}: {r['error']}\n"
                                 + "\n".join(r.get("logs", [])))
        return r["ok"]

    def wait(self, js, timeout=20):
        return self.call("wait", timeout=timeout + 10, js=js, ms=int(timeout * 1000))

    def close(self):
        self.close_stdin()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_page_and_console_on_two_hosts(hosts, host_proxy):
    why = missing()
    if why:
        pytest.skip(why)
    a, b = hosts(2)
    proxies = [host_proxy(h) for h in (a, b)]
    serve_pages(a)   # the page's own origin, not the proxy
    os.makedirs(ARTIFACTS, exist_ok=True)

    page = Browser(a)
    console = Browser(b)
    try:
        page.call("goto", url=f"http://127.0.0.1:8765/peer.html?channel={CHANNEL}")
        page.wait("window.events.some(e => e.type === 'open')")
        console.call("goto", url=f"http://localhost:9009/#join={CHANNEL}")
        console.wait("document.getElementById('state').dataset.state === 'open'")
        console_id = console.wait(
            "(t => t && t !== '…' && t)(document.getElementById('my-id').textContent)")

        # They see each other connect: across the network, through discovery and a link.
        page.wait(f"window.events.some(e => e.type === 'connect' && e.id === '{console_id}')",
                  timeout=30)
        page.wait(f"window.events.some(e => e.type === 'peer-open' && e.id === '{console_id}')")
        page_id = page.wait("window.nws.id")
        console.wait(f"!!document.querySelector('#peers li[data-peer=\"{page_id}\"]')", timeout=30)
        console.call("screenshot", path=os.path.join(ARTIFACTS, "console-peer-joined.png"))

        # A broadcast from the page reaches the console's log, with its sender.
        page.call("eval", js="window.nws.send('hello from the page'), true")
        console.wait("[...document.querySelectorAll('#log li[data-kind=broadcast]')]"
                     ".some(li => li.textContent.includes('hello from the page'))")
        sender = console.call("eval", js="[...document.querySelectorAll("
                              "'#log li[data-kind=broadcast] .who')].pop().title")
        assert sender == page_id

        # A broadcast typed into the console reaches the page's onmessage.
        console.call("fill", selector="#message-input", value="hello from the console")
        console.call("press", selector="#message-input", key="Enter")
        page.wait("window.events.some(e => e.type === 'broadcast' && "
                  "e.data === 'hello from the console')")
        ev = page.call("eval", js="window.events.find(e => e.type === 'broadcast')")
        assert ev["from"] == console_id

        # A direct message from the console, chosen in its peer list, reaches the page's
        # peer socket for the console.
        console.call("click", selector=f"#peers li[data-peer=\"{page_id}\"] button")
        assert console.call("eval", js="document.getElementById('target-select').value") == page_id
        console.call("fill", selector="#message-input", value="only for the page")
        console.call("click", selector="#send-btn")
        page.wait("window.events.some(e => e.type === 'direct' && e.data === 'only for the page')")
        ev = page.call("eval", js="window.events.find(e => e.type === 'direct')")
        assert ev["from"] == console_id

        # And one back, through the peer socket's send().
        page.call("eval", js=f"window.nws.peer('{console_id}').send('only for the console'), true")
        console.wait("[...document.querySelectorAll('#log li[data-kind=message]')]"
                     ".some(li => li.textContent.includes('only for the console'))")
        console.call("click", selector="#show-raw")
        console.call("screenshot", path=os.path.join(ARTIFACTS, "console-messages.png"))

        # The page leaves: the console sees the disconnect.
        page.call("eval", js="window.nws.close(), true")
        console.wait(f"!document.querySelector('#peers li[data-peer=\"{page_id}\"]')")
        console.wait("[...document.querySelectorAll('#log li[data-kind=disconnect]')].length > 0")
        console.call("screenshot", path=os.path.join(ARTIFACTS, "console-peer-left.png"))
    except Exception:
        for h, p in zip((a, b), proxies):
            print(f"--- {h.name}\n{p.stderr()[-3000:]}")
        raise
    finally:
        page.close()
        console.close()


# The original library's event trace for the scenario below, written out from
# lib/namedwebsockets.js of github.com/namedwebsockets/networkwebsockets (9047960).
# There each state change (__handleEvent) runs on a 1 ms timer and each dispatch
# (dispatchEvent) on a 2 ms timer after it; __doClose chains "closing" -> "close" ->
# the parent's "disconnect" through callbacks that run right after each state change. So
# a listener sees the state its object has by then: "closing" arrives with readyState 3.
# Entries: [who, type, readyState, ...]: close adds code and reason, message its data,
# connect/disconnect the peer and the peer's readyState.
ORIGINAL_TRACE_A = [
    ["root", "open", 1],
    # "connect": the peer is made CONNECTING, the root's event dispatched, the peer's
    # "open" 50 ms later.
    ["root", "connect", 1, "peer", 0],
    ["peer", "open", 1],
    ["root", "message", 1, "from B"],
    ["root", "message", 1, '{"n":1}'],      # non-string data: its JSON.stringify text
    ["peer", "message", 1, "direct from B"],
    # peer.close(): __doClose(code || 3001, reason || "Closed", this.parent).
    ["peer", "closing", 3],
    ["peer", "close", 3, 3001, "Closed"],
    ["root", "disconnect", 1, "peer", 3],
    # B leaves: close() did not take the peer out of `peers`, so the "disconnect" from the
    # proxy finds it and runs __doClose(3000, "Closed", root) on it again.
    ["peer", "closing", 3],
    ["peer", "close", 3, 3000, "Closed"],
    ["root", "disconnect", 1, "peer", 3],
    # The root closes with no peer left: onclose runs __doClose(3000, "Closed").
    ["root", "closing", 3],
    ["root", "close", 3, 3000, "Closed"],
]
ORIGINAL_TRACE_B = [
    ["root", "open", 1],
    ["root", "connect", 1, "peer", 0],
    ["peer", "open", 1],
    ["root", "message", 1, "from A"],
    ["peer", "message", 1, "direct from A"],
    # B closes while A is its peer: onclose runs __doClose on each peer, then on the root;
    # all state changes come before all dispatches, each peer's "close" and the root's
    # "disconnect" for it come before the root's "close".
    ["peer", "closing", 3],
    ["root", "closing", 3],
    ["peer", "close", 3, 3000, "Closed"],
    ["root", "disconnect", 3, "peer", 3],
    ["root", "close", 3, 3000, "Closed"],
]


def serve_pages(host):
    """A plain web server for tests/browser on the host's loopback: the pages' own origin."""
    host.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "8765",
                "--directory", HERE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = "import socket; socket.create_connection(('127.0.0.1', 8765), 1)"
    wait_for(lambda: host.run([sys.executable, "-c", probe], timeout=5).returncode == 0, 10,
             f"the page server on {host.name}", interval=0.1)


def test_polyfill_event_trace_is_the_originals(hosts, host_proxy):
    why = missing()
    if why:
        pytest.skip(why)
    a, b = hosts(2)
    proxies = [host_proxy(h) for h in (a, b)]
    for h in (a, b):
        serve_pages(h)
    # '+' and '=' as in the base64 names the original recommends for private channels.
    channel = "trace+Test=1"
    page_a, page_b = Browser(a), Browser(b)
    try:
        page_a.call("goto", url="http://127.0.0.1:8765/trace.html?protocol=chat&channel="
                    + channel.replace("+", "%2B"))
        page_a.wait("trace.length >= 1")
        page_b.call("goto", url="http://127.0.0.1:8765/trace.html?channel="
                    + channel.replace("+", "%2B"))
        for p in (page_a, page_b):
            p.wait("trace.some(e => e[0] === 'peer' && e[1] === 'open')", timeout=40)
        id_a, id_b = page_a.call("eval", js="nws.id"), page_b.call("eval", js="nws.id")
        assert len(id_a) == 16 and len(id_b) == 16 and id_a != id_b

        # The attributes, with the original's meaning (protocol: what the proxy echoed).
        attrs = page_a.call("eval", js="""(() => { const p = nws.peers[0]; return {
            url: nws.url, socket: nws.socket instanceof WebSocket, parent: nws.parent === undefined,
            protocol: nws.protocol, extensions: typeof nws.extensions, binaryType: nws.binaryType,
            peers: nws.peers.length, peerId: p.id, peerUrl: p.url, peerParent: p.parent === nws,
            peerSocket: p.socket === nws.socket, peerProtocol: p.protocol,
            peerBinaryType: p.binaryType, byId: nws.peer(p.id) === p, order: order }; })()""")
        assert attrs == {"url": "#", "socket": True, "parent": True, "protocol": "chat",
                         "extensions": "string", "binaryType": "blob", "peers": 1,
                         "peerId": id_b, "peerUrl": "#", "peerParent": True,
                         "peerSocket": True, "peerProtocol": "chat",
                         "peerBinaryType": "blob", "byId": True,
                         "order": ["listener", "handler"]}
        # Names as the original's pattern: no '*', no space, 1 to 255 characters.
        for bad in ["a*b", "a b", "", "x" * 256]:
            err = page_a.call("eval", js=f"""(() => {{ try {{ new NetworkWebSocket({bad!r});
                return 'accepted'; }} catch (e) {{ return e.name; }} }})()""")
            assert err == "SyntaxError", bad

        # Broadcasts both ways (a JSON value arrives as its JSON text), then bytes: nws's
        # addition, with their sender.
        page_a.call("eval", js="nws.send('from A'), true")
        page_b.wait("trace.some(e => e[1] === 'message' && e[3] === 'from A')")
        page_b.call("eval", js="nws.send('from B'), true")
        page_a.wait("trace.some(e => e[1] === 'message' && e[3] === 'from B')")
        page_b.call("eval", js="nws.send({n: 1}), true")
        page_a.wait("trace.some(e => e[1] === 'message' && e[3] === '{\"n\":1}')")
        page_b.call("eval", js="nws.send(new Uint8Array([1, 2, 3])), true")
        page_a.wait("trace.some(e => e[3] === 'bytes:3')")
        # Direct messages both ways.
        page_a.call("eval", js="nws.peers[0].send('direct from A'), true")
        page_b.wait("trace.some(e => e[0] === 'peer' && e[3] === 'direct from A')")
        page_b.call("eval", js="nws.peers[0].send('direct from B'), true")
        page_a.wait("trace.some(e => e[0] === 'peer' && e[3] === 'direct from B')")

        # peer.close() on A: nothing is dispatched before the page's code returns.
        fired = page_a.call("eval", js="""(() => { const n = trace.length;
            const p = nws.peers[0]; p.close(); return trace.length - n; })()""")
        assert fired == 0
        page_a.wait("trace.filter(e => e[1] === 'disconnect').length === 1")
        # The remote page leaves.
        page_b.call("eval", js="nws.close(), true")
        page_b.wait("trace.some(e => e[0] === 'root' && e[1] === 'close')")
        page_a.wait("trace.filter(e => e[1] === 'disconnect').length === 2", timeout=30)
        # What the proxy answers to mistakes is a warning, never an "error" event.
        page_a.call("eval", js=f"""nws.send(), nws.socket.send(JSON.stringify(
            {{action: 'message', target: '{id_b}', data: 'too late'}})), true""")
        warnings = page_a.wait("warnings.length === 2 && warnings")
        assert [w["code"] for w in warnings] == [400, 404]
        # The root closes.
        page_a.call("eval", js="nws.close(), true")
        page_a.wait("trace.some(e => e[0] === 'root' && e[1] === 'close')")

        trace_a = page_a.call("eval", js="trace")
        trace_b = page_b.call("eval", js="trace")
        senders_a = page_a.call("eval", js="senders")
        close_a = page_a.call("eval", js="[nws.readyState, nws.peers.length]")
        print("trace A:\n" + "\n".join(json.dumps(e) for e in trace_a))
        print("trace B:\n" + "\n".join(json.dumps(e) for e in trace_b))
        assert ["root", "message", 1, "bytes:3"] in trace_a
        assert trace_a[:trace_a.index(["root", "message", 1, "bytes:3"])] == \
            ORIGINAL_TRACE_A[:5]
        assert [e for e in trace_a if e[-1] != "bytes:3"] == ORIGINAL_TRACE_A
        assert trace_b == ORIGINAL_TRACE_B
        assert not [e for e in trace_a + trace_b if e[1] == "error"]
        # senderId on every message (nws's addition): B's id, bytes included.
        assert senders_a == [id_b] * 4
        assert close_a == [3, 0]
    except Exception:
        for h, p in zip((a, b), proxies):
            print(f"--- {h.name}\n{p.stderr()[-3000:]}")
        raise
    finally:
        page_a.close()
        page_b.close()

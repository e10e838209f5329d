"""Browser test: Debian's headless Chromium (npm playwright-core) on two test hosts.

Host A opens a page of another origin (served on 127.0.0.1:8765 in A) that uses
/nws.js from A's nws-proxy; host B opens B's console at http://localhost:9009/. They see
each other connect, exchange a broadcast each way and a direct message each way, and the
console is photographed into tests/artifacts/."""
import json
import os
import select
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from hosts import wait_for  # noqa: E402

CHANNEL = "browsertest"


def missing():
    if not shutil.which("node"):
        return "browser tests need node (make deps)"
    if not os.path.exists(os.environ.get("CHROMIUM", "/usr/bin/chromium")):
        return "browser tests need /usr/bin/chromium (make deps)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        return "browser tests need playwright-core (make deps runs npm ci in tests/browser)"
    return None


class Browser:
    """driver.js inside a host: call(cmd, **args) returns the command's value."""

    def __init__(self, host):
        self.host = host
        self.proc = host.popen(["node", os.path.join(HERE, "driver.js")], cwd=HERE,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               bufsize=1)
        self.buf = ""
        self.n = 0
        assert self._line(60)["ready"]

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while "\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"browser on {self.host.name} did not answer")
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20).decode()
                if not chunk:
                    raise EOFError(f"browser on {self.host.name} exited")
                self.buf += chunk
        line, self.buf = self.buf.split("\n", 1)
        return json.loads(line)

    def call(self, cmd, timeout=30, **args):
        self.n += 1
        self.proc.stdin.write(json.dumps({"id": self.n, "cmd": cmd, **args}) + "\n")
        r = self._line(timeout)
        if "error" in r:
            raise AssertionError(f"{cmd} {args} on {self.host.name}: {r['error']}\n"
                                 + "\n".join(r.get("logs", [])))
        return r["ok"]

    def wait(self, js, timeout=20):
        return self.call("wait", timeout=timeout + 10, js=js, ms=int(timeout * 1000))

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(15)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()


def start_proxy(host, binary):
    err = open(os.path.join(host.dir, "proxy.err"), "ab")
    proc = host.popen([binary, "-v"], stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    probe = "import socket; socket.create_connection(('127.0.0.1', 9009), 1)"

    def up():
        if proc.poll() is not None:
            raise RuntimeError(open(os.path.join(host.dir, "proxy.err")).read())
        return host.run([sys.executable, "-c", probe], timeout=5).returncode == 0
    wait_for(up, 10, f"nws-proxy on {host.name}", interval=0.1)
    return proc


def test_page_and_console_on_two_hosts(hosts, nws_bin):
    why = missing()
    if why:
        pytest.skip(why)
    a, b = hosts(2)
    for h in (a, b):
        start_proxy(h, nws_bin("nws-proxy"))
    # The page's own origin: a plain web server on A's loopback, not the proxy.
    a.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "8765",
             "--directory", HERE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = "import socket; socket.create_connection(('127.0.0.1', 8765), 1)"
    wait_for(lambda: a.run([sys.executable, "-c", probe], timeout=5).returncode == 0, 10,
             "the page server on A", interval=0.1)
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
        for h in (a, b):
            print(f"--- {h.name}\n" + open(os.path.join(h.dir, "proxy.err"),
                                          errors="replace").read()[-3000:])
        raise
    finally:
        page.close()
        console.close()

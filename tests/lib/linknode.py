"""An nws-link process driven by a test: frames written to its stdin, every frame it
writes collected by a thread, stderr kept for assertions on what it logged.

    a = LinkNode(bin, ["chat"], host=h)       # in a test host (or host=None: loopback)
    a.send(action="connect", channel="chat", target="aaaa")
    a.wait(lambda fs: [f for f in fs if f["action"] == "linked"], 10, "a link")
"""
import json
import os
import threading
import time

from hosts import wait_for
from proc import SANITIZER, Proc


class LinkNode(Proc):
    live = []   # every node started, for sanitizer_reports()

    def __init__(self, binary, channels, host=None, listen=None, args=(), read_stdout=True,
                 **kw):
        addr = listen or (f"{host.addr}:0" if host else "127.0.0.1:0")
        self.frames = []
        self.wlock = threading.Lock()
        super().__init__([binary, "-v", "--listen", addr, *args, *channels], host=host,
                         read_stdout=read_stdout, **kw)
        LinkNode.live.append(self)

    def _out_line(self, line):
        f = json.loads(line)
        with self.lock:
            self.frames.append(f)

    def snapshot(self):
        with self.lock:
            return list(self.frames)

    def errors(self):
        return self.stderr().split("\n")[:-1]

    def of(self, action, **match):
        return [f for f in self.snapshot() if f.get("action") == action and
                all(f.get(k) == v for k, v in match.items())]

    def wait(self, pred, timeout, what):
        def check():
            if self.proc.poll() is not None and not pred(self.snapshot()):
                raise RuntimeError(f"nws-link exited ({self.proc.returncode}) while waiting "
                                   f"for {what}: {self.errors()[-5:]}")
            return pred(self.snapshot())
        return wait_for(check, timeout, what, interval=0.02)

    def wait_action(self, action, timeout=10, count=1, **match):
        return self.wait(lambda fs: len([f for f in fs if f.get("action") == action and all(
            f.get(k) == v for k, v in match.items())]) >= count and
            [f for f in fs if f.get("action") == action and
             all(f.get(k) == v for k, v in match.items())], timeout,
            f"{count} {action} {match}")

    def send(self, **frame):
        self.write_lines([json.dumps(frame)])

    def write_lines(self, lines):
        data = ("\n".join(lines) + "\n").encode()
        with self.wlock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def listening(self, channel):
        return self.wait_action("listening", channel=channel)[0]

    def found(self, channel, address=None, port=None):
        """A found frame that points at this node's listener for channel."""
        ls = self.listening(channel)
        return {"action": "found", "channel": channel, "instance": os.urandom(8).hex(),
                "host": "test", "address": address or (self.host.addr if self.host
                                                        else "127.0.0.1"),
                "port": port or ls["port"],
                "interface": self.host.iface if self.host else "lo"}

    def close_stdin(self):
        with self.wlock:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def sanitizer_reports():
    """Stops every node started so far; returns the sanitizer reports they printed."""
    reports = []
    for n in LinkNode.live:
        n.stop()
        n.join()
        reports += [e for e in n.errors() if any(s in e for s in SANITIZER)]
    LinkNode.live = []
    return reports


def link_pair(a, b, channel):
    """Points a at b and b at a with found frames."""
    a.send(**b.found(channel))
    b.send(**a.found(channel))


def settle(pred, timeout, what):
    return wait_for(pred, timeout, what, interval=0.05)


def now():
    return time.monotonic()

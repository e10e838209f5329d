"""One channel over many test hosts: an `nws-pipe --json -vv` per host, every line of its
stdout (frames) and stderr (what its stages log) kept with the time it came, so a test can
wait for the full mesh and a benchmark can say where the time went.

    pipes = start(hosts, "/path/nws-pipe", "chat")
    t = wait_mesh(pipes, timeout=120)        # the time the last host saw its last peer
    phases(pipes)                            # when each stage got how far, per host
    stop(pipes)
"""
import subprocess
import time

from hosts import wait_for
from proc import Proc, json_or_none


class MeshPipe(Proc):
    def __init__(self, host, pipe_bin, channel):
        self.t_start = time.monotonic()
        self.frames = []    # (time, frame)
        self.log = []       # (time, line)
        super().__init__([pipe_bin, "--json", "-vv", channel], host=host)
        self.p = self.proc

    def _out_line(self, line):
        f = json_or_none(line)
        if f is not None:
            with self.lock:
                self.frames.append((time.monotonic(), f))

    def _err_line(self, line):
        with self.lock:
            self.log.append((time.monotonic(), line.decode(errors="replace").rstrip()))

    def peers(self):
        """Distinct peers this host was told of (connect), and when it had them all."""
        with self.lock:
            seen = {}
            for t, f in self.frames:
                if f.get("action") == "connect" and f.get("target") not in seen:
                    seen[f["target"]] = t
            return seen

    def of(self, action):
        with self.lock:
            return [f for _, f in self.frames if f.get("action") == action]

    def first_log(self, text):
        with self.lock:
            for t, line in self.log:
                if text in line:
                    return t
        return None

    def count_log(self, text):
        with self.lock:
            return sum(1 for _, line in self.log if text in line)


def start(hosts, pipe_bin, channel):
    return [MeshPipe(h, pipe_bin, channel) for h in hosts]


def wait_mesh(pipes, timeout):
    """Waits until every pipe has seen a connect from each other one; returns the time the
    last of those came."""
    n = len(pipes)

    def full():
        for p in pipes:
            if p.p.poll() is not None:
                raise RuntimeError(f"nws-pipe on {p.host} exited: {p.log[-5:]}")
        ps = [p.peers() for p in pipes]
        if all(len(s) >= n - 1 for s in ps):
            return max(max(s.values()) for s in ps)
        return None
    return wait_for(full, timeout, f"a full mesh of {n} hosts", interval=0.1)


def phases(pipes):
    """Per host, seconds after the last nws-pipe started: its channel published
    (nws-advertise logged the instance), the last matching record nws-browse resolved,
    its first and last link up; and how many dials nws-link made and how many links it
    refused because it had not opened the channel yet (its key still deriving)."""
    t0 = max(p.t_start for p in pipes)
    out = []
    for p in pipes:
        links = [t for t, line in p.log if "nws-link: linked to node" in line]
        found = [t for t, line in p.log if "nws-browse: found" in line and
                 ": 0 match" not in line]
        out.append({
            "advertised": (p.first_log("advertised instance") or t0) - t0,
            "first_link": (min(links) - t0) if links else None,
            "last_link": (max(links) - t0) if links else None,
            "last_found": (max(found) - t0) if found else None,
            "dials": p.count_log("nws-link: dialling"),
            "refused_early": p.count_log("opens no channel open here"),
            "links": len(links),
        })
    return out


def stop(pipes):
    for p in pipes:
        if p.p.poll() is None:
            p.p.terminate()
    for p in pipes:
        try:
            p.p.wait(10)
        except subprocess.TimeoutExpired:
            p.p.kill()
            p.p.wait()

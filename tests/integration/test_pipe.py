"""nws-pipe (issue 5): a channel in a shell pipe, on test hosts with avahi.

Each nws-pipe runs its own browse | link | advertise pipeline inside its host. Every wait
polls with a deadline; nothing asserts speed (tests/bench/bench_pipe.py measures it)."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from hosts import wait_for
from proc import Proc, assert_no_sanitizer, wakeups

_started = []


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Every nws-pipe of a test (and the stages whose stderr it shares) ends clean."""
    del _started[:]
    yield
    for p in _started:
        p.stop()
        err = p.stderr()
        assert_no_sanitizer(err)


def wait(pred, timeout, what):
    """wait_for, failing with the stderr of every nws-pipe of the test as it is then."""
    try:
        return wait_for(pred, timeout, what)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n" + "\n".join(
            f"--- pipe {i} stdout {p.lines()[-5:] if not p.raw else len(p.out)}\n{p.stderr()}"
            for i, p in enumerate(_started))) from None


class Pipe(Proc):
    """An nws-pipe process in a host; stdout collected by a thread."""

    def __init__(self, host, binary, args, stdin=subprocess.PIPE, raw=False, env=None):
        """host None: run here, with env added to the environment."""
        self.raw = raw
        super().__init__([binary, *args], host=host, env=env, stdin=stdin)
        _started.append(self)

    def frames(self):
        return [json.loads(line) for line in self.lines()]

    def wait_frame(self, timeout=20, **match):
        def find():
            for f in self.frames():
                if all(f.get(k) == v for k, v in match.items()):
                    return f
            return None
        return wait(find, timeout, f"a frame {match}")


@pytest.fixture
def pipe_bin(nws_bin):
    for tool in ("nws-browse", "nws-link", "nws-advertise"):
        nws_bin(tool)   # skips unless the whole pipeline is built
    return nws_bin("nws-pipe")


def run_pipe(host, pipe_bin, args, data=b"", timeout=60):
    p = host.run([pipe_bin, *args], input=data, timeout=timeout)
    err = p.stderr.decode(errors="replace")
    assert_no_sanitizer(err)
    return p


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except FileNotFoundError:
        return ""


def stage(pipe, name):
    for c in children(pipe.proc.pid):
        if os.path.basename(cmdline(c)) == name:
            return c
    return None


def test_thousand_lines_in_order(hosts, pipe_bin):
    a, b = hosts(2)
    recv = Pipe(b, pipe_bin, ["logs"])
    try:
        data = "".join(f"{i}\n" for i in range(1, 1001)).encode()
        p = run_pipe(a, pipe_bin, ["-w", "1", "-1", "logs"], data)
        assert p.returncode == 0, p.stderr
        wait(lambda: len(recv.lines()) >= 1000, 20, "1000 lines on B")
        assert recv.lines() == [str(i) for i in range(1, 1001)]
    finally:
        recv.stop()


def test_last_line_without_newline_and_crlf(hosts, pipe_bin):
    a, b = hosts(2)
    recv = Pipe(b, pipe_bin, ["logs"])
    try:
        p = run_pipe(a, pipe_bin, ["-w", "1", "-1", "logs"], b"one\r\ntwo\n\nlast")
        assert p.returncode == 0, p.stderr
        wait(lambda: len(recv.lines()) >= 4, 20, "4 lines on B")
        assert recv.lines() == ["one", "two", "", "last"]
    finally:
        recv.stop()


def test_three_hosts_each_line_exactly_once(hosts, pipe_bin):
    hs = hosts(3)
    pipes = [Pipe(h, pipe_bin, ["-v", "-w", "2", "chat"]) for h in hs]
    try:
        for i, p in enumerate(pipes):
            # Read only once both others are present (-w 2): nothing is sent to no one.
            p.write(f"hello from {i}\nend from {i}\n")
        for i, p in enumerate(pipes):
            others = [j for j in range(3) if j != i]
            wait(lambda: all(f"end from {j}" in p.lines() for j in others), 30,
                 f"both lines on host {i}")
        for i, p in enumerate(pipes):
            got = p.lines()
            for j in range(3):
                want = 0 if j == i else 1
                assert got.count(f"hello from {j}") == want, (i, got)
                assert got.count(f"end from {j}") == want, (i, got)
    finally:
        for p in pipes:
            p.stop()


def test_json_connect_events_and_direct_message(hosts, pipe_bin):
    hs = hosts(3)
    pipes = [Pipe(h, pipe_bin, ["--json", "x-json"]) for h in hs]
    try:
        ids = []
        for p in pipes:
            p.send(action="status")
            ids.append(p.wait_frame(action="status")["source"])
        assert len(set(ids)) == 3 and all(len(i) == 16 for i in ids)
        for i, p in enumerate(pipes):
            for j in range(3):
                if j != i:
                    f = p.wait_frame(timeout=30, action="connect", target=ids[j])
                    assert f["source"] == ids[i]
        a, b, c = pipes
        a.send(action="message", target=ids[1], data="for b only")
        a.send(action="broadcast", data={"n": 1})
        f = b.wait_frame(action="message")
        assert f == {"action": "message", "source": ids[0], "target": ids[1],
                     "data": "for b only"}
        # A's frames reach C in order: the broadcast arriving proves the message did not.
        f = c.wait_frame(action="broadcast")
        assert f == {"action": "broadcast", "source": ids[0], "data": {"n": 1}}
        assert b.wait_frame(action="broadcast")["data"] == {"n": 1}
        assert not [f for f in c.frames() if f["action"] == "message"]
        assert not [f for f in a.frames() if f["action"] in ("message", "broadcast")]
        # A malformed line gets an error object; the pipe goes on.
        a.write("not json\n")
        assert a.wait_frame(action="error")["code"] == 1
        assert a.proc.poll() is None
    finally:
        for p in pipes:
            p.stop()


def test_raw_one_mebibyte_intact(hosts, pipe_bin):
    a, b = hosts(2)
    blob = os.urandom(1 << 20)
    recv = Pipe(b, pipe_bin, ["-v", "--raw", "bulk"], raw=True)
    try:
        p = run_pipe(a, pipe_bin, ["-v", "--raw", "-w", "1", "-1", "bulk"], blob)
        assert p.returncode == 0, p.stderr

        def got():
            with recv.lock:
                return len(recv.out) >= len(blob)
        wait(got, 30, f"1 MiB on B (sender: {p.stderr.decode()})")
        with recv.lock:
            assert bytes(recv.out) == blob
    finally:
        recv.stop()


def test_to_peer_sends_direct_messages(hosts, pipe_bin):
    a, b = hosts(2)
    recv = Pipe(b, pipe_bin, ["--json", "direct"])
    try:
        recv.send(action="status")
        bid = recv.wait_frame(action="status")["source"]
        p = run_pipe(a, pipe_bin, ["--to", bid, "-t", "30", "-1", "direct"], b"psst\n")
        assert p.returncode == 0, p.stderr
        f = recv.wait_frame(action="message")
        assert f["target"] == bid and f["data"] == "psst"
    finally:
        recv.stop()


def test_no_peer_times_out_with_1(hosts, pipe_bin):
    (a,) = hosts(1)
    p = run_pipe(a, pipe_bin, ["-w", "1", "-t", "2", "nobody-here"], timeout=15)
    assert p.returncode == 1, p.stderr
    assert b"peers joined within" in p.stderr


def test_no_avahi_with_wait_exits_69(hosts, pipe_bin):
    (a,) = hosts(1, avahi=False)
    p = run_pipe(a, pipe_bin, ["-w", "1", "x"], timeout=30)
    assert p.returncode == 69, p.stderr
    assert b"avahi" in p.stderr


def test_usage_errors_exit_2(hosts, pipe_bin):
    (a,) = hosts(1, avahi=False)
    for args in ([], ["a", "b"], ["-w", "x", "c"], ["--bogus", "c"], ["bad/name"]):
        p = run_pipe(a, pipe_bin, args, timeout=10)
        assert p.returncode == 2, (args, p.stderr)
    # The channel from the environment is taken: no usage error, but the 1 s timeout
    # or, whichever comes first, the missing avahi-daemon (69).
    p = a.run([pipe_bin, "-w", "1", "-t", "1"], env={"NWS_CHANNEL": "from-env"},
              timeout=15)
    assert p.returncode in (1, 69), p.stderr


def test_killed_link_is_restarted_and_lines_flow_again(hosts, pipe_bin):
    a, b = hosts(2)
    recv = Pipe(b, pipe_bin, ["logs"])
    send = Pipe(a, pipe_bin, ["-w", "1", "logs"])
    stop = threading.Event()
    sent = [0]

    def feed():
        # At most 60 s of one line every 20 ms.
        for i in range(3000):
            if stop.is_set():
                return
            try:
                send.write(f"tick {i}\n")
            except (BrokenPipeError, ValueError):
                return
            sent[0] = i
            time.sleep(0.02)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        wait(lambda: any(line.startswith("tick") for line in recv.lines()), 30,
                 "first ticks on B")
        link = wait(lambda: stage(send, "nws-link"), 5, "nws-link of A's pipe")
        os.kill(link, signal.SIGKILL)
        after = sent[0]
        wait(lambda: "nws-link was killed" in send.stderr(), 10, "the restart notice")
        wait(lambda: any(int(line.split()[1]) > after + 5
                             for line in recv.lines() if line.startswith("tick")), 10,
                 "ticks after the restart")
        new = stage(send, "nws-link")
        assert new and new != link
        assert send.proc.poll() is None
    finally:
        stop.set()
        t.join(5)
        send.stop()
        recv.stop()
    # Clean shutdown on SIGTERM: the exit code is 0 and no stage outlives the pipe.
    assert send.proc.returncode == 0, send.stderr()
    assert not children(send.proc.pid)


def test_via_proxy_same_output(hosts, pipe_bin, nws_bin):
    a, b = hosts(2)
    proxy = Pipe(a, nws_bin("nws-proxy"), ["-v"], stdin=subprocess.DEVNULL)
    wait(lambda: "serving" in proxy.stderr(), 10, "nws-proxy serving")
    recv = Pipe(b, pipe_bin, ["viaproxy"])
    back = send = None
    try:
        data = "".join(f"line {i}\n" for i in range(100)).encode()
        p = run_pipe(a, pipe_bin, ["--via-proxy", "-w", "1", "-1", "viaproxy"], data)
        assert p.returncode == 0, p.stderr
        wait(lambda: len(recv.lines()) >= 100, 20,
                 "100 lines on B")
        assert recv.lines() == [f"line {i}" for i in range(100)]
        # And back: B's line comes out of the proxied pipe as a line too.
        back = Pipe(a, pipe_bin, ["--via-proxy", "ws://localhost:9009", "viaproxy"])
        send = Pipe(b, pipe_bin, ["-w", "2", "viaproxy"])
        send.write("from b\n")
        wait(lambda: back.lines() == ["from b"], 20, "B's line through the proxy")
    finally:
        for q in (back, send, recv, proxy):
            if q:
                q.stop()
    # No proxy listening any more: 69, and the message says what to do.
    p = run_pipe(a, pipe_bin, ["--via-proxy", "-w", "1", "viaproxy"], timeout=15)
    assert p.returncode == 69, p.stderr
    assert b"is nws-proxy running?" in p.stderr


def test_restart_replays_and_remote_peers_come_back(hosts, pipe_bin):
    a, b = hosts(2)
    pa = Pipe(a, pipe_bin, ["--json", "comeback"])
    pb = Pipe(b, pipe_bin, ["--json", "comeback"])
    ids = []
    for p in (pa, pb):
        p.send(action="status")
        ids.append(p.wait_frame(action="status")["source"])
    pb.wait_frame(timeout=30, action="connect", target=ids[0])
    pa.wait_frame(timeout=30, action="connect", target=ids[1])
    os.kill(wait(lambda: stage(pb, "nws-link"), 5, "B's nws-link"), signal.SIGKILL)

    def events(p, peer):
        return [f["action"] for f in p.frames()
                if f["action"] in ("connect", "disconnect") and f.get("target") == peer]
    # B is told A left (its pipeline died), then A is back; A sees B leave and come back,
    # because B's new pipeline replayed B's connect.
    wait(lambda: events(pb, ids[0]) == ["connect", "disconnect", "connect"], 30,
         "A gone and back on B")
    wait(lambda: events(pa, ids[1])[-1:] == ["connect"] and len(events(pa, ids[1])) >= 3,
         45, "B gone and back on A")
    pa.send(action="broadcast", data="still here")
    assert pb.wait_frame(action="broadcast")["data"] == "still here"


def test_dying_stage_is_restarted_with_backoff(tmp_path, pipe_bin):
    # Stand-in stages: browse and advertise pass frames on; link dies at once, always.
    for name, body in (("nws-browse", "exec cat"), ("nws-advertise", "exec cat"),
                       ("nws-link", "exit 3")):
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    p = subprocess.Popen([pipe_bin, "x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ,
                                                      "NWS_LIBEXEC": str(tmp_path)})
    restarts = []   # when each "restarting the pipeline" line came
    lines = []

    def read_err():
        for line in p.stderr:
            lines.append(line.decode())
            if b"restarting the pipeline" in line:
                restarts.append(time.monotonic())
    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(restarts) >= 4, 30, "four restarts")
        assert p.poll() is None, "nws-pipe must outlive its stages"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
        reader.join(timeout=10)
    err = "".join(lines)
    # Each restart waits its backoff (0.25 s doubling) after the death before it, so the
    # gaps between reports are at least 0.25, 0.5 and 1 s; a tight loop makes them ~0.
    gaps = [b - a for a, b in zip(restarts, restarts[1:4])]
    assert all(g >= 0.25 * 2 ** i - 0.02 for i, g in enumerate(gaps)), (gaps, err)
    assert "nws-link exited with status 3" in err
    assert p.returncode == 0, err


def test_idle_pipe_does_not_wake(tmp_path, pipe_bin):
    # Stand-in stages that pass frames on and otherwise wait: nothing is due, so the loop
    # must sleep. Supervising the stages by polling (waitpid every 100 ms) woke it ten
    # times a second; their pidfds wake it only when one exits.
    for name in ("nws-browse", "nws-link", "nws-advertise"):
        path = tmp_path / name
        path.write_text("#!/bin/sh\nexec cat\n")
        path.chmod(0o755)
    p = subprocess.Popen([pipe_bin, "x"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ,
                                                      "NWS_LIBEXEC": str(tmp_path)})
    try:
        wait_for(lambda: len(children(p.pid)) == 3 and all(
            os.path.basename(cmdline(c)) == "cat" for c in children(p.pid)), 10,
            "three stand-in stages")
        # libwebsockets 4.1 itself polls with a timeout of at most a second: a 2 s window
        # holds up to 3 of its wake-ups, and 20 of a 100 ms tick's.
        def quiet_window():
            before = wakeups(p.pid)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                time.sleep(0.1)   # the window observed, not a wait for a condition
            return wakeups(p.pid) - before <= 3
        wait_for(quiet_window, 20, "2 s in which nws-pipe woke at most 3 times")
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    assert p.returncode == 0, p.stderr.read().decode()


STANDIN_LINK = '''#!/usr/bin/python3
# Stand-in nws-link: passes frames on and logs what it was sent, one JSON line each.
# The pipeline sends the peers' frames on fd 3 and reads the remote ones on fd 4
# (--data-fds 3,4); stdin only repeats open and close.
import json, os, sys, cbor2
log = open(os.path.join(os.path.dirname(sys.argv[0]), f"link.{os.getpid()}.log"), "a")
dec = cbor2.CBORDecoder(os.fdopen(3, "rb"))
out = os.fdopen(4, "wb")
while True:
    try:
        f = dec.decode()
    except Exception:
        break
    log.write(json.dumps({k: v for k, v in f.items() if isinstance(v, (str, int))}) + "\\n")
    log.flush()
    out.write(cbor2.dumps(f))
    out.flush()
'''


def test_restart_replays_state_to_the_new_link(tmp_path, pipe_bin):
    # No test hosts needed: stand-in stages show what a new pipeline is told.
    for name, body in (("nws-browse", "#!/bin/sh\nexec cat\n"),
                       ("nws-advertise", "#!/bin/sh\nexec cat\n"),
                       ("nws-link", STANDIN_LINK)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    p = Pipe(None, pipe_bin, ["--json", "replayed"], env={"NWS_LIBEXEC": str(tmp_path)})
    p.send(action="status")
    me = p.wait_frame(action="status")["source"]

    def logs():
        out = {}
        for f in tmp_path.glob("link.*.log"):
            out[int(f.name.split(".")[1])] = [json.loads(line) for line in
                                              f.read_text().splitlines()]
        return out
    first = wait(lambda: list(logs()) if logs() else None, 10, "the first link's log")[0]
    wait(lambda: {"action": "connect", "channel": "replayed", "target": me}
         in logs()[first], 10, "our connect at the first link")
    os.kill(first, signal.SIGKILL)
    wait(lambda: "nws-link was killed" in p.stderr(), 10, "the restart notice")
    second = wait(lambda: [k for k in logs() if k != first], 10, "a second link")[0]
    wait(lambda: len(logs()[second]) >= 2, 10, "the replay")
    got = logs()[second]
    assert got[:2] == [{"action": "open", "channel": "replayed"},
                       {"action": "connect", "channel": "replayed", "target": me}], got
    p.stop()
    assert p.proc.returncode == 0, p.stderr()


ECHO_LINK = '''#!/usr/bin/python3
# Stand-in nws-link: a remote peer that echoes every broadcast, slower than nws-pipe.
# Peers' frames in on fd 3, remote ones out on fd 4 (--data-fds 3,4).
import os, cbor2
dec = cbor2.CBORDecoder(os.fdopen(3, "rb"))
out = os.fdopen(4, "wb")
while True:
    try:
        f = dec.decode()
    except Exception:
        break
    if f.get("action") == "connect":
        out.write(cbor2.dumps({"action": "connect", "channel": f["channel"],
                               "target": "feedfacefeedface"}))
    if f.get("action") == "broadcast":
        f["source"] = "feedfacefeedface"
    out.write(cbor2.dumps(f))
    out.flush()
'''


def test_backpressure_loses_nothing(tmp_path, pipe_bin):
    # A head queue of ~1 MiB (--max-frame 4k) and a slow link: nws-pipe must pause
    # stdin, not drop. 7-byte lines become ~60-byte frames, so one read overfills it.
    for name, body in (("nws-browse", "#!/bin/sh\nexec cat\n"),
                       ("nws-advertise", "#!/bin/sh\nexec cat\n"), ("nws-link", ECHO_LINK)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    data = "".join(f"{i}\n" for i in range(200000)).encode()
    p = subprocess.run([pipe_bin, "--max-frame", "4096", "-w", "1", "-1", "x"], input=data,
                       capture_output=True, timeout=120,
                       env={**os.environ, "NWS_LIBEXEC": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert b"dropped" not in p.stderr
    assert p.stdout == data

"""nws-pipe transfers end (issue 13): a sender's end of input reaches its peers as an
`end` frame, routed like a broadcast, and a receiver with -1 exits 0 once it has written
everything the first sender sent. Waits poll with deadlines; nothing asserts speed."""
import hashlib
import json
import os
import re
import subprocess

import pytest

from hosts import wait_for
from proc import assert_no_sanitizer



@pytest.fixture
def pipe_bin(nws_bin):
    for tool in ("nws-browse", "nws-link", "nws-advertise"):
        nws_bin(tool)
    return nws_bin("nws-pipe")


def finish(proc, what, timeout=60):
    """proc's (stdout, stderr), failing if it does not exit by itself in time."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not exit by itself: {err.decode(errors='replace')}")
    assert_no_sanitizer(err.decode(errors="replace"))
    return out, err.decode(errors="replace")


def test_raw_three_mebibytes_receiver_exits_by_itself(hosts, pipe_bin, tmp_path):
    a, b = hosts(2)
    blob = os.urandom(3 << 20)
    src = tmp_path / "blob"
    src.write_bytes(blob)
    recv = b.popen([pipe_bin, "--no-proxy", "--raw", "--progress", "-1", "drop-end"],
                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with open(src, "rb") as f:
        send = a.popen([pipe_bin, "--no-proxy", "--raw", "-w", "1", "-t", "30", "-1",
                        "drop-end"], stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, serr = finish(send, "the sender")
    assert send.returncode == 0, serr
    out, rerr = finish(recv, "the receiver")
    assert recv.returncode == 0, rerr
    assert len(out) == len(blob)
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(blob).hexdigest()
    # --progress: its last line holds the total and the average rate.
    assert re.search(r"\rnws-pipe: received 3\.00 MiB in [0-9.]+ s \([0-9.]+ [KMG]?i?B/s\)",
                     rerr), rerr


def test_end_through_nws_proxy_and_json_shows_it(hosts, pipe_bin, host_proxy):
    """A sender attached to nws-proxy ends a receiver on another host; a --json peer sees
    the end frame after the data, with the sender's id."""
    a, b = hosts(2)
    host_proxy(a)
    watch = b.popen([pipe_bin, "--no-proxy", "--json", "end-json"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    recv = b.popen([pipe_bin, "--no-proxy", "-1", "end-json"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        send = a.popen([pipe_bin, "--via-proxy", "-w", "2", "-t", "30", "-1", "end-json"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        send.stdin.write(b"one\ntwo\n")
        send.stdin.close()
        send.stdin = None
        _, serr = finish(send, "the sender")
        assert send.returncode == 0, serr
        out, rerr = finish(recv, "the receiver")
        assert recv.returncode == 0, rerr
        assert out == b"one\ntwo\n"
        frames = []

        def ended():
            line = watch.stdout.readline()
            if line:
                frames.append(json.loads(line))
            return any(f.get("action") == "end" for f in frames)
        wait_for(ended, 20, "the end frame on the --json peer")
        data = [f for f in frames if f["action"] == "broadcast"]
        end = frames[-1]
        assert [f["data"] for f in data] == ["one", "two"]
        assert end["source"] == data[0]["source"]
    finally:
        for p in (watch, recv):
            if p.poll() is None:
                p.terminate()
                p.wait(10)

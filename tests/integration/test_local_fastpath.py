"""Local delivery without the pipeline (issue 12; nws(7) ROUTING): a broadcast, end or
message whose receivers are all on this machine never enters the pipeline; once a remote
peer's connect has arrived, they do. No test hosts: stand-in stages (NWS_LIBEXEC) log
every frame nws-link is sent, and a stand-in nws-link announces a remote peer in channels
named remote-*."""
import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from hosts import wait_for  # noqa: E402
from nwsproxy import Proxy  # noqa: E402

T = 10
REMOTE = "feedfacefeedface"

# Reads the peers' frames where the pipeline sends them to nws-link (fd 3 of --data-fds
# 3,4; stdin only repeats open and close), consumes what the real nws-link consumes
# (logging it), passes on frames of actions it does not know (nws-pipe's sync marker),
# and announces REMOTE on fd 4 when a remote-* channel opens, as a link coming up would.
STANDIN_LINK = '''#!/usr/bin/python3
import json, os, sys, cbor2
log = open(os.path.join(os.path.dirname(sys.argv[0]), "head.log"), "a")
dec = cbor2.CBORDecoder(os.fdopen(3, "rb"))
out = os.fdopen(4, "wb")
known = {"open", "close", "connect", "disconnect", "broadcast", "message", "end"}
while True:
    try:
        f = dec.decode()
    except Exception:
        break
    log.write(json.dumps({k: v for k, v in f.items() if isinstance(v, str)}) + "\\n")
    log.flush()
    if f.get("action") not in known:
        out.write(cbor2.dumps(f))
    elif f.get("action") == "open" and f.get("channel", "").startswith("remote-"):
        out.write(cbor2.dumps({"action": "connect", "channel": f["channel"],
                               "target": "%s"}))
    out.flush()
''' % REMOTE


@pytest.fixture
def stages(tmp_path):
    for name, body in (("nws-browse", "#!/bin/sh\nexec cat\n"),
                       ("nws-advertise", "#!/bin/sh\nexec cat\n"),
                       ("nws-link", STANDIN_LINK)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    log = tmp_path / "head.log"

    def head(channel):
        """The frames of channel the stand-in link was sent so far."""
        if not log.exists():
            return []
        return [f for f in map(json.loads, log.read_text().splitlines())
                if f.get("channel") == channel]
    head.env = {**os.environ, "NWS_LIBEXEC": str(tmp_path),
                "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/nws-test"}
    return head


@pytest.fixture
def proxy(nws_bin, stages, tmp_path):
    p = Proxy(nws_bin("nws-proxy"), str(tmp_path), options=("-p", "PORT"),
              env={"NWS_LIBEXEC": str(tmp_path)})
    yield p.url
    p.stop_clean()


async def recv_until(ws, pred):
    deadline = time.monotonic() + T
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if pred(m):
            return m


async def joined(url, channel):
    ws = await websockets.connect(f"{url}/{channel}")
    await ws.send(json.dumps({"action": "status"}))
    me = (await recv_until(ws, lambda m: m["action"] == "status"))["source"]
    return ws, me


def data_frames(frames):
    return [f for f in frames if f["action"] in ("broadcast", "message", "end")]


def test_proxy_keeps_local_traffic_out_of_the_pipeline(proxy, stages):
    async def go():
        a, ida = await joined(proxy, "here")
        b, idb = await joined(proxy, "here")
        await recv_until(a, lambda m: m["action"] == "connect" and m["target"] == idb)
        # The head has the channel (its key derived) and both peers: it would be sent
        # anything routed to it from now on.
        wait_for(lambda: {"action": "connect", "channel": "here", "target": idb}
                 in stages("here"), T, "b's connect at the head")
        await a.send(json.dumps({"action": "broadcast", "data": "hi"}))
        await a.send(json.dumps({"action": "message", "target": idb, "data": "psst"}))
        await a.send(json.dumps({"action": "end"}))
        await a.send(b"\x00bytes")
        got = [await recv_until(b, lambda m: m["action"] in ("broadcast", "message", "end"))
               for _ in range(3)]
        assert [m["action"] for m in got] == ["broadcast", "message", "end"]
        assert await asyncio.wait_for(b.recv(), T) == b"\x00bytes"
        await a.close()
        # Frames reach the head in order: what a sent before leaving is there by now.
        wait_for(lambda: {"action": "disconnect", "channel": "here", "target": ida}
                 in stages("here"), T, "a's disconnect at the head")
        await b.close()
    asyncio.run(go())
    assert data_frames(stages("here")) == [], stages("here")


def test_proxy_sends_to_the_pipeline_once_a_remote_peer_is_there(proxy, stages):
    async def go():
        a, ida = await joined(proxy, "remote-x")
        await recv_until(a, lambda m: m["action"] == "connect" and m["target"] == REMOTE)
        await a.send(json.dumps({"action": "broadcast", "data": "hi"}))
        await a.send(json.dumps({"action": "message", "target": REMOTE, "data": "psst"}))
        await a.send(json.dumps({"action": "end"}))
        wait_for(lambda: len(data_frames(stages("remote-x"))) == 3, T,
                 "a's broadcast, message and end at the head")
        await a.close()
    asyncio.run(go())
    assert [(f["action"], f.get("data")) for f in data_frames(stages("remote-x"))] == \
        [("broadcast", "hi"), ("message", "psst"), ("end", None)]


def run_pipe(nws_bin, stages, channel, args):
    p = subprocess.Popen([nws_bin("nws-pipe"), "--no-proxy", *args, channel],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=stages.env)
    try:
        # Input only once the head has the channel: before, nothing is sent anyway.
        wait_for(lambda: any(f["action"] == "connect" for f in stages(channel)), T,
                 "nws-pipe's connect at the head")
        _, err = p.communicate(b"one\ntwo\n", timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    # nws-pipe sends its disconnect and close after all its data: the log is complete
    # once the stand-in has read them.
    wait_for(lambda: any(f["action"] == "close" for f in stages(channel)), T,
             "nws-pipe's close at the head")
    return data_frames(stages(channel))


def test_pipe_alone_sends_nothing_into_the_pipeline(nws_bin, stages):
    assert run_pipe(nws_bin, stages, "alone", ["--once"]) == []


def test_pipe_sends_once_a_remote_peer_is_there(nws_bin, stages):
    got = run_pipe(nws_bin, stages, "remote-y", ["--once", "-w", "1"])
    assert [(f["action"], f.get("data")) for f in got] == \
        [("broadcast", "one"), ("broadcast", "two"), ("end", None)]

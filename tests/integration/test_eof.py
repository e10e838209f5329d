"""Every tool at the end of its input, in every state it can be in then (nws-proxy, which
reads no input: at SIGTERM): it exits 0 within EXIT_SECS, with no sanitizer report on
stderr (issue 9; under make check-asan the tools are the sanitizer build).

States: no channel; deriving (Argon2id still running on the worker); listening or
advertised (keys derived, nothing linked); linked to a peer on another test host. The
states that need avahi or links run on test hosts; the others on loopback."""
import os
import subprocess
import time

import pytest

from hosts import wait_for
from proc import Proc, assert_no_sanitizer
from linknode import LinkNode, link_pair
from nwsproxy import NO_DBUS, Agent

EXIT_SECS = 2
# Argon2id runs one channel at a time: with this many queued, a tool whose input ends at
# once is still deriving then.
MANY = 4


class EofProc(Proc):
    """A tool with its stdin a pipe, its JSON-lines stdout and its stderr collected."""

    def __init__(self, argv, host=None):
        super().__init__(argv, host=host)

    def frames(self, action=None):
        return [f for f in super().frames() if action is None or f.get("action") == action]

    def wait_frame(self, action, timeout=20, **match):
        return self.wait_until(lambda: [f for f in self.frames(action)
                                        if all(f.get(k) == v for k, v in match.items())],
                               timeout, f"{action} {match}")[0]


def at_eof(p):
    p.close_stdin()
    p.clean_exit(EXIT_SECS, "the end of its input")


def node_at_eof(node):
    node.close_stdin()
    node.clean_exit(EXIT_SECS, "the end of its input")


# ---------------------------------------------------------------- nws-link

def test_link_no_channel(nws_bin):
    node = LinkNode(nws_bin("nws-link"), [])
    node_at_eof(node)


def test_link_deriving_with_found_peers(nws_bin):
    """`cat peers.jsonl | nws-link chat`: found frames, then the end, while deriving."""
    chans = [f"eof-derive-{i}" for i in range(MANY)]
    node = LinkNode(nws_bin("nws-link"), chans)
    for ch in chans:
        node.send(action="found", channel=ch, address="127.0.0.1", port=9, path="0" * 32,
                  instance="00" * 8, host="peer", interface="lo")
    assert len(node.of("listening")) < MANY
    node_at_eof(node)


def test_link_open_frame_then_end(nws_bin):
    """`echo '{"action":"open","channel":"x"}' | nws-link`"""
    node = LinkNode(nws_bin("nws-link"), [])
    node.send(action="open", channel="eof-open")
    node_at_eof(node)


def test_link_listening(nws_bin):
    node = LinkNode(nws_bin("nws-link"), ["eof-listen"])
    node.listening("eof-listen")
    node_at_eof(node)


def test_link_linked(hosts, nws_bin):
    ch = "eof-linked"
    ha, hb = hosts(2, avahi=False)
    a, b = (LinkNode(nws_bin("nws-link"), [ch], host=h) for h in (ha, hb))
    a.send(action="connect", channel=ch, target="a1")
    link_pair(a, b, ch)
    a.wait_action("linked")
    b.wait_action("connect", target="a1")
    node_at_eof(a)
    # The link was closed, not dropped: b reports a's peer gone.
    b.wait_action("disconnect", target="a1")
    b.wait_action("unlinked")
    node_at_eof(b)


# ---------------------------------------------------------------- output gone

@pytest.mark.parametrize("tool", ["nws-browse", "nws-advertise"])
def test_avahi_tools_end_when_their_reader_goes(nws_bin, tool):
    # `nws-browse chat | head -1`, or nws-link leaving a pipeline first: with nothing to
    # write, poll(2) reports the dead pipe at once and forever; the tool must end, not
    # spin. No avahi-daemon here: the tool waits for one, its input open.
    r, w = os.pipe()
    p = subprocess.Popen([nws_bin(tool)], stdin=subprocess.PIPE, stdout=w,
                         stderr=subprocess.PIPE,
                         env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": NO_DBUS})
    os.close(w)
    try:
        os.close(r)
        rc = p.wait(EXIT_SECS)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdin.close()
    err = p.stderr.read().decode()
    assert rc == 1, err
    assert_no_sanitizer(err)


# ---------------------------------------------------------------- nws-browse

@pytest.fixture(scope="module")
def net(module_hosts):
    return module_hosts(2)


def test_browse_no_channel(net, nws_bin):
    at_eof(EofProc([nws_bin("nws-browse")], host=net[0]))


def test_browse_deriving(net, nws_bin):
    p = EofProc([nws_bin("nws-browse")], host=net[0])
    for i in range(MANY):
        p.send(action="open", channel=f"eof-browse-derive-{i}")
    at_eof(p)


def test_browse_found(net, nws_bin):
    ch = "eof-browse-found"
    adv = EofProc([nws_bin("nws-advertise"), "-p", "4000", ch], host=net[1])
    adv.wait_frame("advertised")
    p = EofProc([nws_bin("nws-browse")], host=net[0])
    p.send(action="open", channel=ch)
    p.wait_frame("found", channel=ch)
    at_eof(p)
    adv.stop_clean(EXIT_SECS)


# ---------------------------------------------------------------- nws-advertise

def test_advertise_no_channel(net, nws_bin):
    at_eof(EofProc([nws_bin("nws-advertise")], host=net[0]))


def test_advertise_deriving(net, nws_bin):
    p = EofProc([nws_bin("nws-advertise")], host=net[0])
    for i in range(MANY):
        p.send(action="listening", channel=f"eof-adv-derive-{i}", port=4000 + i)
    at_eof(p)


def test_advertise_advertised(net, nws_bin):
    ch = "eof-adv-published"
    p = EofProc([nws_bin("nws-advertise")], host=net[0])
    p.send(action="listening", channel=ch, port=4000)
    p.wait_frame("advertised", channel=ch)
    at_eof(p)


# ---------------------------------------------------------------- nws-pipe -1

@pytest.fixture
def pipe_bin(nws_bin):
    for tool in ("nws-browse", "nws-link", "nws-advertise"):
        nws_bin(tool)
    return nws_bin("nws-pipe")


def sent_line(p):
    """A pipe that sent nothing is a receiver, which -1 keeps until a sender's end: this
    one sends a line, so -1 makes it exit at the end of its input."""
    p.proc.stdin.write(b"last words\n")
    p.proc.stdin.flush()
    return p


def test_pipe_once_deriving(net, pipe_bin):
    p = sent_line(EofProc([pipe_bin, "-1", "eof-pipe-derive"], host=net[0]))
    at_eof(p)


def test_pipe_once_listening(net, pipe_bin, nws_bin):
    """Keys derived and advertised (another host's nws-browse -t finds it), no peer."""
    ch = "eof-pipe-listen"
    p = EofProc([pipe_bin, "-1", ch], host=net[0])
    wait_for(lambda: net[1].run([nws_bin("nws-browse"), "-t", ch], timeout=20).returncode
             == 0, 30, "the pipe's advertisement")
    at_eof(sent_line(p))


def test_pipe_once_linked(net, pipe_bin):
    ch = "eof-pipe-linked"
    b = EofProc([pipe_bin, "--json", ch], host=net[1])
    a = EofProc([pipe_bin, "--json", "-1", ch], host=net[0])
    a.wait_frame("connect")
    a.send(action="broadcast", data="last words")
    at_eof(a)
    b.wait_frame("broadcast", data="last words")
    b.wait_frame("disconnect")
    b.close_stdin()
    b.stop_clean(EXIT_SECS)


# ---------------------------------------------------------------- nws-proxy (SIGTERM)

def test_proxy_no_client(net, host_proxy):
    host_proxy(net[0]).stop_clean(EXIT_SECS)


def test_proxy_client_deriving(net, host_proxy):
    p = host_proxy(net[0])
    agents = [Agent(net[0], f"ws://localhost:9009/eof-proxy-derive-{i}")
              for i in range(MANY)]
    p.stop_clean(EXIT_SECS)
    for a in agents:
        assert a.until(lambda m: "closed" in m)["closed"] == 1001


def test_proxy_linked(net, host_proxy):
    ch = "eof-proxy-linked"
    procs = [host_proxy(h) for h in net]
    agents = [Agent(h, f"ws://localhost:9009/{ch}") for h in net]
    ids = [a.status() for a in agents]
    agents[0].until(lambda m: m.get("action") == "connect" and m["target"] == ids[1],
                    timeout=30)
    procs[0].stop_clean(EXIT_SECS)
    m = agents[1].until(lambda m: m.get("action") == "disconnect")
    assert m["target"] == ids[0]
    procs[1].stop_clean(EXIT_SECS)
    deadline = time.monotonic() + 5
    for a in agents:
        a.close_stdin()
        a.proc.wait(max(0.1, deadline - time.monotonic()))

"""nws-link (issue 4): encrypted links between test hosts, fed `found` frames by hand.

Two and three hosts on one bridge (no avahi needed), plus loopback tests through a
tampering relay. Every wait polls with a deadline; none asserts speed."""
import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from linknode import LinkNode, link_pair, sanitizer_reports
from relay import Relay
from hosts import wait_for
from proc import exits_clean

CH = "link-test-channel"


@pytest.fixture
def link_bin(nws_bin):
    yield nws_bin("nws-link")
    # Under make check-asan a report on stderr fails the test that caused it.
    assert not sanitizer_reports()


def pair(hosts, link_bin, n=2, channel=CH):
    hs = hosts(n, avahi=False)
    nodes = [LinkNode(link_bin, [channel], host=h) for h in hs]
    return hs, nodes


def linked(node, count=1, timeout=15, **match):
    return node.wait_action("linked", timeout=timeout, count=count, **match)


def datas(node, action="broadcast", **match):
    return [f.get("data") for f in node.of(action, **match)]


def test_two_hosts_connect_broadcast_message_and_big_frame(hosts, link_bin):
    (ha, hb), (a, b) = pair(hosts, link_bin)
    a.send(action="connect", channel=CH, target="a1")
    b.send(action="connect", channel=CH, target="b1")
    link_pair(a, b, CH)
    linked(a)
    linked(b)
    a.wait_action("connect", target="b1")
    b.wait_action("connect", target="a1")
    # A peer that joins later is announced too.
    b.send(action="connect", channel=CH, target="b2")
    a.wait_action("connect", target="b2")

    # 10,000 numbered 100-byte broadcasts each way, at once.
    n = 10000

    def lines(src):
        return [f'{{"action":"broadcast","channel":"{CH}","source":"{src}","data":'
                f'"{src}-{i:08d}-{"x" * 88}"}}' for i in range(n)]
    ta = threading.Thread(target=lambda: [a.write_lines(lines("a1")[i:i + 500])
                                          for i in range(0, n, 500)])
    tb = threading.Thread(target=lambda: [b.write_lines(lines("b1")[i:i + 500])
                                          for i in range(0, n, 500)])
    ta.start()
    tb.start()
    ta.join()
    tb.join()
    got_b = b.wait(lambda fs: len([f for f in fs if f["action"] == "broadcast"]) >= n
                   and fs, 60, "10000 broadcasts at b")
    got_a = a.wait(lambda fs: len([f for f in fs if f["action"] == "broadcast"]) >= n
                   and fs, 60, "10000 broadcasts at a")
    for got, src in ((got_b, "a1"), (got_a, "b1")):
        bs = [f for f in got if f["action"] == "broadcast"]
        assert len(bs) == n
        assert all(f["source"] == src and f["channel"] == CH for f in bs)
        assert [f["data"] for f in bs] == [f'{src}-{i:08d}-{"x" * 88}' for i in range(n)]
        assert all(len(f["data"]) == 100 for f in bs)

    # A direct message comes out with its target (the local side delivers it to b2 only).
    a.send(action="message", channel=CH, source="a1", target="b2", data="for b2 only")
    m = b.wait_action("message", target="b2")
    assert m[0]["data"] == "for b2 only" and m[0]["source"] == "a1"
    # A message to a peer nobody announced goes nowhere.
    a.send(action="message", channel=CH, source="a1", target="nobody", data="lost")

    # A 4 MiB binary frame arrives intact.
    blob = os.urandom(4 << 20)
    a.send(action="broadcast", channel=CH, source="a1",
           data=base64.b64encode(blob).decode(), encoding="base64")
    big = b.wait(lambda fs: [f for f in fs if f.get("encoding") == "base64"], 30,
                 "the 4 MiB frame")
    assert base64.b64decode(big[0]["data"]) == blob
    assert not b.of("message", target="nobody")


def test_three_host_mesh_exactly_once(hosts, link_bin):
    hs, nodes = pair(hosts, link_bin, n=3)
    for i, node in enumerate(nodes):
        node.send(action="connect", channel=CH, target=f"p{i}")
    for i, x in enumerate(nodes):
        for y in nodes[i + 1:]:
            link_pair(x, y, CH)
    for node in nodes:
        linked(node, count=2)
    for i, node in enumerate(nodes):
        node.wait_action("connect", count=2)
    for i, node in enumerate(nodes):
        node.send(action="broadcast", channel=CH, source=f"p{i}", data=f"hello from {i}")
    for i, node in enumerate(nodes):
        node.wait_action("broadcast", count=2)
    # A message to p2 reaches host 2 and nowhere else.
    nodes[0].send(action="message", channel=CH, source="p0", target="p2", data="to p2")
    nodes[2].wait_action("message", target="p2")
    # A broadcast sent after it reaches every node after any wrongly routed copy would
    # have (one sender's frames arrive in order).
    nodes[0].send(action="broadcast", channel=CH, source="p0", data="after")
    for node in nodes[1:]:
        node.wait_action("broadcast", data="after")
    for i, node in enumerate(nodes):
        got = sorted(d for d in datas(node) if d != "after")
        assert got == sorted(f"hello from {j}" for j in range(3) if j != i)
        assert len([f for f in node.of("linked")]) == 2
    assert not nodes[1].of("message")
    assert len(nodes[2].of("message")) == 1


def test_wrong_channel_gets_nothing(hosts, link_bin):
    hs = hosts(3, avahi=False)
    a = LinkNode(link_bin, [CH], host=hs[0])
    b = LinkNode(link_bin, [CH], host=hs[1])
    c = LinkNode(link_bin, ["not-the-channel"], host=hs[2])
    a.send(action="connect", channel=CH, target="a1")
    b.send(action="connect", channel=CH, target="b1")
    c.send(action="connect", channel="not-the-channel", target="c1")
    link_pair(a, b, CH)
    # c learns where a and b listen for CH (as if it saw their records) and dials them
    # under its own channel: the handshake cannot succeed without CH's key.
    for x in (a, b):
        f = x.found(CH)
        f["channel"] = "not-the-channel"
        c.send(**f)
    linked(a)
    linked(b)
    a.send(action="broadcast", channel=CH, source="a1", data="secret")
    b.wait_action("broadcast", data="secret")
    # c redials what it found with backoff: once a has refused it twice, its first
    # attempt is over, with whatever it could have delivered.
    wait_for(lambda: len([e for e in a.errors() if "handshake" in e or "closing a link" in e])
             >= 2, 15, "a to refuse c twice")
    assert not [f for f in c.snapshot() if f["action"] not in ("listening",)]
    assert len(a.of("linked")) == 1 and len(b.of("linked")) == 1
    assert not a.of("connect", target="c1") and not b.of("connect", target="c1")


@pytest.mark.parametrize("mode", ["flip", "replay"])
def test_tampering_relay_closes_link(link_bin, mode):
    a = LinkNode(link_bin, [CH])
    b = LinkNode(link_bin, [CH])
    try:
        relay = Relay(a.listening(CH)["port"], mode=mode)
        b.send(action="connect", channel=CH, target="b1")
        b.send(**a.found(CH, port=relay.port))
        # b's first transport message (the empty piece it sends at once after msg2) is
        # the one tampered with.
        a.wait(lambda fs: relay.tampered >= 1, 15, "the relay to tamper")
        # flip: a never takes the link as up, so neither end may report it (b reports it
        # only once a keeps it, when a settles double links); replay: a may have.
        wait_for(lambda: any("decrypt" in e for e in a.errors()), 15, "a to refuse it")
        # The link is closed at the frame that did not decrypt: nothing after it is read.
        for x in (a, b):
            x.wait(lambda fs, x=x: len(x.of("unlinked")) == len(x.of("linked")), 15,
                   "the link reported down where it was reported up")
        if mode == "flip":
            assert not a.of("connect") and not a.of("broadcast")
        else:
            # The original arrives once at most; its replay closes the link.
            connects = a.of("connect", target="b1")
            assert len(connects) <= relay.tampered
            outs = [f for f in a.snapshot() if f["action"] in ("connect", "disconnect")]
            for x, y in zip(outs, outs[1:]):
                assert (x["action"], y["action"]) != ("connect", "connect")
        assert any("decrypt" in e for e in a.errors())
        relay.close()
    finally:
        a.stop()
        b.stop()


def test_simultaneous_dial_one_link(hosts, link_bin):
    (ha, hb), (a, b) = pair(hosts, link_bin)
    a.send(action="connect", channel=CH, target="a1")
    b.send(action="connect", channel=CH, target="b1")
    fa, fb = b.found(CH), a.found(CH)
    a.send(**fa)
    b.send(**fb)
    linked(a)
    linked(b)

    def one_tcp():
        out = ha.run(["ss", "-Htn", "state", "established"]).stdout.decode()
        return len([ln for ln in out.splitlines() if hb.addr in ln]) == 1
    wait_for(one_tcp, 15, "one TCP connection between a and b")
    a.send(action="broadcast", channel=CH, source="a1", data="once")
    b.wait_action("broadcast", data="once")
    b.send(action="broadcast", channel=CH, source="b1", data="back")
    a.wait_action("broadcast", data="back")
    # Frames flow only once the double link is settled (the kept one carries them).
    assert one_tcp()
    for x in (a, b):
        up = len(x.of("linked")) - len(x.of("unlinked"))
        assert up == 1
    # A second copy of "once" would come before "after", its sender's next frame.
    a.send(action="broadcast", channel=CH, source="a1", data="after")
    b.wait_action("broadcast", data="after")
    assert len(b.of("broadcast", data="once")) == 1
    assert len(a.of("connect", target="b1")) - len(a.of("disconnect", target="b1")) == 1


def dud_listener():
    """A listener that drops every connection, and the times it accepted one: a node
    redials it with the same backoff a refused self-link would get."""
    dud = socket.socket()
    dud.bind(("127.0.0.1", 0))
    dud.listen(8)
    accepts = []

    def drop_all():
        while True:
            try:
                c, _ = dud.accept()
            except OSError:
                return
            accepts.append(time.monotonic())
            c.close()
    threading.Thread(target=drop_all, daemon=True).start()
    return dud, accepts


def test_own_advertisement_is_not_dialled(link_bin):
    a = LinkNode(link_bin, [CH])
    dud, accepts = dud_listener()
    try:
        a.send(action="connect", channel=CH, target="a1")
        a.send(**a.found(CH))
        a.send(**a.found(CH, address="127.0.0.1", port=dud.getsockname()[1]))
        # Frames are taken in order: by the dud's second redial a dial of our own
        # address would long have been refused.
        wait_for(lambda: len(accepts) >= 3, 15, "two redials of the dud")
        assert any("not dialling ourselves" in e for e in a.errors()), a.errors()
        assert not [e for e in a.errors() if "refused a link to ourselves" in e]
        assert not a.of("linked") and not a.of("connect")
    finally:
        dud.close()
        a.stop()


def test_self_link_refused(link_bin):
    # Through a relay, our own listener is at an address that is not ours: only the
    # handshake can tell, and the link is refused and never dialled again.
    a = LinkNode(link_bin, [CH])
    relay = Relay(a.listening(CH)["port"])
    dud, accepts = dud_listener()
    try:
        a.send(action="connect", channel=CH, target="a1")
        a.send(**a.found(CH, address="127.0.0.1", port=relay.port))
        wait_for(lambda: any("ourselves" in e for e in a.errors()), 10,
                 "the self-link refusal")
        a.send(**a.found(CH, address="127.0.0.1", port=dud.getsockname()[1]))
        # Two redials of the dud (0.5 s, then 1 s after) come well after the self-link's
        # first redial would have.
        wait_for(lambda: len(accepts) >= 3, 15, "two redials of the dud")
        refusals = [e for e in a.errors() if "ourselves" in e]
        assert len(refusals) <= 2  # the dialling end and the accepting end, once
        assert not a.of("linked") and not a.of("connect")
    finally:
        dud.close()
        relay.close()
        a.stop()


def test_kill_clean_stop_and_veth_down(hosts, link_bin):
    hs, (a, b, c) = pair(hosts, link_bin, n=3)
    for name, x in (("a1", a), ("b1", b), ("c1", c)):
        x.send(action="connect", channel=CH, target=name)
    link_pair(a, b, CH)
    link_pair(a, c, CH)
    a.wait_action("connect", target="b1", timeout=15)
    a.wait_action("connect", target="c1", timeout=15)

    # A clean stop says goodbye: the disconnect comes from c's close frame, well before
    # the 30 s liveness timeout would end a silent link (10 s leaves room for a loaded
    # machine, and is no measure of speed).
    assert c.stop() == 0
    a.wait_action("disconnect", target="c1", timeout=10)
    a.wait_action("unlinked", timeout=10)

    # veth down: the link goes silent; liveness closes it; link up: redialled.
    hs[1].link_down()
    a.wait_action("disconnect", target="b1", timeout=40)
    b.wait_action("unlinked", timeout=40)
    hs[1].link_up()
    linked(a, count=3, timeout=40)
    a.wait_action("connect", target="b1", count=2, timeout=10)

    # kill -9: the peers go within 35 s.
    b.proc.kill()
    a.wait_action("disconnect", target="b1", count=2, timeout=35)


def test_eof_on_stdin_exits_cleanly(hosts, link_bin):
    (ha, hb), (a, b) = pair(hosts, link_bin)
    b.send(action="connect", channel=CH, target="b1")
    link_pair(a, b, CH)
    a.wait_action("connect", target="b1")
    b.close_stdin()
    a.wait_action("disconnect", target="b1", timeout=2)
    assert b.proc.wait(5) == 0, b.errors()[-40:]


def test_slow_consumer_is_disconnected_with_bounded_memory(hosts, link_bin):
    ha, hb = hosts(2, avahi=False)
    a = LinkNode(link_bin, [CH], host=ha)
    b = LinkNode(link_bin, [CH], host=hb, read_stdout=False)
    a.send(action="connect", channel=CH, target="a1")
    # b's listening frame is never read: give a its port by finding it with ss.
    def b_port():
        out = hb.run(["ss", "-Htlnp"]).stdout.decode()
        for ln in out.splitlines():
            if f"pid={b.pid}," in ln:
                return int(ln.split()[3].rsplit(":", 1)[1])
        return None
    port = wait_for(b_port, 10, "b to listen")
    b.send(action="connect", channel=CH, target="b1")
    # b dials a (a's path is known); b's output is never read.
    b.send(**a.found(CH))
    linked(a)
    chunk = base64.b64encode(os.urandom(48 << 10)).decode()
    line = f'{{"action":"broadcast","channel":"{CH}","source":"a1","data":"{chunk}"}}'
    peak = 0
    sent = 0
    deadline = time.monotonic() + 40
    # Keep pushing past the first disconnection: a redials, b stays behind, and b's memory
    # must stay bounded all along.
    while time.monotonic() < deadline and (sent < (64 << 20) or not a.of("unlinked")):
        a.write_lines([line] * 20)
        sent += 20 * len(line)
        peak = max(peak, b.rss_kib())
    un = a.wait_action("unlinked", timeout=30)
    assert un[0].get("reason") == "too slow"
    assert any("too slow" in e for e in a.errors())
    peak = max(peak, b.rss_kib())
    # 8 MiB of output queue, a 16 MiB frame of slack, the link buffers: b would have
    # grown past that had it kept what a pushed.
    assert sent > (32 << 20)
    assert peak < (100 << 10), f"b grew to {peak} KiB"
    assert port


def test_capture_never_contains_plaintext(hosts, link_bin):
    (ha, hb), (a, b) = pair(hosts, link_bin)
    a.send(action="connect", channel=CH, target="a1")
    link_pair(a, b, CH)
    linked(a)
    linked(b)
    cap = ha.capture()
    marker = "NWS-PLAINTEXT-MARKER-" + os.urandom(6).hex()
    for i in range(20):
        a.send(action="broadcast", channel=CH, source="a1", data=f"{marker} {i}")
    b.wait_action("broadcast", count=20)
    pcap = cap.stop()
    assert len(pcap) > 20 * 100
    assert marker.encode() not in pcap
    assert CH.encode() not in pcap


def _upgrade(port, path, protocol="nws-link.1"):
    """A raw WebSocket upgrade to the listener; returns the socket and the reply head."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    s.sendall((f"GET /{path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n{proto}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            break
        head += d
    return s, head


def _closed_within(s, timeout):
    """True when the peer closes s within timeout (whatever it sends first)."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def test_hostile_connections_are_refused_and_listener_keeps_serving(link_bin):
    a = LinkNode(link_bin, [CH])
    b = LinkNode(link_bin, [CH])
    try:
        ls = a.listening(CH)
        port, path = ls["port"], "nws-link/1"
        # Wrong path, wrong or no subprotocol: no upgrade.
        for p, proto in (("0" * 32, "nws-link.1"), (path, "chat"), (path, None)):
            s, head = _upgrade(port, p, proto)
            assert not head.startswith(b"HTTP/1.1 101"), (p, proto, head[:80])
            s.close()
        # Garbage instead of HTTP.
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(os.urandom(2048))
        assert _closed_within(s, 10)
        s.close()
        # A real upgrade, then garbage frames: closed.
        s, head = _upgrade(port, path)
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(b"\x82\x85" + os.urandom(4) + os.urandom(5))
        assert _closed_within(s, 10)
        s.close()
        # A real upgrade and then silence: the 5 s handshake deadline closes it.
        s, head = _upgrade(port, path)
        assert head.startswith(b"HTTP/1.1 101")
        t0 = time.monotonic()
        assert _closed_within(s, 20)
        assert time.monotonic() - t0 >= 4
        s.close()
        # The listener still serves a real peer, and nothing of the above came out.
        b.send(action="connect", channel=CH, target="b1")
        b.send(**a.found(CH))
        a.wait_action("connect", target="b1")
        assert [f["action"] for f in a.snapshot()] == ["listening", "linked", "connect"]
    finally:
        a.stop()
        b.stop()


def test_ipv6_link_local_with_interface(hosts, link_bin):
    ha, hb = hosts(2, avahi=False)
    a = LinkNode(link_bin, [CH], host=ha, listen="0")
    b = LinkNode(link_bin, [CH], host=hb, listen="0")
    out = ha.run(["ip", "-6", "addr", "show", "dev", ha.iface]).stdout.decode()
    ll = [ln.split()[1].split("/")[0] for ln in out.splitlines() if "inet6 fe80" in ln]
    assert ll, out
    b.send(action="connect", channel=CH, target="b1")
    b.send(**a.found(CH, address=ll[0]))   # found carries interface eth0
    a.wait_action("connect", target="b1")
    assert b.wait_action("linked")[0]["address"] == ll[0]


def test_passes_frames_on_and_acts_on_open_close(link_bin):
    a = LinkNode(link_bin, [])
    b = LinkNode(link_bin, [])
    try:
        # Frames it does not consume come out unchanged and in order, found/connect/
        # broadcast of channels it does not have included.
        a.send(action="status", source="x")
        a.send(action="whatever", n=1)
        a.send(action="broadcast", channel="not-open", source="p", data="by")
        a.send(action="error", code=69, reason="r")
        a.wait(lambda fs: len(fs) >= 4, 10, "four frames passed on")
        assert a.snapshot() == [
            {"action": "status", "source": "x"}, {"action": "whatever", "n": 1},
            {"action": "broadcast", "channel": "not-open", "source": "p", "data": "by"},
            {"action": "error", "code": 69, "reason": "r"}]
        # open: passed on, then listening; the channel then links.
        for x in (a, b):
            x.send(action="open", channel=CH)
            x.wait_action("open", channel=CH)
            x.listening(CH)
        b.send(action="connect", channel=CH, target="b1")
        b.send(**a.found(CH))
        a.wait_action("connect", target="b1")
        # close on b: passed on; a sees b's peers leave at once.
        b.send(action="close", channel=CH)
        b.wait_action("close", channel=CH)
        a.wait_action("disconnect", target="b1", timeout=2)
        a.wait_action("unlinked", timeout=2)
    finally:
        a.stop()
        b.stop()


def _link_local(host):
    out = host.run(["ip", "-6", "addr", "show", "dev", host.iface]).stdout.decode()
    ll = [ln.split()[1].split("/")[0] for ln in out.splitlines() if "inet6 fe80" in ln]
    assert ll, out
    return ll[0]


def test_double_links_lose_and_reorder_nothing(hosts, link_bin):
    """Regression: both ends dial each other at two addresses (IPv4 and IPv6 link-local)
    on many fresh channels while a numbered stream flows from the first moment on. Each
    channel settles on one link; what arrives is one run of consecutive numbers (nothing
    lost, nothing out of order), however the double links were resolved."""
    ha, hb = hosts(2, avahi=False)
    chans = [f"dbl-{i}-{os.urandom(4).hex()}" for i in range(16)]
    a = LinkNode(link_bin, chans, host=ha, listen="0")
    b = LinkNode(link_bin, chans, host=hb, listen="0")
    lla, llb = _link_local(ha), _link_local(hb)
    for ch in chans:
        a.send(action="connect", channel=ch, target="a1")
        b.send(action="connect", channel=ch, target="b1")
    n = 4000
    pad = "x" * 1000

    def stream():
        for i in range(n):
            a.write_lines([f'{{"action":"broadcast","channel":"{ch}","source":"a1",'
                           f'"data":"{i} {pad}"}}' for ch in chans])
    founds = []
    for ch in chans:
        founds += [b.found(ch), b.found(ch, address=llb), a.found(ch), a.found(ch, address=lla)]
    t = threading.Thread(target=stream)
    t.start()
    # a dials b's IPv4 address first; the other three ways appear while frames flow
    # (and queue up: b's reader is slower than the links).
    for i, ch in enumerate(chans):
        a.send(**founds[4 * i])
    b.wait_action("linked", count=len(chans), timeout=15)
    b.wait(lambda fs: len(datas(b)) >= 300 * len(chans), 30, "the streams to flow")
    for i, ch in enumerate(chans):
        fb6, fa, fa6 = founds[4 * i + 1:4 * i + 4]
        b.send(**fa)
        a.send(**fb6)
        b.send(**fa6)

    def tcp_to_b():
        out = ha.run(["ss", "-Htn", "state", "established"]).stdout.decode()
        return len([ln for ln in out.splitlines() if hb.addr in ln or llb in ln])
    # A double link is closed as soon as it is up (not kept open and read for a while):
    # one connection per channel well within the 5 s handshake deadline.
    wait_for(lambda: tcp_to_b() == len(chans), 4, "one connection per channel")
    t.join(60)
    assert not t.is_alive()

    def last_arrived(fs):
        last = {f["channel"]: f["data"] for f in fs if f.get("action") == "broadcast"}
        return all(last.get(ch, "").startswith(f"{n - 1} ") for ch in chans)
    b.wait(last_arrived, 30, "the last number of every channel at b")
    for ch in chans:
        got = [int(d.split()[0]) for d in datas(b, channel=ch)]
        assert got, ch
        assert got == list(range(got[0], n)), (ch, got[0], len(got))
        up = len(b.of("linked", channel=ch)) - len(b.of("unlinked", channel=ch))
        assert up == 1, ch
    assert not [e for e in a.errors() + b.errors() if "too slow" in e]
    assert tcp_to_b() == len(chans)


class DataFds:
    """nws-link --data-fds: the peers' frames written to fd IN, those it writes on OUT
    collected as JSON lines by a thread."""

    def __init__(self, link_bin, read_out=True):
        din_r, self.din = os.pipe()
        self.dout, dout_w = os.pipe()
        self.frames = []
        self.lock = threading.Lock()
        self.node = LinkNode(link_bin, [], args=("--data-fds", f"{din_r},{dout_w}"),
                             pass_fds=(din_r, dout_w))
        os.close(din_r)
        os.close(dout_w)
        if read_out:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        pending = b""
        with os.fdopen(self.dout, "rb") as f:
            while b := f.read1(65536):
                *lines, pending = (pending + b).split(b"\n")
                with self.lock:
                    self.frames.extend(json.loads(s) for s in lines)

    def send(self, **frame):
        os.write(self.din, (json.dumps(frame) + "\n").encode())

    def wait(self, what, **match):
        def got():
            with self.lock:
                return [f for f in self.frames if all(f.get(k) == v for k, v in match.items())]
        return wait_for(got, 10, what)

    def stop(self):
        os.close(self.din)
        self.node.close_stdin()
        return exits_clean(self.node.proc, self.node.stderr, 10, "the end of both inputs")


def test_data_fds_carry_the_peers_and_stdin_discovery(link_bin):
    # nws-pipe and nws-proxy run nws-link so: open and the peers' frames on fd IN, the
    # remote peers' frames out on OUT; stdin brings found (and nws-browse's copy of open
    # and close, not acted on again); stdout keeps listening, linked and the echo.
    a, b = DataFds(link_bin), DataFds(link_bin)
    try:
        for x, peer in ((a, "a1"), (b, "b1")):
            x.send(action="open", channel=CH)
            x.send(action="connect", channel=CH, target=peer)
            x.node.wait_action("open", channel=CH)
            x.node.listening(CH)
        # An open on fd IN and a found on stdin written at once: the found waits for it.
        b.send(action="close", channel=CH)
        b.send(action="open", channel=CH)
        b.send(action="connect", channel=CH, target="b1")
        b.node.send(**a.node.found(CH))
        a.wait("b's peer on a's OUT", action="connect", target="b1")
        b.wait("a's peer on b's OUT", action="connect", target="a1")
        a.send(action="broadcast", channel=CH, source="a1", data="hello")
        assert b.wait("the broadcast", action="broadcast")[0]["data"] == "hello"
        # nws-browse's copy of a close on stdin closes nothing.
        b.node.send(action="close", channel=CH)
        b.send(action="broadcast", channel=CH, source="b1", data="still linked")
        assert a.wait("b's broadcast", action="broadcast")[0]["data"] == "still linked"
        for x in (a, b):
            assert not [f for f in x.node.snapshot() if f["action"] in
                        ("connect", "broadcast", "disconnect")], x.node.snapshot()
            assert x.node.wait_action("linked")
        # A close on fd IN does close: b's peer leaves a.
        b.send(action="close", channel=CH)
        a.wait("b's peer leaving", action="disconnect", target="b1")
    finally:
        a.stop()
        b.stop()


def test_data_fds_found_never_passes_the_open_it_answers(link_bin):
    # The open goes on fd IN, nws-browse's found for it on stdin. With nws-link stopped
    # while both are written, both inputs are readable when it runs again, and stdin
    # was adopted first: the found must still wait for the open still unread on IN.
    a, b = LinkNode(link_bin, []), DataFds(link_bin)
    try:
        a.send(action="open", channel=CH)
        a.send(action="connect", channel=CH, target="a1")
        found = a.found(CH)
        os.kill(b.node.pid, signal.SIGSTOP)
        try:
            b.send(action="open", channel=CH)
            b.send(action="connect", channel=CH, target="b1")
            b.node.send(**found)
        finally:
            os.kill(b.node.pid, signal.SIGCONT)
        b.wait("a's peer, dialled from that found", action="connect", target="a1")
        assert not b.node.of("found"), "the found was passed on as for an unknown channel"
    finally:
        a.stop()
        b.stop()


def test_data_fds_reader_that_stops_is_disconnected_with_bounded_memory(link_bin):
    # b's OUT is never read: its queue fills, b stops reading its links, and a closes the
    # link as too slow, while b's memory stays bounded (as with stdout, in
    # test_slow_consumer_is_disconnected_with_bounded_memory).
    a, b = LinkNode(link_bin, [CH]), DataFds(link_bin, read_out=False)
    try:
        a.send(action="connect", channel=CH, target="a1")
        b.send(action="open", channel=CH)
        b.send(action="connect", channel=CH, target="b1")
        b.node.send(**a.found(CH))
        linked(a)
        chunk = base64.b64encode(os.urandom(48 << 10)).decode()
        line = f'{{"action":"broadcast","channel":"{CH}","source":"a1","data":"{chunk}"}}'
        peak = sent = 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (sent < (64 << 20) or not a.of("unlinked")):
            a.write_lines([line] * 20)
            sent += 20 * len(line)
            peak = max(peak, b.node.rss_kib())
        un = a.wait_action("unlinked", timeout=30)
        assert un[0].get("reason") == "too slow"
        peak = max(peak, b.node.rss_kib())
        assert sent > (32 << 20)
        assert peak < (100 << 10), f"b grew to {peak} KiB"
    finally:
        a.stop()
        os.close(b.dout)
        b.stop()


@pytest.mark.parametrize("arg", ["1,4", "5", "3,3", "x,4", "200,201"])
def test_data_fds_usage_errors(link_bin, arg):
    p = subprocess.run([link_bin, "--data-fds", arg], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("nws-link: --data-fds"), err

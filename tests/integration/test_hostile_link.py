"""Links against hostile non-members (issue 9, nws(7) LINKS): a host without the
channel key gets nothing from nws-link, whatever it replays or says, and nothing it sends
shapes what nws-link sends or logs. The attacker is tests/lib/noisepeer.py."""
import ast
import os
import re
import socket
import time

import pytest

from hosts import wait_for
from linknode import LinkNode, link_pair, sanitizer_reports
from noisepeer import (PATH, WS_BINARY, WS_CLOSE, Closed, Handshake, NoisePeer,
                       channel_keys, node_payload)

CH = "hostile-link-channel"
MSG2_LEN = 32 + 23 + 16


@pytest.fixture
def link_bin(nws_bin):
    yield nws_bin("nws-link")
    assert not sanitizer_reports()


@pytest.fixture(scope="module")
def keys():
    return channel_keys(CH)


def msg1_of(psk, node):
    """A genuine msg1 of a member with this node id, as anyone on the path captures it."""
    return Handshake(True, psk).write_message(node_payload(node))


def test_replayed_msg1_gets_nothing_but_msg2(hosts, link_bin, keys):
    ha, hb, hc = hosts(3, avahi=False)
    a = LinkNode(link_bin, [CH], host=ha)
    b = LinkNode(link_bin, [CH], host=hb)
    a.send(action="connect", channel=CH, target="a1")
    b.send(action="connect", channel=CH, target="b1")
    link_pair(a, b, CH)
    b_node = a.wait_action("linked")[0]["node"]
    b.wait_action("connect", target="a1")
    a.wait_action("connect", target="b1")   # all of the link-up is in before
    port = a.listening(CH)["port"]
    before = a.snapshot()
    # b's own msg1, and those of members below and above any node id (so a both settles
    # and waits for the settling), replayed by c, which has no key.
    for node in (bytes.fromhex(b_node), b"\0" * 16, b"\xff" * 16):
        m1 = msg1_of(keys.link, node)
        out = hc.run(["/usr/bin/python3", "-c", REPLAY, ha.addr, str(port), m1.hex()],
                     timeout=30, text=True)
        assert out.returncode == 0, out.stderr
        frames, secs = ast.literal_eval(out.stdout)   # [(opcode, length, reason)], seconds
        binary = [f for f in frames if f[0] == WS_BINARY]
        assert [f[1] for f in binary] == [MSG2_LEN], frames
        # No close frame with a reason of ours (duplicate, kept...): nothing but msg2.
        assert all(f[0] != WS_CLOSE or not f[2] for f in frames), frames
        assert 4 <= secs <= 6.5, f"socket held {secs} s"
    # Nothing was reported, and the real link is untouched: b's next frame arrives, and
    # nothing came before it.
    b.send(action="broadcast", channel=CH, source="b1", data="still here")
    a.wait_action("broadcast", data="still here")
    assert [f for f in a.snapshot() if f.get("data") != "still here"] == before
    assert not b.of("unlinked") and not a.of("unlinked")


# Run inside host c: replay msg1 and report every frame until the server hangs up.
REPLAY = r"""
import sys, time
sys.path.insert(0, %r)
from noisepeer import NoisePeer
p = NoisePeer.connect(sys.argv[1], int(sys.argv[2]))
t0 = time.monotonic()
p.send_binary(bytes.fromhex(sys.argv[3]))
frames = p.drain(15)
print(repr(([(op, len(d), d[2:].decode(errors="replace") if op == 8 else "")
             for op, d in frames], time.monotonic() - t0)))
""" % os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")


def test_initiator_confirms_at_once_and_silence_is_cut(link_bin, keys):
    """The dialler's first transport message comes right after msg2; an initiator that
    completes the handshake but never sends one is cut at the 5 s deadline, unreported."""
    a = LinkNode(link_bin, [CH])
    port = a.listening(CH)["port"]
    p = NoisePeer.connect("127.0.0.1", port)
    t0 = time.monotonic()
    p.handshake(keys.link, confirm=False)
    assert p.closed_within(8)
    assert 4 <= time.monotonic() - t0 <= 7
    assert not a.of("linked") and not a.of("unlinked")
    a.stop()


def test_liveness_counts_only_decrypted_messages(link_bin, keys):
    """A peer that answers every WebSocket ping but sends nothing that decrypts is cut
    after 30 s; nws-link itself sends an empty encrypted piece when it has been quiet."""
    a = LinkNode(link_bin, [CH])
    port = a.listening(CH)["port"]
    p = NoisePeer.connect("127.0.0.1", port, node=b"\0" * 16)
    p.handshake(keys.link)
    p.send_frame({"action": "kept", "channel": CH})
    a.wait_action("linked")
    t0 = time.monotonic()
    pieces = []
    try:
        while time.monotonic() - t0 < 50:
            op, d = p.recv_ws(50)          # pings are answered in there
            if op == WS_BINARY:
                pieces.append(p.recv_cs.decrypt(d))
            elif op == WS_CLOSE:
                break
    except Closed:
        pass
    took = time.monotonic() - t0
    assert 28 <= took <= 40, f"closed after {took:.1f} s"
    assert b"\0" in pieces               # an empty, non-final piece: a keepalive
    a.wait_action("unlinked")
    a.stop()


def test_pre_handshake_close_reasons_change_nothing(link_bin, keys):
    """A responder that closes with "self" or "duplicate" before msg2 is no proof of
    anything: the address is dialled again, and links once a real member answers."""
    a = LinkNode(link_bin, [CH])
    a.listening(CH)
    srv = NoisePeer.listen("127.0.0.1", 0)
    a.send(action="found", channel=CH, address="127.0.0.1", port=srv.port, instance="x",
           host="h", interface="lo")
    for reason in ("self", "duplicate", "self\x1b[31m\nnws-link: forged line"):
        r = srv.accept(10)
        r.recv_message(5)                  # msg1
        r.close(1008, reason)
    # Still dialled after all three: this one answers as a member.
    r = srv.accept(15, node=b"\0" * 16)
    r.respond(keys.link)
    r.send_frame({"action": "kept", "channel": CH})
    a.wait_action("linked", node="00" * 16)
    # Remote text never reaches the log raw, before or after the handshake.
    r.close(1000, "bye\x1b]0;pwned\x07\nnws-link: forged line")
    a.wait_action("unlinked")
    wait_for(lambda: any("unlinked from node" in e for e in a.errors()), 10, "the log line")
    errs = "\n".join(a.errors())
    assert "\x1b" not in errs and "\x07" not in errs
    assert not [e for e in a.errors() if e.startswith("nws-link: forged")]
    assert "\x1b" not in a.of("unlinked")[0].get("reason", "")
    srv.close()
    a.stop()


def test_one_path_for_every_channel(hosts, link_bin):
    (ha, hb) = hosts(2, avahi=False)
    chans = [CH, CH + "-2"]
    a = LinkNode(link_bin, chans, host=ha)
    b = LinkNode(link_bin, chans, host=hb)
    assert all("path" not in a.listening(ch) for ch in chans)
    cap = ha.capture()
    for ch in chans:
        link_pair(a, b, ch)
    a.wait_action("linked", count=2)
    b.wait_action("linked", count=2)
    pcap = cap.stop()
    gets = re.findall(rb"GET (\S*) HTTP/1.1", pcap)
    assert gets and set(gets) == {PATH.encode()}, gets


def test_a_link_to_another_path_is_refused(link_bin, keys):
    a = LinkNode(link_bin, [CH])
    port = a.listening(CH)["port"]
    for path in ("/", "/nws-link/2", "/" + "0" * 32, PATH + "/x"):
        with pytest.raises(Closed):
            NoisePeer.connect("127.0.0.1", port, path=path)
    # The old prologue (with a path) is another protocol: no channel opens its msg1.
    p = NoisePeer.connect("127.0.0.1", port)
    with pytest.raises(Closed):
        p.handshake(keys.link, prologue=b"nws-link/1" + b"0" * 32, timeout=8)
    assert not a.of("linked")
    a.stop()


def _listeners(host, pid):
    out = host.run(["ss", "-Htlnp"]).stdout.decode()
    return [ln.split()[3] for ln in out.splitlines() if f"pid={pid}," in ln]


@pytest.mark.parametrize("addr", ["127.0.0.1", "[::1]"])
def test_listen_binds_exactly_the_address(hosts, link_bin, addr):
    (h,) = hosts(1, avahi=False)
    a = LinkNode(link_bin, [CH], host=h, listen=f"{addr}:0")
    port = a.listening(CH)["port"]
    assert port > 0
    assert _listeners(h, a.pid) == [f"{addr}:{port}"]
    # Not reachable on the host's own address.
    out = h.run(["/usr/bin/python3", "-c", "import socket,sys; socket.create_connection("
                 "(sys.argv[1], int(sys.argv[2])), 3)", h.addr, str(port)], text=True)
    assert out.returncode != 0 and "Connection refused" in out.stderr
    a.stop()


def test_listen_default_takes_ipv4_and_ipv6(hosts, link_bin, keys):
    (h,) = hosts(1, avahi=False)
    a = LinkNode(link_bin, [CH], host=h, listen="0")
    port = a.listening(CH)["port"]
    assert _listeners(h, a.pid) == [f"*:{port}"]
    for addr in (h.addr, "::1"):
        out = h.run(["/usr/bin/python3", "-c", "import socket,sys; socket.create_connection("
                     "(sys.argv[1], int(sys.argv[2])), 3)", addr, str(port)], text=True)
        assert out.returncode == 0, out.stderr
    a.stop()


def test_listen_refuses_what_is_not_an_address(link_bin):
    p = socket.socket()
    p.bind(("127.0.0.1", 0))
    p.listen(1)
    taken = p.getsockname()[1]
    for arg, why in (("localhost:0", "not an IP address"), (f"127.0.0.1:{taken}", "in use")):
        a = LinkNode(link_bin, [CH], listen=arg)
        assert a.proc.wait(10) == 1
        a.join()
        assert any(why in e and "--listen" in e for e in a.errors()), a.errors()
    p.close()


@pytest.mark.parametrize("field,value,why", [
    ("address", "10.0.0.1\r\nX-Evil: 1", "not an IP address"),
    ("address", "evil.example", "not an IP address"),
    ("address", "fe80::1%eth0\r\n", "bad %interface"),
    ("port", 70000, "port"),
    ("port", 0, "port"),
    ("interface", "eth0\r\nHost: x", "not an interface name"),
])
def test_hostile_found_frames_are_refused(link_bin, field, value, why):
    a = LinkNode(link_bin, [CH])
    a.listening(CH)
    srv = NoisePeer.listen("127.0.0.1", 0)
    f = {"action": "found", "channel": CH, "address": "127.0.0.1", "port": srv.port,
         "instance": "x", "host": "h", "interface": "lo"}
    f[field] = value
    a.send(**f)
    # A port past 65535 does not even decode as a frame.
    wait_for(lambda: any(("ignoring a found frame" in e or "does not decode" in e) and
                         why in e for e in a.errors()), 10, f"a refusal naming {why}")
    # Nothing was dialled.
    srv.sock.settimeout(1)
    with pytest.raises(socket.timeout):
        srv.sock.accept()
    srv.close()
    a.stop()

"""tests/lib/noisepeer.py, the Python nws-link peer the hostile tests use: its Noise layer
against the cacophony vector, and a whole link with a real nws-link on loopback."""
import json
import os

import pytest

from linknode import LinkNode, sanitizer_reports
from noisepeer import (FINAL, MAX_PIECE, CipherState, Handshake, NoisePeer, channel_keys,
                       pieces)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CH = "noisepeer-test-channel"


def test_handshake_and_transport_match_the_vector():
    with open(os.path.join(ROOT, "tests", "vectors", "noise-nnpsk0-blake2b.json")) as f:
        v = json.load(f)["vectors"][0]
    psk = bytes.fromhex(v["init_psks"][0])
    i = Handshake(True, psk, bytes.fromhex(v["init_prologue"]),
                  bytes.fromhex(v["init_ephemeral"]))
    r = Handshake(False, psk, bytes.fromhex(v["resp_prologue"]),
                  bytes.fromhex(v["resp_ephemeral"]))
    msgs = v["messages"]
    m1 = i.write_message(bytes.fromhex(msgs[0]["payload"]))
    assert m1.hex() == msgs[0]["ciphertext"]
    assert r.read_message(m1).hex() == msgs[0]["payload"]
    m2 = r.write_message(bytes.fromhex(msgs[1]["payload"]))
    assert m2.hex() == msgs[1]["ciphertext"]
    assert i.read_message(m2).hex() == msgs[1]["payload"]
    assert i.h.hex() == r.h.hex() == v["handshake_hash"]
    (i_send, i_recv), (r_send, r_recv) = i.split(), r.split()
    for k, m in enumerate(msgs[2:]):
        send, recv = (i_send, r_recv) if k % 2 == 0 else (r_send, i_recv)
        ct = send.encrypt(bytes.fromhex(m["payload"]))
        assert ct.hex() == m["ciphertext"]
        assert recv.decrypt(ct).hex() == m["payload"]


def test_wrong_psk_does_not_authenticate():
    i = Handshake(True, b"\1" * 32)
    r = Handshake(False, b"\2" * 32)
    with pytest.raises(Exception):
        r.read_message(i.write_message(b"x"))
    with pytest.raises(Exception):
        CipherState(b"\3" * 32).decrypt(CipherState(b"\4" * 32).encrypt(b"y"))


def test_pieces_cut_at_the_limit():
    assert pieces(b"") == [(FINAL, b"")]
    ps = pieces(b"x" * (MAX_PIECE + 1))
    assert [f for f, _ in ps] == [0, FINAL] and [len(p) for _, p in ps] == [MAX_PIECE, 1]


@pytest.fixture
def link_bin(nws_bin):
    yield nws_bin("nws-link")
    assert not sanitizer_reports()


def test_a_whole_link_with_nws_link(link_bin):
    """Handshake, kept/connect/broadcast both ways, a frame in several pieces."""
    keys = channel_keys(CH)
    a = LinkNode(link_bin, [CH])
    port = a.listening(CH)["port"]
    a.send(action="connect", channel=CH, target="a1")
    # A node id below any other: the Python peer decides, so it sends "kept".
    p = NoisePeer.connect("127.0.0.1", port, node=b"\0" * 16)
    p.handshake(keys.link)
    p.send_frame({"action": "kept", "channel": CH})
    a.wait_action("linked", node="00" * 16)
    assert p.recv_frame(5) == {"action": "connect", "channel": CH, "target": "a1"}
    p.send_frame({"action": "connect", "channel": CH, "target": "p1"})
    a.wait_action("connect", target="p1")
    big = "z" * (3 * MAX_PIECE)
    p.send_frame({"action": "broadcast", "channel": CH, "source": "p1", "data": big}, 1000)
    assert a.wait_action("broadcast", source="p1")[0]["data"] == big
    a.send(action="broadcast", channel=CH, source="a1", data="hi")
    f = p.recv_frame(5)
    assert f["action"] == "broadcast" and f["data"] == "hi"
    p.close(1000, "bye")
    a.wait_action("unlinked")
    a.stop()


def test_the_peer_as_responder(link_bin):
    """nws-link dials a NoisePeer listener and completes the handshake with it."""
    keys = channel_keys(CH)
    srv = NoisePeer.listen("127.0.0.1", 0)
    a = LinkNode(link_bin, [CH])
    a.listening(CH)
    a.send(action="found", channel=CH, address="127.0.0.1", port=srv.port,
           instance="x", host="h", interface="lo")
    r = srv.accept(10, node=b"\0" * 16)
    assert r.request.split(b" ")[1] == b"/nws-link/1"
    r.respond(keys.link)
    # The initiator's first transport message comes at once and carries no frame.
    r.send_frame({"action": "kept", "channel": CH})
    a.wait_action("linked", node="00" * 16)
    srv.close()
    a.stop()

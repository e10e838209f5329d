"""tests/lib/noisepeer.py, the Python nws-link peer the hostile tests use: its Noise layer
against the cacophony vector."""
import json
import os

import pytest

from noisepeer import (FINAL, MAX_PIECE, CipherState, Handshake, pieces)

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

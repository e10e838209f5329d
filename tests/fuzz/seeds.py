#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/NAME/, a few dozen small
inputs each: well-formed frames, streams, answers and records that reach deep into each
target, and near misses that stop at each check. Deterministic; rerun it after a change
of format (then commit the result). Inputs the fuzzer found that once failed are kept
beside these as found-* files, which this script leaves alone."""
import base64
import hashlib
import json
import os
import random
import struct

import cbor2

ROOT = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(9)

FRAMES = [
    {"action": "open", "channel": "chat"},
    {"action": "close", "channel": "chat"},
    {"action": "found", "channel": "chat", "instance": "0123456789abcdef", "host": "a.local",
     "address": "fe80::1%eth0", "port": 40123, "path": "/0123456789abcdef", "interface": "eth0",
     "domain": "local"},
    {"action": "lost", "channel": "chat", "instance": "0123456789abcdef", "address": "10.0.0.2",
     "port": 1},
    {"action": "listening", "channel": "chat", "port": 65535},
    {"action": "advertised", "channel": "chat", "instance": "fedcba9876543210"},
    {"action": "connect", "channel": "chat", "source": "aaaaaaaaaaaaaaaa", "target": "b"},
    {"action": "disconnect", "channel": "chat", "target": "bbbbbbbbbbbbbbbb"},
    {"action": "broadcast", "channel": "chat", "source": "a", "data": "hello, \u00e9\U0001f600"},
    {"action": "broadcast", "data": ""},
    {"action": "message", "channel": "c", "source": "a", "target": "b", "data": "x"},
    {"action": "status"},
    {"action": "linked", "channel": "c", "node": "00112233445566778899aabbccddeeff",
     "address": "10.0.0.3"},
    {"action": "unlinked", "channel": "c", "node": "00", "reason": "too slow"},
    {"action": "error", "code": 3, "reason": "bad frame"},
    {"action": "kept", "channel": "c"},
    {"action": "end", "channel": "c", "source": "a"},
]
JSON_DATA = [
    {"action": "broadcast", "data": {"a": [1, 2.5, None, True, "s"]}},
    {"action": "broadcast", "data": [1, 2, 3]},
    {"action": "broadcast", "data": 12345678901234567890},
    {"action": "broadcast", "data": "AAEC", "encoding": "base64"},
]


def put(name, files):
    d = os.path.join(ROOT, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if not old.startswith("found-"):
            os.unlink(os.path.join(d, old))
    for fname, data in files.items():
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)


def json_line(f):
    return json.dumps(f, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def cbor_frame(f):
    g = dict(f)
    if isinstance(g.get("data"), (dict, list, int)):
        g["data"] = cbor2.CBORTag(262, json.dumps(g["data"]).encode())
    if g.pop("encoding", None):
        g["data"] = base64.b64decode(g["data"])
    return cbor2.dumps(g)


def frame_inputs():
    out = {}
    for i, f in enumerate(FRAMES + JSON_DATA):
        out[f"json-{i:02d}-{f['action']}"] = json_line(f)
        out[f"cbor-{i:02d}-{f['action']}"] = cbor_frame(f)
    # Near misses: each stops at one check of the decoders.
    out["json-escaped-action"] = b'{"action":"\\u0062roadcast","data":"x"}\n'
    out["json-duplicate-key"] = b'{"action":"open","channel":"a","channel":"b"}\n'
    out["json-port-range"] = b'{"action":"found","port":65536}\n'
    out["json-negative-code"] = b'{"action":"error","code":-1}\n'
    out["json-not-object"] = b'["action","open"]\n'
    out["json-nul-escape"] = b'{"action":"open","channel":"a\\u0000"}\n'
    out["json-spaces"] = b' { "action" : "open" , "channel" : "chat" } \r\n'
    out["json-bad-base64"] = b'{"action":"broadcast","data":"!!","encoding":"base64"}\n'
    out["cbor-indefinite-map"] = b"\xbf" + cbor2.dumps("action")[0:] + cbor2.dumps("open") + b"\xff"
    out["cbor-indefinite-text"] = (b"\xa1" + cbor2.dumps("action") + b"\x7f" +
                                   cbor2.dumps("bro") + cbor2.dumps("adcast") + b"\xff")
    out["cbor-duplicate-action"] = (b"\xa2" + cbor2.dumps("action") + cbor2.dumps("open") +
                                    cbor2.dumps("action") + cbor2.dumps("close"))
    out["cbor-bytes-key"] = b"\xa1" + cbor2.dumps(b"action") + cbor2.dumps("open")
    out["cbor-trailing"] = cbor_frame(FRAMES[0]) + b"\x00"
    out["cbor-tag-not-json"] = cbor2.dumps({"action": "broadcast",
                                            "data": cbor2.CBORTag(262, b"{nope")})
    # JSON text that jsontext passes and the JSON decoder (jansson) refuses.
    out["cbor-tag-real-overflow"] = cbor2.dumps({"action": "broadcast",
                                                 "data": cbor2.CBORTag(262, b"1e400")})
    out["cbor-tag-duplicate-key"] = cbor2.dumps({"action": "broadcast",
                                                 "data": cbor2.CBORTag(262, b'{"a":1,"a":2}')})
    out["cbor-tag-big-integer"] = cbor2.dumps({"action": "broadcast",
                                               "data": cbor2.CBORTag(262, b"1" * 30)})
    return out


def stream_inputs():
    out = {}
    js = b"".join(json_line(f) for f in FRAMES[:6])
    cb = b"".join(cbor_frame(f) for f in FRAMES[:6])
    big = json_line({"action": "broadcast", "data": "x" * 300})
    for sel in (0, 3, 7):
        out[f"json-lines-{sel}"] = bytes([sel, rng.randrange(256)]) + js
        out[f"cbor-seq-{sel}"] = bytes([sel, rng.randrange(256)]) + cb
    out["json-oversized-line"] = bytes([0, 5]) + js[:40] + big + js
    out["json-blank-and-crlf"] = bytes([2, 9]) + b"\n  \n" + js.replace(b"\n", b"\r\n") + b"\n"
    out["json-no-final-newline"] = bytes([2, 1]) + js.rstrip(b"\n")
    out["json-bad-line"] = bytes([2, 4]) + b'{"action":\n' + js
    out["json-truncated-tail"] = bytes([2, 4]) + js + b'{"action":"op'
    out["cbor-oversized"] = bytes([0, 6]) + cbor_frame({"action": "broadcast",
                                                        "data": "y" * 200}) + cb
    out["cbor-not-a-map"] = bytes([3, 3]) + cb[:30] + b"\x83\x01\x02\x03" + cb
    out["cbor-truncated"] = bytes([3, 8]) + cb + cb[:7]
    out["cbor-indefinite"] = bytes([3, 8]) + b"\xbf\x66action\x64open\xff" + cb
    return out


def jsontext_inputs():
    texts = [b"{}", b"[]", b"0", b"-0.5e+10", b"true", b"null", b'"s"',
             b'{"a":{"b":[1,{"c":"d"}]},"e":"\\u00e9\\ud83d\\ude00"}',
             b' \t\r\n{"k" : [ 1 , 2 ] } \n', b'{"a":1,"a":2}', b"1e400", b"123456789012345678901234567890",
             b'"\\udc00"', b'"\\ud800x"', b'"\\u0000"', b'"\xc3\xa9\xf0\x9f\x98\x80"',
             b'"\xc0\x80"', b'"\xed\xa0\x80"', b'"a\nb"', b"[1,]", b"{,}", b"01", b"1.", b"-",
             b"[" * 600 + b"]" * 600, b"[" * 300 + b"]" * 300, b'{"x":"}"}', b'{"\\"k":1}']
    return {f"text-{i:02d}": t for i, t in enumerate(texts)}


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def answer(accept=ACCEPT, proto="nws-link.1", status="101 Switching Protocols"):
    return (f"HTTP/1.1 {status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {proto}\r\n\r\n").encode()


def ws(op, payload, fin=True, mask=None):
    n = len(payload)
    h = bytes([(0x80 if fin else 0) | op])
    m = 0x80 if mask else 0
    if n < 126:
        h += bytes([m | n])
    elif n < 65536:
        h += bytes([m | 126]) + struct.pack(">H", n)
    else:
        h += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        h += mask
    return h + payload


def wsclient_inputs():
    frames = [ws(2, b"\x01" * 80), ws(9, b"ping"), ws(2, b"a", fin=False), ws(0, b"b"),
              ws(2, bytes(300)), ws(8, b"\x03\xe8bye")]
    seq = b"".join(frames)
    out = {}
    for sel in (0, 4, 7):
        out[f"answer-frames-{sel}"] = bytes([0, rng.randrange(256), sel]) + answer() + seq
        out[f"open-frames-{sel}"] = bytes([1, rng.randrange(256), sel]) + seq
    out["answer-only"] = bytes([0, 1, 7]) + answer()
    out["answer-refused"] = bytes([0, 2, 7]) + answer(status="403 Forbidden")
    out["answer-bad-accept"] = bytes([0, 3, 7]) + answer(accept="x" * 28)
    out["answer-no-subprotocol"] = bytes([0, 4, 7]) + answer(proto="chat")
    out["answer-lowercase"] = bytes([0, 5, 7]) + answer().replace(b"Sec-WebSocket", b"sec-websocket")
    out["answer-long"] = bytes([0, 6, 7]) + answer()[:-2] + b"X: " + b"y" * 9000 + b"\r\n\r\n"
    out["answer-big-frame-behind"] = bytes([0, 7, 7]) + answer() + ws(2, bytes(9000))
    out["open-masked"] = bytes([1, 8, 7]) + ws(2, b"abc", mask=b"\x01\x02\x03\x04")
    out["open-rsv"] = bytes([1, 9, 7]) + b"\xc2\x01a"
    out["open-len16"] = bytes([1, 10, 7]) + ws(2, bytes(1000))
    out["open-len64"] = bytes([1, 11, 7]) + b"\x82\x7f" + struct.pack(">Q", 2000) + bytes(2000)
    out["open-len64-huge"] = bytes([1, 12, 7]) + b"\x82\x7f" + struct.pack(">Q", 1 << 63)
    out["open-long-ping"] = bytes([1, 13, 7]) + ws(9, bytes(126))
    out["open-close-then-more"] = bytes([1, 14, 7]) + ws(8, b"") + seq
    return out


DISC = b"nws fuzz: a fixed discovery key\0"

def tag(port, path, nonce):
    h = hashlib.blake2b(nonce + struct.pack(">H", port) + path.encode(), key=DISC,
                        digest_size=16).digest()
    return base64.urlsafe_b64encode(nonce + h).rstrip(b"=").decode()


def txt(*strings):
    return b"".join(bytes([len(s)]) + s for s in strings)


def txt_inputs():
    out = {}
    for i in range(6):
        port = rng.randrange(1, 65536)
        path = "/" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
        nonce = bytes(rng.randrange(256) for _ in range(16))
        t = tag(port, path, nonce)
        rd = txt(b"v=1", b"path=" + path.encode(), b"t=" + t.encode())
        out[f"record-match-{i}"] = struct.pack(">H", port) + bytes([i]) + rd
        out[f"record-other-port-{i}"] = struct.pack(">H", port ^ 7) + bytes([i]) + rd
    good_t = tag(4000, "/x", bytes(16)).encode()
    out["record-no-v"] = struct.pack(">H", 4000) + b"\x00" + txt(b"path=/x", b"t=" + good_t)
    out["record-v2"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=2", b"path=/x", b"t=" + good_t)
    out["record-no-path"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=1", b"t=" + good_t)
    out["record-empty-path"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=1", b"path=", b"t=" + good_t)
    out["record-short-tag"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=1", b"path=/x", b"t=" + good_t[:-1])
    out["record-tag-alphabet"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=1", b"path=/x", b"t=" + good_t[:-1] + b"+")
    out["record-tag-high-byte"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=1", b"path=/x", b"t=" + good_t[:-1] + b"\xad")
    out["record-path-crlf"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v=1", b"path=/x\r\nHost: evil", b"t=" + good_t)
    out["record-v6"] = struct.pack(">H", 4000) + b"\x01" + txt(b"v=1", b"path=/x", b"t=" + good_t)
    out["record-no-value"] = struct.pack(">H", 4000) + b"\x00" + txt(b"v", b"path", b"t")
    out["record-bad-length"] = struct.pack(">H", 4000) + b"\x00" + b"\x09v=1"
    out["tag-as-text"] = struct.pack(">H", 4000) + b"\x00" + good_t
    return out


NOISE_PSK = b"nws fuzz: a fixed link key K_li\0"
NOISE_PROLOGUE = b"nws-link/1"   # as fuzz_noise.c and link.c


def hkdf(ck, ikm, n):
    import hmac
    temp = hmac.new(ck, ikm, hashlib.blake2b).digest()
    outs, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac.new(temp, prev + bytes([i]), hashlib.blake2b).digest()
        outs.append(prev)
    return outs


def msg1(eph_sk, payload):
    """The first message of Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b (Noise rev. 34)."""
    from nacl import bindings
    name = b"Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
    h = ck = name.ljust(64, b"\0")

    def mix_hash(data):
        return hashlib.blake2b(h + data).digest()
    h = mix_hash(NOISE_PROLOGUE)
    ck, temp_h, temp_k = hkdf(ck, NOISE_PSK, 3)
    h = mix_hash(temp_h)
    e = bindings.crypto_scalarmult_base(eph_sk)
    h = mix_hash(e)
    ck, temp_k = hkdf(ck, e, 2)
    ct = bindings.crypto_aead_chacha20poly1305_ietf_encrypt(payload, h, bytes(12), temp_k[:32])
    return e + ct


def noise_inputs():
    out = {}
    for i, payload in enumerate((b"", b"\xa1\x64node\x50" + bytes(16), bytes(300))):
        out[f"msg1-valid-{i}"] = b"\x00" + msg1(bytes([i + 1]) * 32, payload)
    for n in (0, 31, 48, 49, 80, 200):
        out[f"msg1-random-{n}"] = b"\x00" + bytes(rng.randrange(256) for _ in range(n))
    out["msg1-zero-key"] = b"\x00" + bytes(48 + 23)
    for i in range(8):
        pieces = b""
        for _ in range(rng.randrange(1, 6)):
            ln = rng.randrange(0, 200)
            sel = rng.choice([0, 0, 1, 1, 2, 3])
            pieces += bytes([ln >> 3, ((ln & 7) << 2) | sel]) + \
                bytes(rng.randrange(256) for _ in range(ln))
        out[f"pieces-{i}"] = b"\x01" + pieces
    out["pieces-big-frame"] = b"\x01" + b"\xff\xf8" + bytes(2100)
    out["pieces-empty-final"] = b"\x01" + b"\x00\x01" + b"\x00\x00" + b"\x00\x01"
    return out


def main():
    put("frame", frame_inputs())
    put("peek", frame_inputs())
    put("stream", stream_inputs())
    put("jsontext", jsontext_inputs())
    put("wsclient", wsclient_inputs())
    put("txt", txt_inputs())
    put("noise", noise_inputs())


if __name__ == "__main__":
    main()

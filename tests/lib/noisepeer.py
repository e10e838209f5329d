"""A hostile (or honest) nws-link peer in Python, for tests: the nws-link wire protocol
(nws(7) LINKS) spoken by hand, so a test can do what no well-behaved nws-link does.

The crypto is PyNaCl (X25519, ChaCha20-Poly1305 IETF) and hashlib's BLAKE2b, independent
of libsodium's use in libcommon/noise.c. The WebSocket is a minimal RFC 6455 client (and
server) over a plain socket, so a test can send any bytes, any opcode, any close reason.

    from noisepeer import NoisePeer, channel_keys
    psk = channel_keys("chat").link                       # K_link (Argon2id: ~0.1 s)
    p = NoisePeer.connect("10.77.0.1", port)              # GET /nws-link/1, nws-link.1
    msg1 = p.handshake(psk)                               # NNpsk0 as initiator; returns msg1
    p.send_frame({"action": "kept", "channel": "chat"})   # CBOR (dict) or bytes, in pieces
    f = p.recv_frame(timeout=5)                           # a decoded dict, None on close
    p.close(1000, "duplicate")                            # any status and reason

    q = NoisePeer.connect("10.77.0.1", port)
    q.send_binary(msg1)                                   # replay a captured msg1
    op, data = q.recv_ws(timeout=5)                       # raw WebSocket frames
    q.closed_within(6)                                    # True once the server hangs up

    srv = NoisePeer.listen("10.77.0.2", 0)                # responder side: srv.port ...
    r = srv.accept(timeout=10); r.respond(psk)            # reads msg1, writes msg2, then
    r.recv_frame()                                        # the initiator's first message

Other knobs: path= and prologue= (the protocol's: PATH and PROLOGUE), node= (our 16-byte
node id, random by default), confirm=False (the initiator does not send its first
transport message after msg2), send_piece(flags, data) for hand-made pieces, send_ws(op,
payload, fin) and send_raw(bytes) underneath the Noise layer, pieces(frame, size) to cut
a frame into pieces, and Handshake/CipherState for the Noise layer alone."""
import base64
import hashlib
import hmac
import os
import select
import socket
import struct
import time

import cbor2
import nacl.bindings as nb
import nacl.pwhash
from nacl.encoding import RawEncoder
import nacl.hash

PATH = "/nws-link/1"
PROLOGUE = b"nws-link/1"
SUBPROTOCOL = "nws-link.1"
PROTOCOL_NAME = b"Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
HASHLEN = 64
TAGLEN = 16
MAX_MSG = 65535
MAX_PIECE = MAX_MSG - TAGLEN - 1
FINAL = 0x01
WS_CONT, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0, 1, 2, 8, 9, 10
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---- channel keys (nws(7) DISCOVERY) ----

class Keys:
    def __init__(self, channel, disc, link):
        self.channel, self.disc, self.link = channel, disc, link


def channel_keys(name):
    """K, K_disc and K_link of a channel name."""
    salt = nacl.hash.blake2b(b"nws/1 channel", digest_size=32, encoder=RawEncoder)[:16]
    k = nacl.pwhash.argon2id.kdf(32, name.encode(), salt,
                                 opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                                 memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
    return Keys(k, hashlib.blake2b(b"nws/1 discovery", digest_size=32, key=k).digest(),
                hashlib.blake2b(b"nws/1 link", digest_size=32, key=k).digest())


def txt_tag(disc, port, nonce=None):
    """The TXT t= value for an advertisement at port (nonce: 16 bytes, random if None)."""
    nonce = os.urandom(16) if nonce is None else nonce
    tag = hashlib.blake2b(nonce + port.to_bytes(2, "big"), digest_size=16, key=disc).digest()
    return base64.urlsafe_b64encode(nonce + tag).rstrip(b"=").decode()


# ---- Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b ----

def _hash(*parts):
    return hashlib.blake2b(b"".join(parts), digest_size=HASHLEN).digest()


def _hkdf(ck, ikm, n):
    tk = hmac.new(ck, ikm, hashlib.blake2b).digest()
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac.new(tk, prev + bytes([i]), hashlib.blake2b).digest()
        out.append(prev)
    return out


class CipherState:
    def __init__(self, k=None):
        self.k, self.n = k, 0

    def _nonce(self):
        return b"\0" * 4 + struct.pack("<Q", self.n)

    def encrypt(self, pt, ad=b""):
        if self.k is None:
            return pt
        ct = nb.crypto_aead_chacha20poly1305_ietf_encrypt(pt, ad, self._nonce(), self.k)
        self.n += 1
        return ct

    def decrypt(self, ct, ad=b""):
        """Raises nacl.exceptions.CryptoError when ct does not authenticate."""
        if self.k is None:
            return ct
        pt = nb.crypto_aead_chacha20poly1305_ietf_decrypt(ct, ad, self._nonce(), self.k)
        self.n += 1
        return pt


class Handshake:
    """One NNpsk0 handshake: write_message/read_message in turn, then split()."""

    def __init__(self, initiator, psk, prologue=PROLOGUE, ephemeral=None):
        self.initiator, self.psk = initiator, psk
        self.h = PROTOCOL_NAME.ljust(HASHLEN, b"\0")
        self.ck = self.h
        self.cs = CipherState()
        self.e_sk = ephemeral or os.urandom(32)
        self.e_pk = nb.crypto_scalarmult_base(self.e_sk)
        self.re = None
        self.step = 0
        self._mix_hash(prologue)

    def _mix_hash(self, data):
        self.h = _hash(self.h, data)

    def _mix_key(self, ikm):
        self.ck, tk = _hkdf(self.ck, ikm, 2)
        self.cs = CipherState(tk[:32])

    def _mix_key_and_hash(self, ikm):
        self.ck, th, tk = _hkdf(self.ck, ikm, 3)
        self._mix_hash(th)
        self.cs = CipherState(tk[:32])

    def _ee(self):
        dh = nb.crypto_scalarmult(self.e_sk, self.re)
        if dh == b"\0" * 32:
            raise ValueError("all-zero DH")
        self._mix_key(dh)

    def write_message(self, payload=b""):
        if self.step == 0:
            self._mix_key_and_hash(self.psk)
        msg = self.e_pk
        self._mix_hash(self.e_pk)
        self._mix_key(self.e_pk)
        if self.step == 1:
            self._ee()
        ct = self.cs.encrypt(payload, self.h)
        self._mix_hash(ct)
        self.step += 1
        return msg + ct

    def read_message(self, msg):
        """The payload; raises nacl.exceptions.CryptoError when msg does not authenticate."""
        if self.step == 0:
            self._mix_key_and_hash(self.psk)
        self.re = msg[:32]
        self._mix_hash(self.re)
        self._mix_key(self.re)
        if self.step == 1:
            self._ee()
        pt = self.cs.decrypt(msg[32:], self.h)
        self._mix_hash(msg[32:])
        self.step += 1
        return pt

    def split(self):
        """(send, recv) CipherStates for this side."""
        k1, k2 = _hkdf(self.ck, b"", 2)
        c1, c2 = CipherState(k1[:32]), CipherState(k2[:32])
        return (c1, c2) if self.initiator else (c2, c1)


def node_payload(node):
    return cbor2.dumps({"node": node})


def pieces(frame, size=MAX_PIECE):
    """frame cut into (flags, piece) of at most size bytes, the last one final."""
    out = [(0, frame[i:i + size]) for i in range(0, len(frame), size)] or [(0, b"")]
    out[-1] = (FINAL, out[-1][1])
    return out


# ---- a minimal WebSocket over a socket ----

class Closed(Exception):
    pass


class NoisePeer:
    """One WebSocket connection speaking nws-link, as client (connect) or server (accept)."""

    def __init__(self, sock, client, node=None):
        self.sock, self.client = sock, client
        self.node = node or os.urandom(16)
        self.rbuf = b""
        self.send_cs = self.recv_cs = None
        self.peer_node = None
        self.hash = None
        self.close_frame = None     # (status, reason) of a close frame received
        self.acc = b""

    # -- connecting --

    @classmethod
    def connect(cls, address, port, path=PATH, host="nws-link", subprotocol=SUBPROTOCOL,
                node=None, timeout=10, upgrade=True):
        """Connects and (unless upgrade=False) does the WebSocket upgrade for path."""
        sock = socket.create_connection((address, port), timeout)
        p = cls(sock, True, node)
        if upgrade:
            p.upgrade(path, host, subprotocol, timeout)
        return p

    def upgrade(self, path=PATH, host="nws-link", subprotocol=SUBPROTOCOL, timeout=10):
        key = base64.b64encode(os.urandom(16))
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n")
        self.send_raw(req.encode())
        head = self._read_until(b"\r\n\r\n", timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            raise Closed("upgrade refused: %r" % head.split(b"\r\n")[0])
        want = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        if want not in head:
            raise Closed("bad Sec-WebSocket-Accept")
        return head

    @classmethod
    def listen(cls, address, port=0):
        """A listening socket; .port is the bound port, .accept() a NoisePeer server end."""
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(16)
        return _Listener(s)

    def _answer_upgrade(self, timeout):
        head = self._read_until(b"\r\n\r\n", timeout)
        self.request = head
        key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"sec-websocket-key:")]
        if not key:
            raise Closed("no Sec-WebSocket-Key")
        acc = base64.b64encode(hashlib.sha1(key[0] + WS_GUID).digest()).decode()
        self.send_raw((f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n"
                       f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n").encode())

    # -- bytes --

    def send_raw(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the nws-link peer in time")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("no data from the nws-link peer in time")
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            raise Closed("connection closed")
        self.rbuf += d

    def _read_until(self, sep, timeout):
        deadline = time.monotonic() + timeout
        while sep not in self.rbuf:
            self._fill(deadline)
        i = self.rbuf.index(sep) + len(sep)
        out, self.rbuf = self.rbuf[:i], self.rbuf[i:]
        return out

    def _read_n(self, n, deadline):
        while len(self.rbuf) < n:
            self._fill(deadline)
        out, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return out

    # -- WebSocket frames --

    def send_ws(self, op, payload=b"", fin=True):
        """One WebSocket frame, masked when we are the client."""
        h = bytes([(0x80 if fin else 0) | op])
        m = 0x80 if self.client else 0
        n = len(payload)
        if n < 126:
            h += bytes([m | n])
        elif n < 65536:
            h += bytes([m | 126]) + struct.pack(">H", n)
        else:
            h += bytes([m | 127]) + struct.pack(">Q", n)
        if self.client:
            mask = os.urandom(4)
            h += mask
            payload = _mask(payload, mask)
        self.send_raw(h + payload)

    def send_binary(self, data):
        self.send_ws(WS_BINARY, data)

    def close(self, status=1000, reason="", shutdown=True):
        """Sends a close frame with any status and reason (bytes or text)."""
        r = reason.encode() if isinstance(reason, str) else reason
        try:
            self.send_ws(WS_CLOSE, struct.pack(">H", status) + r)
            if shutdown:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def recv_ws(self, timeout=10):
        """The next frame as (opcode, payload); pings are answered and returned too.
        Raises Closed when the connection ends, TimeoutError when nothing comes."""
        deadline = time.monotonic() + timeout
        h = self._read_n(2, deadline)
        op, n = h[0] & 0x0f, h[1] & 0x7f
        self.fin = bool(h[0] & 0x80)
        if n == 126:
            n = struct.unpack(">H", self._read_n(2, deadline))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read_n(8, deadline))[0]
        mask = self._read_n(4, deadline) if h[1] & 0x80 else None
        p = self._read_n(n, deadline)
        if mask:
            p = _mask(p, mask)
        if op == WS_PING:
            self.send_ws(WS_PONG, p)
        if op == WS_CLOSE:
            self.close_frame = (struct.unpack(">H", p[:2])[0] if len(p) >= 2 else None,
                                p[2:].decode(errors="replace"))
        return op, p

    def recv_message(self, timeout=10):
        """The next binary message (fragments joined), skipping pings and pongs.
        Raises Closed on a close frame or the end of the connection."""
        deadline = time.monotonic() + timeout
        msg = b""
        while True:
            op, p = self.recv_ws(max(deadline - time.monotonic(), 0.001))
            if op in (WS_PING, WS_PONG):
                continue
            if op == WS_CLOSE:
                raise Closed(f"close frame {self.close_frame}")
            msg += p
            if self.fin:
                return msg

    def closed_within(self, timeout):
        """True when the other end closes the TCP connection within timeout seconds
        (whatever it sends before), False when it is still open then."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                self.rbuf = self.rbuf[-(1 << 16):]
        except Closed:
            return True
        except TimeoutError:
            return False

    def drain(self, timeout):
        """Every WebSocket frame received until the connection closes or timeout."""
        out, deadline = [], time.monotonic() + timeout
        try:
            while True:
                out.append(self.recv_ws(max(deadline - time.monotonic(), 0.001)))
        except (Closed, TimeoutError):
            return out

    # -- Noise --

    def handshake(self, psk, prologue=PROLOGUE, confirm=True, timeout=10, msg1=None):
        """NNpsk0 as initiator: sends msg1 (ours, or the given bytes), reads msg2, splits,
        and (confirm) sends the first transport message at once, an empty non-final piece,
        as nws(7) LINKS asks. Returns the msg1 sent."""
        hs = Handshake(True, psk, prologue)
        m1 = hs.write_message(node_payload(self.node))
        self.send_binary(msg1 if msg1 is not None else m1)
        self.peer_node = cbor2.loads(hs.read_message(self.recv_message(timeout)))["node"]
        self.hash = hs.h
        self.send_cs, self.recv_cs = hs.split()
        if confirm:
            self.send_piece(0, b"")
        return m1

    def respond(self, psk, prologue=PROLOGUE, timeout=10):
        """NNpsk0 as responder: reads msg1, writes msg2, splits. The initiator's first
        transport message is read by the caller (recv_frame)."""
        hs = Handshake(False, psk, prologue)
        self.peer_node = cbor2.loads(hs.read_message(self.recv_message(timeout)))["node"]
        self.send_binary(hs.write_message(node_payload(self.node)))
        self.hash = hs.h
        self.send_cs, self.recv_cs = hs.split()

    def send_piece(self, flags, data):
        self.send_binary(self.send_cs.encrypt(bytes([flags]) + data))

    def send_frame(self, frame, size=MAX_PIECE):
        """A frame (dict: encoded as CBOR; bytes: as given) in pieces of size bytes."""
        data = cbor2.dumps(frame) if isinstance(frame, dict) else frame
        for flags, piece in pieces(data, size):
            self.send_piece(flags, piece)

    def recv_frame(self, timeout=10, raw=False):
        """The next whole frame (a dict, or bytes with raw=True); None when the
        connection closes first. Empty pieces (keepalives) are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.recv_message(max(deadline - time.monotonic(), 0.001))
            except Closed:
                return None
            pt = self.recv_cs.decrypt(msg)
            self.acc += pt[1:]
            if pt[0] & FINAL:
                data, self.acc = self.acc, b""
                return data if raw else cbor2.loads(data)


class _Listener:
    def __init__(self, sock):
        self.sock = sock
        self.port = sock.getsockname()[1]

    def accept(self, timeout=10, node=None):
        self.sock.settimeout(timeout)
        s, _ = self.sock.accept()
        s.settimeout(None)
        p = NoisePeer(s, False, node)
        p._answer_upgrade(timeout)
        return p

    def close(self):
        self.sock.close()


def _mask(data, mask):
    k = (mask * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")

"""A tampering TCP relay on loopback for link tests: forwards one listener's traffic and,
in the client-to-server direction, parses the WebSocket frames after the HTTP upgrade so
it can damage exactly one message after the Noise handshake.

    r = Relay(target_port, mode="flip")   # or "replay", or "pass"
    ... dial 127.0.0.1:r.port ...
    r.close()

flip:   flips one byte of the first transport message (the frame after the handshake).
replay: sends the first transport message twice."""
import socket
import threading


def _frame_len(buf):
    """Length of the complete WebSocket frame at the start of buf, or 0 if incomplete."""
    if len(buf) < 2:
        return 0
    n = buf[1] & 0x7f
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return 0
        n = int.from_bytes(buf[2:4], "big")
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return 0
        n = int.from_bytes(buf[2:10], "big")
        pos = 10
    if buf[1] & 0x80:
        pos += 4
    return pos + n if len(buf) >= pos + n else 0


def _shutdown(*socks):
    for x in socks:
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Relay:
    def __init__(self, target_port, mode="pass"):
        self.target_port = target_port
        self.mode = mode
        self.tampered = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                c.close()
                continue
            s.settimeout(None)
            self.conns += [c, s]
            threading.Thread(target=self._up, args=(c, s), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        _shutdown(src, dst)

    def _up(self, src, dst):
        """Client to server: HTTP upgrade as is, then frame by frame."""
        buf = b""
        upgraded = False
        frames = 0
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                buf += d
                if not upgraded:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    dst.sendall(buf[:end + 4])
                    buf = buf[end + 4:]
                    upgraded = True
                while True:
                    n = _frame_len(buf)
                    if not n:
                        break
                    frame, buf = buf[:n], buf[n:]
                    frames += 1
                    # Frame 1 is the first handshake message; 2 is the first transport one.
                    if frames == 2 and self.mode == "flip":
                        frame = frame[:-1] + bytes([frame[-1] ^ 0x01])
                        self.tampered += 1
                    dst.sendall(frame)
                    if frames == 2 and self.mode == "replay":
                        dst.sendall(frame)
                        self.tampered += 1
        except OSError:
            pass
        _shutdown(src, dst)

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

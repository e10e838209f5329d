"""nws-proxy as a drop-in replacement for the seed's Go proxy (issue 10): how it reads the
channel path, picks the subprotocol, answers plain HTTP, takes -port and says where it
serves. Each expectation names what the seed's proxy does (service.go, utils.go of
github.com/namedwebsockets/networkwebsockets). All local: one proxy on loopback that
cannot reach any avahi-daemon."""
import asyncio
import base64
import json
import os
import socket
import sys

import cbor2
import pytest
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from hosts import wait_for  # noqa: E402
from test_proxy import T, action, connect, run, status  # noqa: E402


def request(port, text):
    """Sends one raw HTTP request; returns (status, lowercased head, body) once the
    server has answered and closed, or after 3 s of silence."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(text.encode())
        s.settimeout(3)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep:
                    h = head.decode(errors="replace").lower()
                    n = [int(line.split(":", 1)[1]) for line in h.split("\r\n")
                         if line.startswith("content-length:")]
                    if h.startswith("http/1.1 101") or (n and len(body) >= n[0]):
                        break
        except socket.timeout:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, f"no answer to {text.splitlines()[0]!r}"
    return int(head.split()[1]), head.decode(errors="replace").lower(), body


def get(port, path, method="GET", extra=""):
    return request(port, f"{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                         f"Connection: close\r\n{extra}\r\n")


def upgrade(port, path, protocols=None):
    extra = f"Sec-WebSocket-Protocol: {protocols}\r\n" if protocols is not None else ""
    return request(port, f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         f"Sec-WebSocket-Version: 13\r\n{extra}\r\n")


def test_plus_is_plus_and_escapes_decode_one_channel(proxy):
    # Go's URL.Path keeps a literal '+' and decodes %2B: all of these are channel "a+b+c".
    p = proxy()

    async def go():
        spellings = ["/a+b+c", "/a%2Bb%2Bc", "/a+b%2bc"]
        clients = [await connect(p.url + path) for path in spellings]
        ids = [await status(c) for c in clients]
        for c, me in zip(clients, ids):
            for other in ids:
                if other != me:
                    await c.until(lambda m, o=other: action("connect")(m) and m["target"] == o)
        await clients[0].send(json.dumps({"action": "broadcast", "data": "plus"}))
        for c in clients[1:]:
            m = await c.until(action("broadcast"))
            assert m == {"action": "broadcast", "source": ids[0], "data": "plus"}
        # A different channel: "a b" is no name (a space), and "a+b" is not "a+b+c".
        for bad in ["/a%20b", "/a%20b+c"]:
            with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
                await connect(p.url + bad)
            assert e.value.status_code == 400, bad
        other = await connect(p.url + "/a+b")
        await status(other)
        assert not [m for m in await clients[0].quiet() if action("connect")(m)]
        for c in clients + [other]:
            await c.close()
    run(go())


def test_nws_pipe_via_proxy_with_plus_in_the_name(proxy, nws_bin):
    p = proxy()

    async def go():
        c = await connect(p.url + "/x%2By")
        await status(c)
        pipe = await asyncio.create_subprocess_exec(
            nws_bin("nws-pipe"), "--via-proxy", p.url, "-w", "1", "-t", "10", "-1", "x+y",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(pipe.communicate(b"through the pipe\n"), 20)
        assert pipe.returncode == 0, err
        m = await c.until(action("broadcast"))
        assert m["data"] == "through the pipe"
        await c.close()
    run(go())


@pytest.mark.parametrize("offered, echoed", [
    (["chat"], "chat"),
    (["chat", "superchat"], "chat"),
    (["nws.cbor", "chat"], "nws.cbor"),
    (["chat", "nws.cbor"], "chat"),
])
def test_first_subprotocol_offered_is_accepted_and_echoed(proxy, offered, echoed):
    # The seed's upgradeHTTPToWebSocket echoes the first name of Sec-WebSocket-Protocol.
    p = proxy()

    async def go():
        c = await connect(p.url + "/subs", subprotocols=offered)
        assert c.subprotocol == echoed
        j = await connect(p.url + "/subs")
        if echoed == "nws.cbor":
            await c.send(cbor2.dumps({"action": "status"}))
        else:
            await c.send(json.dumps({"action": "status"}))
        me = (await c.until(action("status")))["source"]
        raw_kind = []
        await j.send(json.dumps({"action": "message", "target": me, "data": "hi"}))
        while True:
            raw = await asyncio.wait_for(c.ws.recv(), T)
            raw_kind.append(type(raw))
            m = cbor2.loads(raw) if isinstance(raw, bytes) else json.loads(raw)
            if m.get("action") == "message":
                break
        assert m["data"] == "hi"
        # nws.cbor first means CBOR frames; any other first name, the seed's JSON text.
        assert raw_kind[-1] is (bytes if echoed == "nws.cbor" else str)
        await c.close()
        await j.close()
    run(go())


def test_subprotocol_echo_on_the_wire(proxy):
    p = proxy()
    code, head, _ = upgrade(p.port, "/wire", "v1.chat, v2.chat")
    assert code == 101 and "sec-websocket-protocol: v1.chat" in head
    code, head, _ = upgrade(p.port, "/wire")
    assert code == 101 and "sec-websocket-protocol" not in head
    # What lws cannot match it would drop without a word: a 400 that says why instead.
    for bad in ["123", "a" * 64, "x, " + "y" * 130]:
        code, _, body = upgrade(p.port, "/wire", bad)
        assert code == 400 and b"subprotocol" in body, bad
    code, _, body = request(p.port, f"GET /wire HTTP/1.1\r\nHost: localhost:{p.port}\r\n"
                                    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert code == 400 and b"Sec-WebSocket-Key" in body


def test_plain_get_of_a_channel_is_400_with_a_one_line_hint(proxy):
    # The seed answers 400 to a GET of a channel path without "Upgrade: websocket".
    p = proxy()
    for path in ["/chat", "/a+b", "/x%2By"]:
        code, head, body = get(p.port, path)
        assert code == 400, path
        assert "text/plain" in head
        text = body.decode()
        assert text.endswith("\n") and text.count("\n") == 1
        assert "WebSocket" in text and "error.css" not in text
    code, head, body = get(p.port, "/no/such")
    assert code == 404 and "text/plain" in head and b"<link" not in body
    assert get(p.port, "/")[0] == 200


def test_head_and_other_methods_are_405_as_at_the_seed(proxy):
    # The seed's ServeLocalRequest: any method but GET is 405, HEAD included.
    p = proxy()
    for path in ["/", "/chat", "/nws.js"]:
        code, head, body = get(p.port, path, method="HEAD")
        assert code == 405, path
        assert body == b"", "a HEAD answer has no body"
        assert "allow: get" in head
    code, _, body = get(p.port, "/chat", method="POST", extra="Content-Length: 0\r\n")
    assert code == 405 and body


def test_error_pages_link_no_missing_file(proxy):
    # libwebsockets writes a few error pages itself (here: an Upgrade it does not know);
    # they link /error.css, which must exist.
    p = proxy()
    code, _, body = get(p.port, "/chat", extra="Upgrade: foo\r\nConnection: Upgrade\r\n")
    assert code == 403
    assert b"/error.css" in body
    code, head, _ = get(p.port, "/error.css")
    assert code == 200 and "text/css" in head
    # Ours are plain text and link nothing.
    for path, host in [("/", "evil.example"), ("/no/such", None)]:
        code, head, body = request(p.port, f"GET {path} HTTP/1.1\r\nHost: "
                                           f"{host or f'localhost:{p.port}'}\r\n\r\n")
        assert code in (403, 404) and "text/plain" in head and b"<" not in body


@pytest.mark.parametrize("flags", [["-port", "PORT"], ["-port=PORT"], ["--port", "PORT"]])
def test_dash_port_and_the_start_up_line(proxy, flags):
    # The seed's only flag is -port; it logs "Serving ... at address [ ws://localhost:N/ ]".
    p = proxy("--local", options=flags)
    wait_for(lambda: "\n" in p.stderr(), T, "the start-up line")
    first = p.stderr().splitlines()[0]
    assert first.startswith("nws-proxy: serving ")
    assert f"ws://localhost:{p.port}/" in first and "127.0.0.1" in first
    code, _, _ = get(p.port, "/")
    assert code == 200


def test_binary_broadcast_keeps_its_sender_for_clients_that_ask(proxy):
    p = proxy()

    async def go():
        plain = await connect(p.url + "/bin")           # the seed's form: the bytes only
        asks = await connect(p.url + "/bin?bytes=base64")
        sender = await connect(p.url + "/bin")
        sid = await status(sender)
        await status(plain)
        await status(asks)
        await sender.send(b"\x00\x01\xfe\xff")
        assert await plain.until(lambda m: isinstance(m, bytes)) == b"\x00\x01\xfe\xff"
        m = await asks.until(action("broadcast"))
        assert m == {"action": "broadcast", "source": sid,
                     "data": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
                     "encoding": "base64"}
        # Text broadcasts are the same for both.
        await sender.send(json.dumps({"action": "broadcast", "data": {"n": 1}}))
        for c in (plain, asks):
            m = await c.until(action("broadcast"))
            assert m == {"action": "broadcast", "source": sid, "data": {"n": 1}}
        for c in (plain, asks, sender):
            await c.close()
    run(go())

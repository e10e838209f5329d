"""What reaches a terminal when the network or a peer names things with control bytes:
nws-browse --format text and its -vv log, nws-pipe's log of peer ids and error reasons;
all escaped by log_escape (nws-browse(1))."""
import base64
import hashlib
import os
import secrets
import signal
import subprocess
import sys

from hosts import wait_for
from proc import assert_no_sanitizer

sys.path.insert(0, os.path.dirname(__file__))
from test_discovery import channel_keys  # noqa: E402


def tag(disc, port):
    nonce = secrets.token_bytes(16)
    mac = hashlib.blake2b(nonce + port.to_bytes(2, "big"), key=disc, digest_size=16).digest()
    return base64.urlsafe_b64encode(nonce + mac).rstrip(b"=").decode()


def test_hostile_names_are_escaped(hosts, nws_bin):
    a, b = hosts(2)
    ch = f"chat-{secrets.token_hex(6)}"
    _, disc, _ = channel_keys(ch)
    port = 4321
    # A host name and an instance name that would clear the screen, move the cursor,
    # send CSI as a C1 control and reverse the line, beside readable UTF-8.
    host = "K\u00fcche-\x1b[2J\x1b[H\r\b\x7f\u009b31m\u202eevil.local".encode()
    inst = "Wohnzimmer \x1b]0;pwned\x07\u009b2J".encode()
    a.popen(["avahi-publish", "-a", "-R", host, a.addr])
    a.popen(["avahi-publish", "-s", "-H", host, inst, "_nws._tcp", str(port), "v=1",
             f"t={tag(disc, port)}"])
    out = {}

    def browsed(locale):
        p = b.run([nws_bin("nws-browse"), "-t", "-vv", "--format", "text", ch], timeout=30,
                  env={"LC_ALL": locale})
        out["p"] = p
        return p.returncode == 0 and a.addr.encode() in p.stdout
    wait_for(lambda: browsed("C.UTF-8"), 30, "nws-browse to find the hostile service")
    p = out["p"]
    inst_esc = "Wohnzimmer \\x1b]0;pwned\\x07\\xc2\\x9b2J"
    # The line shows the host's bytes (UTF-8 readable), every hostile one escaped.
    lines = [ln for ln in p.stdout.decode().splitlines() if a.addr in ln]
    assert lines == [f"+ {ch} {a.addr}:{port} K\u00fcche-\\x1b[2J\\x1b[H\\x0d\\x08\\x7f"
                     f"\\xc2\\x9b31m\\xe2\\x80\\xaeevil.local {b.iface}"], p.stdout
    # -vv names the instance, escaped, also where avahi fails to resolve it (no AAAA
    # for the host): that name was read after avahi had freed it.
    err = p.stderr.decode()
    assert f"found {inst_esc} at {a.addr} port {port}: 1 match(es)" in err, err
    assert f"cannot resolve {inst_esc} in local" in err, err
    for raw in ("\x1b", "\x07", "\r", "\b", "\x7f", "\u009b", "\u202e"):
        assert raw not in p.stdout.decode() + err
    assert_no_sanitizer(err)
    # Outside a UTF-8 locale the terminal may take bytes inside UTF-8 for controls: all
    # of them escaped, nothing but ASCII out.
    assert browsed("C"), out["p"].stderr
    p = out["p"]
    lines = [ln for ln in p.stdout.decode().splitlines() if a.addr in ln]
    assert lines[0].startswith(f"+ {ch} {a.addr}:{port} K\\xc3\\xbcche-\\x1b[2J"), p.stdout
    assert max(p.stdout + p.stderr) < 0x80
    assert_no_sanitizer(p.stderr.decode())


# Stand-in nws-link: once the channel is open, says a peer with a hostile id joined,
# passes on an error with a hostile reason, and says the peer left; then passes frames on.
HOSTILE_LINK = '''#!/usr/bin/python3
import sys, cbor2
ID = "evil\\x1b[2J\\u009b\\u202e"
dec = cbor2.CBORDecoder(sys.stdin.buffer)
out = sys.stdout.buffer
while True:
    try:
        f = dec.decode()
    except Exception:
        break
    out.write(cbor2.dumps(f))
    if f.get("action") == "open":
        ch = f["channel"]
        for g in ({"action": "connect", "channel": ch, "target": ID},
                  {"action": "error", "code": 1, "reason": "bad \\x1b]0;title\\x07\\r\\u009b"},
                  {"action": "disconnect", "channel": ch, "target": ID}):
            out.write(cbor2.dumps(g))
    out.flush()
'''


def test_pipe_logs_peer_text_escaped(tmp_path, nws_bin):
    pipe_bin = nws_bin("nws-pipe")
    for name, body in (("nws-browse", "#!/bin/sh\nexec cat\n"),
                       ("nws-advertise", "#!/bin/sh\nexec cat\n"),
                       ("nws-link", HOSTILE_LINK)):
        (tmp_path / name).write_text(body)
        (tmp_path / name).chmod(0o755)
    errf = tmp_path / "stderr"
    with open(errf, "wb") as ef:
        p = subprocess.Popen([pipe_bin, "-vv", "--no-proxy", "chat"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=ef,
                             env={**os.environ, "NWS_LIBEXEC": str(tmp_path)})
    try:
        wait_for(lambda: b"left" in errf.read_bytes(), 15, "the hostile peer to leave")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)
    err = errf.read_bytes().decode()
    peer = "evil\\x1b[2J\\xc2\\x9b\\xe2\\x80\\xae"
    assert f"nws-pipe: peer {peer} joined\n" in err, err
    assert f"nws-pipe: peer {peer} left\n" in err, err
    assert "nws-pipe: bad \\x1b]0;title\\x07\\x0d\\xc2\\x9b\n" in err, err
    for raw in ("\x1b", "\x07", "\r", "\u009b", "\u202e"):
        assert raw not in err
    assert_no_sanitizer(err)


def test_link_logs_a_members_malformed_text_escaped(hosts, nws_bin):
    # jansson's reason for refusing a tag 262 "data" quotes the duplicate key, here
    # holding C1 CSI: nws-link -v says why it closed the link, escaped.
    import cbor2
    from linknode import LinkNode, sanitizer_reports
    from test_hostile_mesh import CH, member
    (h,) = hosts(1, avahi=False)
    n = LinkNode(nws_bin("nws-link"), [CH], host=h)
    p = member(n, h)
    n.wait_action("linked")
    data = cbor2.CBORTag(262, '{"\u009b[2J":1,"\u009b[2J":2}'.encode())
    p.send_frame({"action": "broadcast", "channel": CH, "source": "p1", "data": data})
    assert p.closed_within(5)
    line = wait_for(lambda: [ln for ln in n.errors() if "malformed frame" in ln], 10,
                    "the reason the link closed")[0]
    assert "\\xc2\\x9b[2J" in line, line
    assert "\u009b" not in n.stderr() and "\x1b" not in n.stderr()
    assert not sanitizer_reports()

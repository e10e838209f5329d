"""What reaches a terminal from nws-browse --format text (and its -vv log) when a host on
the network names itself and its service with control bytes: escaped (nws-browse(1))."""
import base64
import hashlib
import os
import secrets
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

    def browsed():
        p = b.run([nws_bin("nws-browse"), "-t", "-vv", "--format", "text", ch], timeout=30)
        out["p"] = p
        return p.returncode == 0 and a.addr.encode() in p.stdout
    wait_for(browsed, 30, "nws-browse to find the hostile service")
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

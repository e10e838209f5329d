"""nws-browse and nws-advertise on real avahi-daemons in test hosts (nws(7) DISCOVERY)."""
import base64
import hashlib
import json
import queue
import re
import secrets
import signal
import subprocess
import threading
import time

import pytest

from hosts import wait_for
from proc import Proc, assert_no_sanitizer

AVAHI_DOWN = "cannot reach avahi-daemon (is it running?)"


class Tool(Proc):
    """A running nws tool: frames to its stdin, JSON lines from its stdout collected by a
    thread, stderr kept (in a file) for assertions."""

    def __init__(self, host, argv, **kw):
        self.frames = []
        self._q = queue.Queue()
        super().__init__(argv, host=host, stderr_file=True, **kw)
        self.p = self.proc

    def _out_line(self, line):
        self._q.put(json.loads(line))

    def _pump(self, f, into):
        super()._pump(f, into)
        self._q.put(None)

    def wait(self, pred, timeout=15, what="a frame", after=0):
        """Returns the first frame from index after on (read so far or later) for which
        pred is true."""
        deadline = time.monotonic() + timeout
        seen = after
        while True:
            while seen < len(self.frames):
                f = self.frames[seen]
                seen += 1
                if pred(f):
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; frames: {self.frames}; "
                                     f"stderr: {self.stderr()}")
            try:
                f = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if f is None:
                raise AssertionError(f"exited ({self.p.wait()}) before {what}; frames: "
                                     f"{self.frames}; stderr: {self.stderr()}")
            self.frames.append(f)

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.p.wait(10)


def is_found(channel, addr=None):
    return lambda f: (f.get("action") == "found" and f.get("channel") == channel and
                      (addr is None or f.get("address") == addr))


def is_lost(channel):
    return lambda f: f.get("action") == "lost" and f.get("channel") == channel


def frames(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def unique(prefix="chat"):
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def net(module_hosts):
    return module_hosts(2)


@pytest.fixture
def tools():
    """Starts tools and stops them at the end of the test, so shared hosts stay clean."""
    started = []

    def start(host, argv, **kw):
        t = Tool(host, argv, **kw)
        started.append(t)
        return t
    yield start
    # SIGTERM is a clean exit (records withdrawn); a sanitizer report is a failure.
    for t in started:
        rc = t.stop()
        err = t.stderr()
        assert rc == 0, err
        assert_no_sanitizer(err)


def advertise(tools, nws_bin, host, channel, port=4000, *extra):
    adv = tools(host, [nws_bin("nws-advertise"), "-p", str(port), *extra, channel])
    adv.wait(lambda f: f.get("action") == "advertised", what="advertised")
    return adv


# The KDF of nws(7) DISCOVERY, computed independently with PyNaCl and hashlib.
def channel_keys(name):
    from nacl import pwhash
    salt = hashlib.blake2b(b"nws/1 channel", digest_size=32).digest()[:16]
    k = pwhash.argon2id.kdf(32, name.encode(), salt, opslimit=pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                            memlimit=pwhash.argon2id.MEMLIMIT_INTERACTIVE)
    disc = hashlib.blake2b(b"nws/1 discovery", key=k, digest_size=32).digest()
    link = hashlib.blake2b(b"nws/1 link", key=k, digest_size=32).digest()
    return k, disc, link


def tag_ok(disc, port, t):
    raw = base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
    nonce, tag = raw[:16], raw[16:]
    want = hashlib.blake2b(nonce + port.to_bytes(2, "big"), key=disc,
                           digest_size=16).digest()
    return len(raw) == 32 and tag == want


def txt_tags(pcap):
    """Every t= value in the captured mDNS packets (TXT strings are length-prefixed)."""
    return set(m.decode() for m in re.findall(rb"\x2dt=([A-Za-z0-9_-]{43})", pcap))


# --- one-shot browsing -------------------------------------------------------------------

def test_browse_terminate_finds_the_advertised_peer(net, tools, nws_bin):
    a, b = net
    advertise(tools, nws_bin, a, "chat", 4000)
    p = b.run([nws_bin("nws-browse"), "-t", "chat"], timeout=20, text=True)
    assert p.returncode == 0, p.stderr
    found = [f for f in frames(p.stdout) if f["action"] == "found"]
    v4 = [f for f in found if f["address"] == a.addr]
    assert v4, found
    assert v4[0]["channel"] == "chat" and v4[0]["port"] == 4000 and "path" not in v4[0]
    assert v4[0]["interface"] == b.iface and v4[0]["host"] == f"{a.name}.local"
    assert re.fullmatch(r"[0-9a-f]{16}", v4[0]["instance"])
    # IPv6 too: link-local, so the address carries its interface.
    v6 = [f for f in found if ":" in f["address"]]
    assert v6 and v6[0]["address"].startswith("fe80:") and v6[0]["address"].endswith("%eth0")

    p = b.run([nws_bin("nws-browse"), "-t", "other"], timeout=20, text=True)
    assert p.returncode == 1, p.stderr
    assert not [f for f in frames(p.stdout) if f["action"] == "found"]

    p = b.run([nws_bin("nws-browse"), "-t", "-a"], timeout=20, text=True)
    assert p.returncode == 0, p.stderr
    unmatched = [f for f in frames(p.stdout) if f["action"] == "found" and
                 f["address"] == a.addr and f["port"] == 4000]
    assert unmatched and "channel" not in unmatched[0]


def test_format_text_and_channel_sources(net, tools, nws_bin, tmp_path):
    a, b = net
    ch = unique()
    advertise(tools, nws_bin, a, ch, 4001)
    p = b.run([nws_bin("nws-browse"), "-t", "--format", "text", ch], timeout=20, text=True)
    assert p.returncode == 0, p.stderr
    assert f"+ {ch} {a.addr}:4001 {a.name}.local eth0" in p.stdout.splitlines()

    # NWS_CHANNEL and --channel-file keep the name out of argv.
    p = b.run([nws_bin("nws-browse"), "-t"], timeout=20, text=True,
              env={"NWS_CHANNEL": f"nothing-here, {ch}"})
    assert p.returncode == 0 and [f for f in frames(p.stdout) if f.get("channel") == ch]
    cf = tmp_path / "channels"
    cf.write_text(f"# mine\n{ch}\n")
    p = b.run([nws_bin("nws-browse"), "-t", "--channel-file", str(cf)], timeout=20, text=True)
    assert p.returncode == 0 and [f for f in frames(p.stdout) if f.get("channel") == ch]


def test_interface_option(net, tools, nws_bin):
    a, b = net
    ch = unique()
    advertise(tools, nws_bin, a, ch, 4002, "-i", a.iface)
    p = b.run([nws_bin("nws-browse"), "-t", "-i", b.iface, ch], timeout=20, text=True)
    assert p.returncode == 0 and all(f["interface"] == b.iface for f in frames(p.stdout))
    p = b.run([nws_bin("nws-browse"), "-t", "-i", "lo", ch], timeout=20, text=True)
    assert p.returncode == 1
    p = b.run([nws_bin("nws-browse"), "-t", "-i", "nope0", ch], timeout=20, text=True)
    assert p.returncode == 1 and "no network interface named nope0" in p.stderr


def test_usage_errors_exit_2(net, nws_bin):
    a, _ = net
    for argv in (["nws-browse", "-t"], ["nws-browse", "--format", "xml", "x"],
                 ["nws-browse", "bad/name"], ["nws-advertise", "chat"],
                 ["nws-advertise", "-p", "70000", "chat"], ["nws-browse", "--nope"]):
        p = a.run([nws_bin(argv[0]), *argv[1:]], timeout=10, text=True)
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.startswith(argv[0] + ": ") or "usage:" in p.stderr
        assert "bad/name" not in p.stderr


# --- long-running browsing ---------------------------------------------------------------

def test_stopping_the_advertiser_yields_lost(net, tools, nws_bin):
    a, b = net
    ch = unique()
    browse = tools(b, [nws_bin("nws-browse"), ch])
    adv = advertise(tools, nws_bin, a, ch)
    browse.wait(is_found(ch, a.addr), what="found")
    assert adv.stop() == 0
    browse.wait(is_lost(ch), what="lost")


def test_close_withdraws_and_frames_pass_through_in_order(net, tools, nws_bin):
    a, b = net
    ch = unique()
    browse = tools(b, [nws_bin("nws-browse"), ch])
    adv = tools(a, [nws_bin("nws-advertise")])
    adv.send(action="hello", n=1)
    adv.send(action="listening", channel=ch, port=4100)
    adv.send(action="broadcast", channel=ch, source="aa", data="x")
    got = adv.wait(lambda f: f.get("action") == "advertised", what="advertised")
    assert got["channel"] == ch and re.fullmatch(r"[0-9a-f]{16}", got["instance"])
    # listening is consumed; the rest arrives unchanged and in order.
    assert [f["action"] for f in adv.frames[:2]] == ["hello", "broadcast"]
    assert adv.frames[0] == {"action": "hello", "n": 1}
    assert adv.frames[1]["data"] == "x"
    found = browse.wait(is_found(ch, a.addr), what="found")
    assert found["port"] == 4100 and "path" not in found
    adv.send(action="close", channel=ch)
    adv.wait(lambda f: f.get("action") == "close" and f.get("channel") == ch, what="close")
    browse.wait(is_lost(ch), what="lost after close")
    assert adv.p.poll() is None


def test_bad_frames_are_reported_and_skipped(net, tools, nws_bin):
    a, _ = net
    adv = tools(a, [nws_bin("nws-advertise")])
    adv.send(action="listening", channel="chat")
    err = adv.wait(lambda f: f.get("action") == "error", what="error frame")
    assert err["code"] == 1 and "port" in err["reason"] and "chat" not in err["reason"]
    adv.p.stdin.write(b'{"action": broken\n')
    adv.send(action="after", n=2)
    assert adv.wait(lambda f: f.get("action") == "after", what="next frame") == \
        {"action": "after", "n": 2}
    assert adv.p.poll() is None
    assert "chat" not in adv.stderr()


def test_channel_opened_later_is_matched(net, tools, nws_bin):
    a, b = net
    ch = unique()
    browse = tools(b, [nws_bin("nws-browse"), "-a"])
    advertise(tools, nws_bin, a, ch, 4200)
    browse.wait(lambda f: f.get("action") == "found" and "channel" not in f and
                f.get("port") == 4200, what="unmatched found")
    browse.send(action="open", channel=ch)
    # open is passed on before the found it causes.
    browse.wait(lambda f: f.get("action") == "open" and f.get("channel") == ch, what="open")
    f = browse.wait(is_found(ch, a.addr), what="found after open")
    assert f["port"] == 4200
    browse.send(action="close", channel=ch)
    browse.wait(lambda f: f.get("action") == "close", what="close")
    # A second advertisement of the closed channel is not matched any more.
    advertise(tools, nws_bin, a, ch, 4201)
    browse.wait(lambda f: f.get("action") == "found" and f.get("port") == 4201, what="found")
    assert not [f for f in browse.frames if f.get("port") == 4201 and f.get("channel")]


SERVICE_XML = """<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group><name>{name}</name><service><type>_nws._tcp</type><port>{port}</port>
{txt}</service></service-group>
"""


def test_malformed_records_are_ignored(net, tools, nws_bin):
    a, b = net
    ch = unique()
    _, disc, _ = channel_keys(ch)
    good = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    bad_txts = {
        4901: ["v=2", f"t={good}"],                     # unknown version
        4902: [f"t={good}"],                            # no version
        4903: ["v=1", f"t={good}", "t=" + "B" * 43],    # two tags
        4904: ["v=1"],                                  # no tag
        4905: ["v=1", "t=!!"],                         # tag not base64url
        4906: ["v=1", "t=" + "A" * 200],               # tag far too long
        4908: ["v=1", "v=2", f"t={good}"],              # two versions
        4909: ["v=1", f"t={good[:42]}"],                # tag one character short
        4910: ["v=1", f"t={good[:42]} "],               # ... and a space
        4911: ["v=1", f"t= {good[:42]}"],
        4912: ["v=1", f"t={good[:21]}+{good[22:]}"],    # standard base64 alphabet
        4907: ["v=1", f"t={good}"],                     # well-formed, tag of no channel
    }
    browse = tools(b, [nws_bin("nws-browse"), "-a", "-vv", ch])
    nbad = len(bad_txts) - 1
    for port, txt in bad_txts.items():
        body = "".join(f"<txt-record>{t}</txt-record>" for t in txt)
        a.add_service_file(f"bad{port}", SERVICE_XML.format(name=f"bad{port}", port=port,
                                                            txt=body))
    try:
        # Only the well-formed one is reported, and only as unmatched.
        f = browse.wait(lambda f: f.get("action") == "found" and f.get("port") == 4907,
                        what="the well-formed record")
        assert "channel" not in f
        wait_for(lambda: len(set(re.findall(r"ignoring (bad49\d\d) in local: not an nws v=1 "
                                            r"record", browse.stderr()))) == nbad, 15,
                 "a debug line per malformed record")
        assert not [f for f in browse.frames if f.get("port", 0) in range(4901, 4913)
                    and f["port"] != 4907]
        assert browse.p.poll() is None
    finally:
        for port in bad_txts:
            a.remove_service_file(f"bad{port}")


def test_cbor_pipeline_frames(net, nws_bin):
    import cbor2
    a, b = net
    ch = unique()
    adv = a.popen([nws_bin("nws-advertise"), "--cbor"], stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    browse = b.popen([nws_bin("nws-browse"), "--cbor"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    # The reads below block: a deadline kills both, which ends them with an EOF error.
    deadline = threading.Timer(30, lambda: [p.kill() for p in (adv, browse)])
    deadline.start()
    try:
        adv.stdin.write(cbor2.dumps({"action": "listening", "channel": ch, "port": 4950}) +
                        cbor2.dumps({"action": "broadcast", "data": b"\x00\xff"}))
        adv.stdin.flush()
        assert cbor2.load(adv.stdout) == {"action": "broadcast", "data": b"\x00\xff"}
        got = cbor2.load(adv.stdout)
        assert got["action"] == "advertised" and got["channel"] == ch
        browse.stdin.write(cbor2.dumps({"action": "open", "channel": ch}))
        browse.stdin.flush()
        assert cbor2.load(browse.stdout) == {"action": "open", "channel": ch}
        while True:
            f = cbor2.load(browse.stdout)
            if f["action"] == "found" and f["address"] == a.addr:
                break
        assert f["channel"] == ch and f["port"] == 4950 and "path" not in f
        # End of input ends both (pipeline mode): advertise withdraws first.
        adv.stdin.close()
        browse.stdin.close()
        assert adv.wait(10) == 0 and browse.wait(10) == 0
    finally:
        deadline.cancel()
        for p in (adv, browse):
            if p.poll() is None:
                p.kill()


def test_browse_exits_at_end_of_input_without_channels(net, nws_bin):
    a, _ = net
    p = a.run([nws_bin("nws-browse")], timeout=10, input=b'{"action":"x"}\n')
    assert p.returncode == 0 and frames(p.stdout.decode()) == [{"action": "x"}]


# --- tags and collisions -----------------------------------------------------------------

def test_two_advertisements_of_one_channel_carry_different_tags(net, tools, nws_bin):
    a, b = net
    ch = unique()
    cap = b.capture()
    browse = tools(b, [nws_bin("nws-browse"), ch])
    advertise(tools, nws_bin, a, ch, 4300)
    advertise(tools, nws_bin, b, ch, 4300)
    browse.wait(is_found(ch, a.addr), what="A's record")
    browse.wait(is_found(ch, b.addr), what="B's record")
    pcap = cap.stop()
    _, disc, _ = channel_keys(ch)
    tags = {t for t in txt_tags(pcap) if tag_ok(disc, 4300, t)}
    assert len(tags) == 2, txt_tags(pcap)
    nonces = {t[:21] for t in tags}
    assert len(nonces) == 2


def test_instance_name_collision_is_resolved_silently(net, tools, nws_bin):
    a, b = net
    c1, c2 = unique(), unique()
    name = secrets.token_hex(8)
    adv1 = advertise(tools, nws_bin, a, c1, 4400, "--instance", name)
    adv2 = advertise(tools, nws_bin, b, c2, 4401, "--instance", name)
    i1 = [f["instance"] for f in adv1.frames if f["action"] == "advertised"]
    i2 = [f["instance"] for f in adv2.frames if f["action"] == "advertised"]
    assert i1[0] == name and i2[-1] != name
    p = a.run([nws_bin("nws-browse"), "-t", c1, c2], timeout=20, text=True)
    got = {(f["channel"], f["instance"]) for f in frames(p.stdout) if f["action"] == "found"}
    assert (c1, name) in got and (c2, i2[-1]) in got
    assert "collision" not in adv2.stderr().lower() and "error" not in adv2.stderr().lower()


# --- secrecy -----------------------------------------------------------------------------

def test_channel_name_and_keys_never_on_the_wire(net, tools, nws_bin):
    a, b = net
    name = secrets.token_urlsafe(48)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", name)
    caps = [a.capture(), b.capture()]
    env = {"NWS_CHANNEL": name}
    adv = tools(a, [nws_bin("nws-advertise"), "-p", "4500"], env=env)
    adv.wait(lambda f: f.get("action") == "advertised", what="advertised")
    p = b.run([nws_bin("nws-browse"), "-t"], timeout=20, env=env, text=True)
    assert p.returncode == 0 and [f for f in frames(p.stdout) if f["action"] == "found"]
    adv.stop()
    pcaps = [c.stop() for c in caps]
    k, disc, link = channel_keys(name)
    secrets_ = [name.encode()]
    for key in (k, disc, link):
        secrets_ += [key, key.hex().encode(), key.hex().upper().encode(),
                     base64.b64encode(key).rstrip(b"="),
                     base64.urlsafe_b64encode(key).rstrip(b"=")]
    for pcap in pcaps:
        assert b"\x04_nws\x04_tcp\x05local" in pcap
        for s in secrets_:
            assert s not in pcap
    # The record does carry a tag that only holders of the name can verify.
    assert any(tag_ok(disc, 4500, t) for t in txt_tags(pcaps[1]))
    # One link path serves every channel: the record names none.
    for pcap in pcaps:
        assert b"path=" not in pcap
    assert name not in adv.stderr() and name not in p.stderr


# --- avahi-daemon stopped and restarted --------------------------------------------------

def test_avahi_restart_republishes(hosts, tools, nws_bin):
    a, b = hosts(2)
    ch = unique()
    browse = tools(b, [nws_bin("nws-browse"), ch])
    adv = advertise(tools, nws_bin, a, ch, 4600)
    browse.wait(is_found(ch, a.addr), what="found")
    a.stop_avahi()
    browse.wait(is_lost(ch), what="lost while A's avahi is down")
    err = adv.wait(lambda f: f.get("action") == "error", what="error frame")
    assert err["code"] == 69 and err["reason"] == AVAHI_DOWN
    n_adv, n_browse = len(adv.frames), len(browse.frames)
    a.start_avahi()
    adv.wait(lambda f: f.get("action") == "advertised", what="advertised again", after=n_adv)
    browse.wait(is_found(ch, a.addr), what="found again", after=n_browse)
    assert adv.stderr().count(f"nws-advertise: {AVAHI_DOWN}") == 1
    assert adv.p.poll() is None


def test_avahi_stopped(hosts, tools, nws_bin):
    (a,) = hosts(1)
    a.stop_avahi()
    p = a.run([nws_bin("nws-browse"), "-t", "chat"], timeout=20, text=True)
    assert p.returncode == 69
    assert p.stderr.startswith(f"nws-browse: {AVAHI_DOWN}: ")
    assert len(p.stderr.splitlines()) == 1
    err = [f for f in frames(p.stdout) if f["action"] == "error"]
    assert err == [{"action": "error", "code": 69, "reason": AVAHI_DOWN}]

    adv = tools(a, [nws_bin("nws-advertise"), "-p", "4700", "chat"])
    err = adv.wait(lambda f: f.get("action") == "error", what="error frame")
    assert err["code"] == 69
    wait_for(lambda: AVAHI_DOWN in adv.stderr(), 10, "the stderr line")
    assert adv.stderr().startswith(f"nws-advertise: {AVAHI_DOWN}: ")
    assert adv.p.poll() is None
    # It keeps running and publishes once the daemon is there.
    a.start_avahi()
    adv.wait(lambda f: f.get("action") == "advertised", what="advertised after start")
    browse = tools(a, [nws_bin("nws-browse"), "chat"])
    browse.wait(is_found("chat"), what="own record found")

    # A browse that is running when the daemon stops says so once and keeps running.
    a.stop_avahi()
    browse.wait(is_lost("chat"), what="lost")
    browse.wait(lambda f: f.get("action") == "error" and f.get("code") == 69, what="error")
    assert browse.p.poll() is None
    n = len(browse.frames)
    a.start_avahi()
    browse.wait(is_found("chat"), what="found after restart", after=n)
    assert browse.stderr().count(AVAHI_DOWN) == 1


def test_sigterm_withdraws(net, tools, nws_bin):
    a, b = net
    ch = unique()
    adv = advertise(tools, nws_bin, a, ch, 4800)
    p = b.run([nws_bin("nws-browse"), "-t", ch], timeout=20)
    assert p.returncode == 0
    assert adv.stop(signal.SIGINT) == 0
    # Goodbye packets removed it from B's cache: a fresh browse finds nothing.
    wait_for(lambda: b.run([nws_bin("nws-browse"), "-t", ch], timeout=20).returncode == 1,
             15, "the record to be withdrawn", interval=0.2)

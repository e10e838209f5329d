"""Beyond one subnet (issue 14): static peers without discovery, two subnets joined by an
avahi reflector, and wide-area DNS-SD through a BIND 9 server with DNS UPDATE.

Every wait polls with a deadline; none asserts speed."""
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys

import pytest

from hosts import wait_for
from proc import Proc, assert_no_sanitizer, json_or_none

CH = "scale-test-channel"


class ScaleProc(Proc):
    """A process in a test host whose stdout is JSON lines, collected by a thread."""

    def __init__(self, host, argv, shell=False, **kw):
        self.shell = shell
        self.frames = []
        super().__init__(argv, host=host, stderr_file=True, **kw)
        self.p = self.proc

    def _out_line(self, line):
        f = json_or_none(line)
        if f is not None:
            with self.lock:
                self.frames.append(f)

    def of(self, action, **match):
        with self.lock:
            return [f for f in self.frames if f.get("action") == action and
                    all(f.get(k) == v for k, v in match.items())]

    def wait(self, action, timeout=20, count=1, **match):
        def check():
            got = self.of(action, **match)
            if len(got) >= count:
                return got
            if self.p.poll() is not None:
                raise AssertionError(f"exited ({self.p.returncode}) before {action} "
                                     f"{match}; stderr: {self.stderr()[-2000:]}")
            return None
        try:
            return wait_for(check, timeout, f"{count} {action} {match}")
        except TimeoutError as e:
            raise AssertionError(f"{e}; frames: {self.frames}; "
                                 f"stderr: {self.stderr()[-2000:]}")

    def stop(self):
        # A shell pipeline's own children are ours too: stopped by PID, first.
        if self.shell and self.p.poll() is None:
            kids = subprocess.run(["pgrep", "-P", str(self.p.pid)], capture_output=True,
                                  text=True).stdout.split()
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in kids:
                    try:
                        os.kill(int(pid), sig)
                    except ProcessLookupError:
                        pass
                try:
                    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in kids),
                             5, "a pipeline's processes to exit")
                    break
                except TimeoutError:
                    pass
        rc = super().stop(10)
        # Under make check-asan a report on stderr fails the test that caused it.
        assert_no_sanitizer(self.stderr())
        return rc


def test_static_peers_without_discovery(request, hosts, nws_bin):
    """README "Static peers": two sites with no avahi at all, each nws-link fed the other's
    address as a found frame by `cat peers.jsonl - | nws-link`; a broadcast crosses."""
    link = nws_bin("nws-link")
    ha, hb = hosts(2, avahi=False)
    port = 7411
    for h, other in ((ha, hb), (hb, ha)):
        with open(os.path.join(h.dir, "peers.jsonl"), "w") as f:
            f.write(json.dumps({"action": "found", "channel": CH, "address": other.addr,
                                "port": port}) + "\n")
    nodes = []
    request.addfinalizer(lambda: [n.stop() for n in nodes])
    for h in (ha, hb):
        peers = os.path.join(h.dir, "peers.jsonl")
        sh = (f"cat {shlex.quote(peers)} - | exec {shlex.quote(link)} "
              f"-v --listen {h.addr}:{port} {CH}")
        nodes.append(ScaleProc(h, ["sh", "-c", sh], shell=True))
    a, b = nodes
    a.send(action="connect", channel=CH, target="a1")
    b.send(action="connect", channel=CH, target="b1")
    a.wait("linked")
    b.wait("linked")
    a.wait("connect", target="b1")
    b.wait("connect", target="a1")
    a.send(action="broadcast", channel=CH, source="a1", data="across the internet")
    got = b.wait("broadcast", source="a1")
    assert got[0]["data"] == "across the internet"
    for n in nodes:
        n.stop()


class Pipe(ScaleProc):
    """nws-pipe --json CHANNEL in a host: its whole pipeline, discovery included."""

    def __init__(self, host, pipe_bin, channel, args=()):
        super().__init__(host, [pipe_bin, "--json", *args, channel])
        self.send(action="status")
        self.id = self.wait("status")[0]["source"]


def test_two_subnets_joined_by_a_reflector(hosts, nws_bin):
    """Two bridges, one host each, joined by a router whose avahi-daemon reflects mDNS:
    each side finds the other through the reflector, links across the router, and a
    broadcast crosses. Without the reflector nothing is found (the test can fail)."""
    pipe = nws_bin("nws-pipe")
    (a,) = hosts(1)
    (b,) = hosts(1)
    net = hosts.network
    assert a.addr.rsplit(".", 1)[0] != b.addr.rsplit(".", 1)[0]
    net.add_router([a], [b])
    pa, pb = Pipe(a, pipe, CH), Pipe(b, pipe, CH)
    try:
        pa.wait("connect", timeout=30, target=pb.id)
        pb.wait("connect", timeout=30, target=pa.id)
        pa.send(action="broadcast", data="over the router")
        assert pb.wait("broadcast", source=pa.id)[0]["data"] == "over the router"
    finally:
        pa.stop()
        pb.stop()


def test_two_subnets_without_reflector_stay_apart(hosts, nws_bin):
    """The control: the same two subnets and router with the reflector off find nothing,
    so the test above proves the reflector does the work."""
    browse = nws_bin("nws-browse")
    adv = nws_bin("nws-advertise")
    (a,) = hosts(1)
    (b,) = hosts(1)
    r = hosts.network.add_router([a], [b], reflector=False)
    pub = ScaleProc(a, [adv, "--port", "7411", CH])
    pub.wait("advertised")
    # The router (on a's subnet) sees it, so it is on the wire; b does not.
    assert r.run([browse, "-t", CH], timeout=20).returncode == 0
    assert b.run([browse, "-t", CH], timeout=20).returncode == 1
    pub.stop()


# --- wide area: unicast DNS-SD with a BIND 9 server ---------------------------------------

ZONE = "nws.test"


class Bind:
    """BIND 9's named in a test host, listening on the host's 10.x address only, primary
    for ZONE, which a TSIG key (written by tsig-keygen) may update."""

    def __init__(self, host):
        for prog in ("named", "tsig-keygen", "dig"):
            if not shutil.which(prog):
                pytest.skip(f"wide-area tests need {prog} (make deps installs bind9)")
        self.host = host
        self.dir = os.path.join(host.dir, "named")
        os.makedirs(self.dir, exist_ok=True)
        self.keyfile = os.path.join(self.dir, "nws.key")
        key = subprocess.run(["tsig-keygen", "-a", "hmac-sha256", "nws-key"],
                             capture_output=True, text=True, check=True).stdout
        with open(self.keyfile, "w") as f:
            f.write(key)
        with open(os.path.join(self.dir, f"{ZONE}.zone"), "w") as f:
            f.write(f"$TTL 10\n"
                    f"@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 10\n"
                    f"@ IN NS ns.{ZONE}.\n"
                    f"ns IN A {host.addr}\n")
        conf = os.path.join(self.dir, "named.conf")
        with open(conf, "w") as f:
            f.write(key + f"""
options {{
    directory "{self.dir}";
    listen-on port 53 {{ {host.addr}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    pid-file none;
    session-keyfile none;
}};
controls {{ }};
zone "{ZONE}" {{
    type primary;
    file "{ZONE}.zone";
    allow-update {{ key "nws-key"; }};
}};
""")
        self.log = os.path.join(self.dir, "named.log")
        with open(self.log, "wb") as log:
            self.proc = host.popen(["named", "-g", "-n", "1", "-c", conf],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def running():
            if self.proc.poll() is not None:
                raise RuntimeError(f"named exited: {open(self.log).read()[-2000:]}")
            return b"running" in open(self.log, "rb").read()
        wait_for(running, 20, "named to start")

    def names(self):
        """The instance names under _nws._tcp.ZONE now, asked of named directly."""
        p = self.host.run(["dig", "+short", "@" + self.host.addr, "PTR",
                           f"_nws._tcp.{ZONE}"], timeout=10, text=True)
        return [line for line in p.stdout.split() if line]


@pytest.fixture
def wide(hosts):
    """A DNS host and a publisher on one subnet, a browser on another, and a router
    between them without a reflector: no mDNS crosses, only unicast DNS."""
    dns, a = hosts(2)
    (b,) = hosts(1)
    hosts.network.add_router([dns, a], [b], reflector=False)
    bind = Bind(dns)
    for h in (a, b):
        h.use_dns(dns.addr)
    return bind, a, b


def test_wide_area_publish_browse_and_withdraw(wide, nws_bin):
    """nws-advertise -d puts a signed DNS UPDATE to the primary it finds through the SOA
    (the host's resolver points at named); nws-browse -d on the other subnet finds it
    through avahi's unicast DNS-SD, and stops listing it once it is withdrawn."""
    bind, a, b = wide
    adv = ScaleProc(a, [nws_bin("nws-advertise"), "-d", ZONE, "--tsig-key", bind.keyfile,
                   "--port", "7411", CH])
    inst = adv.wait("advertised")[0]["instance"]
    assert bind.names() == [f"{inst}._nws._tcp.{ZONE}."]
    txt = b.run(["dig", "+short", "@" + bind.host.addr, "TXT", f"{inst}._nws._tcp.{ZONE}"],
                text=True)
    assert '"v=1"' in txt.stdout and '"t=' in txt.stdout
    br = ScaleProc(b, [nws_bin("nws-browse"), "-d", ZONE, CH])
    f = br.wait("found", timeout=30)[0]
    assert f["address"] == a.addr and f["port"] == 7411 and f["channel"] == CH
    assert f["instance"] == inst
    adv.stop()
    assert bind.names() == []
    # avahi answers from its cache until the TTL (10 s) ends; then one or two polls (2 s).
    br.wait("lost", timeout=10 + 2 * 2 + 10)
    assert len(br.of("found")) == 1
    br.stop()


def channel_keys(name):
    """K, K_disc, K_link of nws(7) DISCOVERY, computed independently with PyNaCl."""
    from nacl import pwhash
    salt = hashlib.blake2b(b"nws/1 channel", digest_size=32).digest()[:16]
    k = pwhash.argon2id.kdf(32, name.encode(), salt,
                            opslimit=pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                            memlimit=pwhash.argon2id.MEMLIMIT_INTERACTIVE)
    return (k, hashlib.blake2b(b"nws/1 discovery", key=k, digest_size=32).digest(),
            hashlib.blake2b(b"nws/1 link", key=k, digest_size=32).digest())


def test_wide_area_pipes_link_and_the_channel_stays_off_the_wire(wide, nws_bin):
    """nws-pipe -d --tsig-key on two subnets without mDNS between them: each publishes by
    DNS UPDATE, finds the other by unicast DNS-SD, they link and a broadcast crosses. The
    capture on the browsing side holds the DNS-SD traffic but never the channel name or
    a key derived from it."""
    bind, a, b = wide
    pipe = nws_bin("nws-pipe")
    args = ["-d", ZONE, "--tsig-key", bind.keyfile]
    cap = b.capture()
    pa = pb = None
    try:
        pa, pb = Pipe(a, pipe, CH, args), Pipe(b, pipe, CH, args)
        pa.wait("connect", timeout=40, target=pb.id)
        pb.wait("connect", timeout=40, target=pa.id)
        pa.send(action="broadcast", data="by unicast dns-sd")
        assert pb.wait("broadcast", source=pa.id)[0]["data"] == "by unicast dns-sd"
        assert len(bind.names()) == 2
    finally:
        for p in (pa, pb):
            if p:
                p.stop()
    pcap = cap.stop()
    assert b"_nws" in pcap and b"\x03v=1" in pcap   # the DNS-SD answers were captured
    assert CH.encode() not in pcap
    for key in channel_keys(CH):
        assert key not in pcap
    # Both withdrew their records at exit.
    wait_for(lambda: bind.names() == [], 10, "the records to be deleted")


def test_wide_area_pipe_without_key_still_browses_and_links(wide, nws_bin):
    """A pipeline with -d but no --tsig-key says once that it cannot publish, and still
    finds a peer that does publish (to the --dns-server it was given) and links to it."""
    bind, a, b = wide
    pipe = nws_bin("nws-pipe")
    pa = pb = None
    try:
        pa = Pipe(a, pipe, CH, ["-d", ZONE, "--tsig-key", bind.keyfile,
                                "--dns-server", bind.host.addr])
        pb = Pipe(b, pipe, CH, ["-d", ZONE])
        pa.wait("connect", timeout=40, target=pb.id)
        pb.wait("connect", timeout=40, target=pa.id)
        assert len(bind.names()) == 1
        said = [line for line in pb.stderr().splitlines() if "cannot publish" in line]
        assert len(said) == 1 and "--tsig-key" in said[0], pb.stderr()
    finally:
        for p in (pa, pb):
            if p:
                p.stop()


# --- many hosts ---------------------------------------------------------------------------

@pytest.mark.skipif(os.environ.get("NWS_SLOW") != "1",
                    reason="slow (24 test hosts at once): run with NWS_SLOW=1")
def test_24_hosts_full_mesh_and_one_broadcast_reaches_all(hosts, nws_bin):
    """24 hosts open one channel at once: each sees the 23 others, and one broadcast
    reaches all 23. (Marked slow; the time it takes is bench_mesh's to print.)"""
    import meshrun
    hs = hosts(24)
    pipes = meshrun.start(hs, nws_bin("nws-pipe"), CH)
    try:
        meshrun.wait_mesh(pipes, 240)
        pipes[0].send(action="broadcast", data="to all 23")
        wait_for(lambda: all(any(f.get("data") == "to all 23" for f in p.of("broadcast"))
                             for p in pipes[1:]), 60, "the broadcast at all 23 hosts")
        assert not any(f.get("data") == "to all 23" for f in pipes[0].of("broadcast"))
        for p in pipes:
            assert len(p.peers()) == 23
    finally:
        meshrun.stop(pipes)
    for p in pipes:
        err = "\n".join(line for _, line in p.log)
        assert_no_sanitizer(err)


def test_wide_area_bad_key_file_or_domain_is_refused(tmp_path, nws_bin):
    """A key file tsig-keygen did not write, a missing one, or a domain that is no DNS
    name stops nws-advertise at start (exit 1) with a message naming the problem; --tsig-key
    without a unicast -d is a usage error (exit 2). Nothing is sent anywhere."""
    adv = nws_bin("nws-advertise")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    good = tmp_path / "good.key"
    good.write_text('key "k" {\n\talgorithm hmac-sha256;\n\tsecret "AAAA";\n};\n')
    cases = [
        (["-d", ZONE, "--tsig-key", str(bad)], 1, "not a TSIG key file"),
        (["-d", ZONE, "--tsig-key", str(tmp_path / "none")], 1, "cannot read the TSIG key"),
        (["-d", "a b\n. 10 IN A 1.2.3.4", "--tsig-key", str(good)], 1, "DNS domain name"),
        (["--tsig-key", str(good)], 2, "-d DOMAIN"),
        (["-d", "local", "--dns-server", "10.0.0.1"], 2, "-d DOMAIN"),
    ]
    for args, code, said in cases:
        p = subprocess.run([adv, *args, "-p", "4000", CH], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == code and said in p.stderr, (args, p.returncode, p.stderr)


def test_wide_area_proxy_publishes_with_its_key(wide, nws_bin):
    """nws-proxy -d --tsig-key hands both to its nws-advertise: a page's channel appears in
    the zone while the page is connected, and the records go when the proxy stops."""
    bind, a, _ = wide
    proxy = ScaleProc(a, [nws_bin("nws-proxy"), "-d", ZONE, "--tsig-key", bind.keyfile])
    probe = "import socket; socket.create_connection(('127.0.0.1', 9009), 1)"
    wait_for(lambda: a.run([sys.executable, "-c", probe]).returncode == 0, 20,
             "nws-proxy to listen")
    page = ("import asyncio, websockets\n"
            "async def main():\n"
            f"    async with websockets.connect('ws://localhost:9009/{CH}') as ws:\n"
            "        print('open', flush=True)\n"
            "        await ws.recv()\n"
            "asyncio.run(main())\n")
    client = a.popen([sys.executable, "-c", page], stdout=subprocess.PIPE)
    try:
        assert client.stdout.readline().strip() == b"open"
        wait_for(lambda: len(bind.names()) == 1, 30, "the channel in the zone")
    finally:
        client.terminate()
        client.wait(10)
    proxy.stop()
    wait_for(lambda: bind.names() == [], 10, "the records to be deleted")

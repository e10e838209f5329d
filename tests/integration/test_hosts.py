"""The test hosts themselves: addresses, reachability, private daemons."""
import os
import subprocess

# Host b listens on TCP, host a connects: proves addressing and the bridge without ping.
ECHO = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7777)); s.listen(); print("ready", flush=True)
c, _ = s.accept(); c.sendall(c.recv(100))
"""
DIAL = """
import socket, sys
c = socket.create_connection((sys.argv[1], 7777), timeout=5); c.sendall(b"hi")
print(c.recv(100).decode())
"""


def netns_of(pid):
    return os.readlink(f"/proc/{pid}/ns/net")


def talk(x, y):
    srv = y.popen(["/usr/bin/python3", "-c", ECHO], stdout=subprocess.PIPE, text=True)
    assert srv.stdout.readline().strip() == "ready"
    p = x.run(["/usr/bin/python3", "-c", DIAL, y.addr], timeout=10, text=True)
    srv.wait(5)
    return p.stdout.strip()


def test_two_hosts_reach_each_other(hosts):
    a, b = hosts(2)
    assert a.addr != b.addr
    assert talk(a, b) == "hi"
    assert talk(b, a) == "hi"


def test_daemons_run_in_their_host_never_in_the_root_namespace(hosts):
    a, b = hosts(2)
    root = netns_of("self")
    for h in (a, b):
        for proc in (h.avahi, h.dbus):
            assert proc.poll() is None
            assert netns_of(proc.pid) != root
            inside = h.run(["readlink", "/proc/self/ns/net"], text=True).stdout.strip()
            assert netns_of(proc.pid) == inside
        assert os.path.exists(os.path.join(h.dir, "run", "avahi-daemon", "pid"))
    assert netns_of(a.avahi.pid) != netns_of(b.avahi.pid)


def test_stop_and_start_avahi(hosts):
    (a,) = hosts(1)
    proc = a.avahi
    a.stop_avahi()
    assert proc.poll() is not None
    assert a.avahi is None
    a.start_avahi()
    assert a.avahi_ready()


def test_capture_sees_traffic(hosts):
    a, b = hosts(2)
    cap = a.capture()
    assert talk(b, a) == "hi"
    pcap = cap.stop()
    assert pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    assert bytes(int(x) for x in b.addr.split(".")) in pcap


def test_link_down_and_up(hosts):
    a, b = hosts(2)
    a.link_down()
    p = b.run(["/usr/bin/python3", "-c", DIAL.replace("timeout=5", "timeout=1"), a.addr],
              timeout=10, text=True)
    assert p.returncode != 0
    a.link_up()
    assert talk(b, a) == "hi"


def test_three_hosts_share_one_network(hosts):
    hs = hosts(3)
    assert len({h.addr for h in hs}) == 3 and len({h.ns for h in hs}) == 3
    assert talk(hs[0], hs[2]) == "hi"

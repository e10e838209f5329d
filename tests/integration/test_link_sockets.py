"""Socket options of nws-link's links (issue 12): both ends of a link write with Nagle
off, the accepting end too (lws sets options only on sockets it accepts or dials
itself). Two nws-link processes on loopback; each socket is looked at from outside with
pidfd_getfd, no test hosts needed."""
import ctypes
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from linknode import LinkNode  # noqa: E402

SYS_PIDFD_GETFD = 438


def tcp_sockets(pid, port):
    """Duplicates of pid's established TCP sockets whose local port is port."""
    inodes = set()
    for name in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    out = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                dup = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
                assert dup >= 0, os.strerror(ctypes.get_errno())
                out.append(socket.socket(fileno=dup))
    finally:
        os.close(pidfd)
    return out


def test_accepted_link_has_nagle_off(nws_bin):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to look at another process's sockets")
    a = LinkNode(nws_bin("nws-link"), ["chat"])
    b = LinkNode(nws_bin("nws-link"), ["chat"])
    try:
        port = a.wait(lambda fs: [f for f in fs if f["action"] == "listening"], 10,
                      "a listening")[0]["port"]
        b.send(action="found", channel="chat", address="127.0.0.1", port=port,
               instance="a", host="a")
        for n in (a, b):
            n.wait(lambda fs: [f for f in fs if f["action"] == "linked"], 10, "the link")
        socks = tcp_sockets(a.pid, port)
        assert socks, "a has no accepted link socket"
        for s in socks:
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), \
                "the accepting end of a link has Nagle on"
            s.close()
    finally:
        for n in (a, b):
            n.stop()

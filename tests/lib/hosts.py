"""Test hosts: a small network of Linux network namespaces, each a "host" with its own
dbus-daemon and avahi-daemon (tests/README.md, Test hosts).

    net = Network()            # owns everything it creates; net.close() tears it down
    a, b = net.add(2)          # two hosts on one bridge
    b.run(["nws-browse", "-t", "chat"], timeout=10)
    c, = net.add(1)            # a second bridge: subnet 10.77.1.0/24
    r = net.add_router([a, b], [c])   # routes between them, avahi reflector on

Layout for a network of n hosts (k counts networks in this process, i counts hosts):
- namespace nws<pid>b<k> holds a Linux bridge "br0" (multicast snooping off so mDNS is
  flooded to every port),
- namespace nws<pid>h<i> per host, with lo up and "eth0", one end of a veth pair whose
  other end is a port of br0; address 10.77.<k>.<j+1>/24 (j = index in the network),
  plus the kernel's IPv6 link-local address (DAD off, so it is usable at once),
- HOSTDIR (host.dir) under one temporary directory: run/ (bind-mounted over /run for the
  host's daemons), avahi-daemon.conf, dbus.conf and the daemons' logs.

Nothing runs in the machine's own network namespace: every daemon is started through
`ip netns exec`, and every process is stopped by the PID we started. Network.close()
runs from the pytest finalizer, from atexit, and on SIGTERM, so a failing or interrupted
test leaves no namespace or daemon behind."""
import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time

NEEDED = ("ip", "dbus-daemon", "avahi-daemon", "unshare", "mount", "dbus-send")
AVAHI_RUNNING = 2  # AVAHI_SERVER_RUNNING from org.freedesktop.Avahi.Server.GetState

_counter = {"net": 0, "host": 0}
_live = set()


def missing():
    """Why hosts cannot be made here (a string), or None when they can."""
    if os.geteuid() != 0:
        return "test hosts need root (network namespaces, mounts)"
    for prog in NEEDED:
        if not shutil.which(prog):
            return f"test hosts need {prog} (make deps installs it)"
    return None


def wait_for(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns a true value, which is returned; raises after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _sh(argv, check=True):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def _stop(proc, timeout=3.0):
    """Stops a process we started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    except ProcessLookupError:
        pass


DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""

AVAHI_CONF = """[server]
host-name={hostname}
domain-name=local
use-ipv4=yes
use-ipv6=yes
allow-interfaces={iface}
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-workstation=no
publish-hinfo=no
publish-addresses=yes
publish-domain=no
publish-aaaa-on-ipv4=yes
publish-a-on-ipv6=no

[reflector]
enable-reflector=no

[rlimits]
"""


class Capture:
    """tcpdump on one host's interface, writing a pcap file; stop() returns its bytes."""

    def __init__(self, host, path):
        self.path = path
        self._err = path + ".err"
        with open(self._err, "wb") as err:
            self.proc = host.popen(["tcpdump", "-i", host.iface, "-n", "-s", "0", "-U",
                                    "--immediate-mode",
                                    "-w", path], stdout=subprocess.DEVNULL, stderr=err)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {open(self._err).read().strip()}")
            return b"listening on" in open(self._err, "rb").read()
        wait_for(ready, 10, "tcpdump to start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open(self.path, "rb") as f:
            return f.read()


class Host:
    """One namespace with its own dbus-daemon and avahi-daemon."""

    def __init__(self, net, index, addr, top):
        self.net = net
        self.index = index
        self.name = self.ns = f"nws{os.getpid()}h{_counter['host']}"
        _counter["host"] += 1
        self.iface = "eth0"
        self.addr = addr
        self.dir = os.path.join(top, self.name)
        self.sock = os.path.join(self.dir, "run", "dbus", "system_bus_socket")
        self.env = {"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={self.sock}"}
        self.procs = []
        self.dbus = None
        self.avahi = None
        self.resolv = None   # use_dns(): this host's own /etc/resolv.conf

    # Running things inside the host.
    def cmd(self, argv):
        if self.resolv:
            # A private mount namespace per command: the machine's file is never touched.
            return ["ip", "netns", "exec", self.ns, "unshare", "-m", "sh", "-c",
                    'mount --bind "$0" /etc/resolv.conf && exec "$@"', self.resolv, *argv]
        return ["ip", "netns", "exec", self.ns, *argv]

    def _kw(self, kw):
        kw = dict(kw)
        kw["env"] = {**os.environ, **self.env, **(kw.get("env") or {})}
        return kw

    def popen(self, argv, **kw):
        """Starts argv in the host; the process is killed at teardown if still running."""
        p = subprocess.Popen(self.cmd(argv), **self._kw(kw))
        self.procs.append(p)
        return p

    def run(self, argv, timeout=30, **kw):
        kw.setdefault("capture_output", True)
        if "input" not in kw:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.cmd(argv), timeout=timeout, **self._kw(kw))

    # Daemons.
    def _setup(self):
        for d in ("run/dbus", "run/avahi-daemon", "services"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        with open(os.path.join(self.dir, "dbus.conf"), "w") as f:
            f.write(DBUS_CONF.format(sock=self.sock))
        with open(os.path.join(self.dir, "avahi-daemon.conf"), "w") as f:
            f.write(AVAHI_CONF.format(hostname=self.name, iface=self.iface))
        self.start_dbus()

    def start_dbus(self):
        with open(os.path.join(self.dir, "dbus.log"), "ab") as log:
            self.dbus = subprocess.Popen(
                self.cmd(["dbus-daemon", "--nofork", "--nopidfile",
                          f"--config-file={self.dir}/dbus.conf"]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def up():
            if self.dbus.poll() is not None:
                raise RuntimeError(f"dbus-daemon of {self.name} exited: {self._log('dbus.log')}")
            return os.path.exists(self.sock)
        wait_for(up, 10, f"dbus-daemon of {self.name}")

    def start_avahi(self, wait=True):
        """Starts avahi-daemon with a private /run; waits until it has its host name."""
        if self.avahi and self.avahi.poll() is None:
            return
        # A pid file from a daemon we killed would make avahi refuse to start.
        for f in ("pid", "socket"):
            try:
                os.unlink(os.path.join(self.dir, "run", "avahi-daemon", f))
            except FileNotFoundError:
                pass
        # The host's own static services replace the machine's /etc/avahi/services.
        script = (f'mount --bind "{self.dir}/run" /run && '
                  f'mount --bind "{self.dir}/services" /etc/avahi/services && '
                  f'exec avahi-daemon -f "{self.dir}/avahi-daemon.conf" '
                  f'--no-chroot --no-drop-root --no-rlimits')
        with open(os.path.join(self.dir, "avahi.log"), "ab") as log:
            # ip netns exec, unshare and sh all exec: the PID is avahi-daemon's own.
            self.avahi = subprocess.Popen(self.cmd(["unshare", "-m", "sh", "-c", script]),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if wait:
            wait_for(self.avahi_ready, 20, f"avahi-daemon of {self.name}", interval=0.05)

    def avahi_ready(self):
        if self.avahi is None or self.avahi.poll() is not None:
            raise RuntimeError(f"avahi-daemon of {self.name} exited: {self._log('avahi.log')}")
        p = subprocess.run(["dbus-send", "--system", "--print-reply", "--reply-timeout=1000",
                            "--dest=org.freedesktop.Avahi", "/",
                            "org.freedesktop.Avahi.Server.GetState"],
                           env={**os.environ, **self.env}, capture_output=True, text=True)
        return p.returncode == 0 and f"int32 {AVAHI_RUNNING}" in p.stdout

    def use_dns(self, server, wide_area=True):
        """Points the host's resolver at server (an address): every command run in the host
        and its avahi-daemon see their own /etc/resolv.conf, bind-mounted over the
        machine's. With wide_area, avahi also browses unicast DNS-SD domains there
        (enable-wide-area=yes). A running avahi-daemon is restarted to take both."""
        self.resolv = os.path.join(self.dir, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write(f"nameserver {server}\n")
        path = os.path.join(self.dir, "avahi-daemon.conf")
        with open(path) as f:
            conf = f.read()
        with open(path, "w") as f:
            f.write(conf.replace("enable-wide-area=no",
                                 f"enable-wide-area={'yes' if wide_area else 'no'}"))
        if self.avahi and self.avahi.poll() is None:
            self.stop_avahi()
            self.start_avahi()

    def add_service_file(self, name, xml):
        """Publishes a static avahi service (an avahi.service(5) XML text) from this host:
        written to its own services directory, then avahi-daemon is told to reload."""
        with open(os.path.join(self.dir, "services", name + ".service"), "w") as f:
            f.write(xml)
        if self.avahi and self.avahi.poll() is None:
            self.avahi.send_signal(signal.SIGHUP)

    def remove_service_file(self, name):
        os.unlink(os.path.join(self.dir, "services", name + ".service"))
        if self.avahi and self.avahi.poll() is None:
            self.avahi.send_signal(signal.SIGHUP)

    def stop_avahi(self):
        if self.avahi:
            _stop(self.avahi)
            self.avahi = None

    def link_down(self):
        _sh(["ip", "-n", self.ns, "link", "set", self.iface, "down"])

    def link_up(self):
        _sh(["ip", "-n", self.ns, "link", "set", self.iface, "up"])

    def capture(self):
        """Starts tcpdump on the host's interface; .stop() returns the pcap bytes."""
        if not shutil.which("tcpdump"):
            raise RuntimeError("capture needs tcpdump")
        n = sum(1 for f in os.listdir(self.dir) if f.endswith(".pcap"))
        return Capture(self, os.path.join(self.dir, f"capture{n}.pcap"))

    def _log(self, name):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()[-2000:].strip()
        except OSError:
            return ""

    def close(self):
        for p in reversed(self.procs):
            _stop(p)
        self.procs = []
        self.stop_avahi()
        if self.dbus:
            _stop(self.dbus)
            self.dbus = None

    def __repr__(self):
        return f"Host({self.name}, {self.addr})"


class Network:
    """Owns namespaces, bridges, daemons and the temporary directory of the hosts it made."""

    def __init__(self):
        self.top = tempfile.mkdtemp(prefix=f"nws{os.getpid()}-hosts-")
        self.hosts = []
        self.namespaces = []
        _live.add(self)

    def add(self, n, avahi=True):
        """Creates n hosts joined by one bridge; returns them as a list."""
        k = _counter["net"]
        _counter["net"] += 1
        bridge_ns = f"nws{os.getpid()}b{k}"
        self._netns_add(bridge_ns)
        _sh(["ip", "-n", bridge_ns, "link", "add", "br0", "type", "bridge",
             "forward_delay", "0", "mcast_snooping", "0"])
        _sh(["ip", "-n", bridge_ns, "link", "set", "br0", "up"])
        made = []
        for j in range(n):
            h = Host(self, j, f"10.77.{k % 256}.{j + 1}", self.top)
            h.bridge_ns, h.subnet = bridge_ns, k % 256
            self.hosts.append(h)
            self._netns_add(h.ns)
            # DAD off: the link-local IPv6 address is usable at once, also after link_up.
            _sh(h.cmd(["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0",
                       "net.ipv6.conf.all.accept_dad=0"]), check=False)
            port = f"p{j}"
            _sh(["ip", "-n", bridge_ns, "link", "add", port, "type", "veth",
                 "peer", "name", h.iface, "netns", h.ns])
            _sh(["ip", "-n", bridge_ns, "link", "set", port, "master", "br0", "up"])
            _sh(["ip", "-n", h.ns, "link", "set", "lo", "up"])
            _sh(["ip", "-n", h.ns, "link", "set", h.iface, "multicast", "on", "up"])
            _sh(["ip", "-n", h.ns, "addr", "add", f"{h.addr}/24", "dev", h.iface])
            made.append(h)
        for h in made:
            h._setup()
        if avahi:
            for h in made:
                h.start_avahi(wait=False)
            for h in made:
                wait_for(h.avahi_ready, 20, f"avahi-daemon of {h.name}", interval=0.05)
        return made

    def add_router(self, *groups, reflector=True):
        """A host with one interface per group of hosts (lists returned by add(), each on
        its own bridge and subnet): eth<i> on group i's bridge at 10.77.<k>.254, IPv4
        forwarding on, and every host of the groups routed to the others through it. Its
        avahi-daemon listens on all those interfaces and, with reflector, repeats mDNS
        between them (enable-reflector=yes), as a home or office router would."""
        r = Host(self, len(self.hosts), None, self.top)
        self.hosts.append(r)
        self._netns_add(r.ns)
        _sh(r.cmd(["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0",
                   "net.ipv6.conf.all.accept_dad=0", "net.ipv4.ip_forward=1"]), check=False)
        _sh(["ip", "-n", r.ns, "link", "set", "lo", "up"])
        ifaces = []
        for i, group in enumerate(groups):
            first = group[0]
            iface, port = f"eth{i}", f"r{r.name}"[-15:]
            _sh(["ip", "-n", first.bridge_ns, "link", "add", port, "type", "veth",
                 "peer", "name", iface, "netns", r.ns])
            _sh(["ip", "-n", first.bridge_ns, "link", "set", port, "master", "br0", "up"])
            _sh(["ip", "-n", r.ns, "link", "set", iface, "multicast", "on", "up"])
            gw = f"10.77.{first.subnet}.254"
            _sh(["ip", "-n", r.ns, "addr", "add", f"{gw}/24", "dev", iface])
            for h in group:
                _sh(["ip", "-n", h.ns, "route", "add", "default", "via", gw])
            ifaces.append(iface)
        r.iface, r.ifaces, r.addr = ifaces[0], ifaces, f"10.77.{groups[0][0].subnet}.254"
        r._setup()
        conf = AVAHI_CONF.format(hostname=r.name, iface=",".join(ifaces))
        if reflector:
            conf = conf.replace("enable-reflector=no", "enable-reflector=yes")
        with open(os.path.join(r.dir, "avahi-daemon.conf"), "w") as f:
            f.write(conf)
        r.start_avahi()
        return r

    def _netns_add(self, name):
        _sh(["ip", "netns", "add", name])
        self.namespaces.append(name)

    def close(self):
        for h in self.hosts:
            try:
                h.close()
            except Exception:
                pass
        for ns in reversed(self.namespaces):
            _sh(["ip", "netns", "del", ns], check=False)
        self.hosts, self.namespaces = [], []
        shutil.rmtree(self.top, ignore_errors=True)
        _live.discard(self)


def close_all():
    for net in list(_live):
        net.close()


atexit.register(close_all)


def _on_term(signum, frame):
    close_all()
    raise SystemExit(128 + signum)


if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_term)

"""Fixtures shared by the integration tests.

hosts(n)      -> n test hosts (tests/lib/hosts.py) on one bridge, torn down after the test;
                 skips the test, with the reason, when not root or a program is missing.
module_hosts  -> the same factory, torn down after the module (for tests that share hosts).
nws_bin(name) -> path of a built tool in $NWS_BIN (default <repo>/build/bin).
proxy(*args)  -> a Proxy (tests/lib/nwsproxy.py): nws-proxy on loopback;
host_proxy(host, *args) -> a HostProxy: nws-proxy -v on port 9009 in a test host.
Every proxy is stopped at the end of the test and must exit clean (0, no sanitizer report)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import hosts as hostlib  # noqa: E402
from nwsproxy import HostProxy, Proxy  # noqa: E402


def _factory(request):
    net = hostlib.Network()
    request.addfinalizer(net.close)

    def make(n=2, avahi=True):
        why = hostlib.missing()
        if why:
            pytest.skip(why)
        try:
            return net.add(n, avahi=avahi)
        except (RuntimeError, TimeoutError) as e:
            # A machine that cannot make namespaces at all is a skip, not a failure.
            if not net.hosts and "netns add" in str(e):
                pytest.skip(f"cannot create network namespaces: {e}")
            raise
    make.network = net
    return make


@pytest.fixture
def hosts(request):
    return _factory(request)


@pytest.fixture(scope="module")
def module_hosts(request):
    return _factory(request)


@pytest.fixture(scope="session")
def nws_bin():
    bindir = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")

    def path(name):
        p = os.path.join(bindir, name)
        if not os.access(p, os.X_OK):
            pytest.skip(f"{name} is not built in {bindir} (run make)")
        return p
    return path


def _stopped_clean(made):
    try:
        for p in made:
            p.stop_clean()
    finally:
        for p in made:   # when one failed the check, the others still end
            p.stop()


@pytest.fixture
def proxy(nws_bin, tmp_path):
    made = []

    def start(*args, **kw):
        made.append(Proxy(nws_bin("nws-proxy"), str(tmp_path), *args, **kw))
        return made[-1]
    yield start
    _stopped_clean(made)


@pytest.fixture
def host_proxy(hosts, nws_bin):
    # Asking for hosts sets it up first and so tears it down after the proxies are checked
    # (module_hosts always is).
    made = []

    def start(host, *args):
        made.append(HostProxy(host, nws_bin("nws-proxy"), *args))
        return made[-1]
    yield start
    _stopped_clean(made)

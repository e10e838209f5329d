"""Fixtures shared by the integration tests.

hosts(n)      -> n test hosts (tests/lib/hosts.py) on one bridge, torn down after the test;
                 skips the test, with the reason, when not root or a program is missing.
module_hosts  -> the same factory, torn down after the module (for tests that share hosts).
nws_bin(name) -> path of a built tool in $NWS_BIN (default <repo>/build/bin)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import hosts as hostlib  # noqa: E402


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

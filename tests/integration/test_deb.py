"""The Debian package (issue 13): `make deb` builds it with dpkg-buildpackage and checks
it with lintian (no errors); installed into a fresh root it holds working tools, the man
pages, the completions, the examples and the user unit of nws-proxy.

As root, `make deb` installs the Debian tools it needs; otherwise the test is skipped
unless they are there already."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = ("nws-advertise", "nws-browse", "nws-link", "nws-pipe", "nws-proxy")
NEEDED = {"dpkg-buildpackage": "dpkg-dev", "dh": "debhelper", "fakeroot": "fakeroot",
          "lintian": "lintian"}


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if os.geteuid() != 0:
        missing = [pkg for cmd, pkg in NEEDED.items() if not shutil.which(cmd)]
        if missing:
            pytest.skip("make deb needs " + " ".join(missing) + " (installed by make deb "
                        "as root)")
    if not shutil.which("dpkg") or not shutil.which("apt-get"):
        pytest.skip("not a Debian system (no dpkg or apt-get)")
    out = tmp_path_factory.mktemp("deb")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "SAN", "O")}
    p = subprocess.run(["make", "-C", ROOT, "deb", f"O={out}"], capture_output=True,
                       text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    debs = glob.glob(os.path.join(out, "deb", "nws_*.deb"))
    assert len(debs) == 1, os.listdir(os.path.join(out, "deb"))
    return debs[0], p.stdout + p.stderr


def test_lintian_reports_no_error(deb):
    path, log = deb
    assert "lintian --fail-on error" in log
    p = subprocess.run(["lintian", path], capture_output=True, text=True, timeout=300)
    errors = [line for line in p.stdout.splitlines() if line.startswith("E:")]
    assert not errors, p.stdout


def test_control_fields(deb):
    path, _ = deb
    fields = subprocess.run(["dpkg-deb", "-f", path, "Depends", "Recommends"],
                            capture_output=True, text=True, check=True).stdout
    for lib in ("libwebsockets", "libsodium", "libavahi-client", "libcbor", "libjansson"):
        assert lib in fields, fields
    assert "Recommends: avahi-daemon" in fields


def test_installs_into_a_fresh_root(deb, tmp_path):
    path, _ = deb
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    p = subprocess.run(["dpkg", f"--root={root}", "--force-depends",
                        "--force-script-chrootless", "--force-not-root", "--log=/dev/null",
                        "-i", path], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for tool in TOOLS:
        assert os.access(root / "usr/bin" / tool, os.X_OK), tool
        assert (root / f"usr/share/man/man1/{tool}.1.gz").exists(), tool
        assert (root / "usr/share/bash-completion/completions" / tool).exists(), tool
        assert (root / f"usr/share/zsh/vendor-completions/_{tool}").exists(), tool
        assert (root / f"usr/share/fish/vendor_completions.d/{tool}.fish").exists(), tool
    unit = (root / "usr/lib/systemd/user/nws-proxy.service").read_text()
    assert "ExecStart=/usr/bin/nws-proxy" in unit
    assert (root / "usr/share/doc/nws/examples/chat/index.html").exists()
    # The installed tools run (with this machine's libraries) and their pages are found.
    v = subprocess.run([str(root / "usr/bin/nws-proxy"), "-V"], capture_output=True,
                       text=True, timeout=10)
    assert v.returncode == 0 and v.stdout.startswith("nws-proxy "), v.stdout + v.stderr
    m = subprocess.run(["man", "-M", str(root / "usr/share/man"), "-w", "nws"],
                       capture_output=True, text=True, timeout=30)
    assert m.returncode == 0, m.stderr
    assert m.stdout.strip() == str(root / "usr/share/man/man7/nws.7.gz")

"""The command line as users expect it (issue 13): one-line usage errors, -h listing the
same options as the man page and the bash, zsh and fish completions, and nws-pipe's
ways to find its channel and its proxy.

Checks of -h, man pages and usage errors run here without the network (the tools exit
before touching it); the rest runs on test hosts. Waits poll with deadlines."""
import asyncio
import json
import os
import re
import subprocess

import pytest
import websockets

from hosts import wait_for
from proc import assert_no_sanitizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = ("nws-advertise", "nws-browse", "nws-link", "nws-pipe", "nws-proxy")
NAME = re.compile(r"^[A-Za-z0-9+=*._-]{1,255}$")


def run(argv):
    """argv here, with no NWS_CHANNEL; its output as text."""
    env = {k: v for k, v in os.environ.items() if k != "NWS_CHANNEL"}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL, env=env)
    assert_no_sanitizer(p.stderr)
    return p


# Usage errors

BAD = {
    "nws-advertise": [["--bogus"], ["-x"], ["-p"], ["-p", "0", "c"], ["--format", "xml"],
                      ["bad/name"]],
    "nws-browse": [["--bogus"], ["-x"], ["-i"], ["--format", "xml"], ["-t"], ["bad/name"]],
    "nws-link": [["--bogus"], ["-x"], ["--listen", "nope"], ["--max-frame", "1"],
                 ["bad/name"], ["-d", "example.org"], ["--domain=example.org"]],
    "nws-pipe": [["--bogus", "c"], ["-x", "c"], [], ["a", "b"], ["-w", "x", "c"], ["-w"],
                 ["--raw=1", "c"], ["bad/name"], ["--via-proxy", "ftp://h", "c"],
                 ["--via-proxy", "--no-proxy", "c"], ["--new-name", "c"]],
    "nws-proxy": [["--bogus"], ["-x"], ["-p", "x"], ["chan"], ["--max-queue", "0"],
                  ["--json"], ["--cbor"], ["--channel-file", "f"]],
}


@pytest.mark.parametrize("tool", TOOLS)
def test_usage_error_is_one_line_and_exit_2(tool, nws_bin):
    for args in BAD[tool]:
        p = run([nws_bin(tool), *args])
        lines = p.stderr.splitlines()
        assert p.returncode == 2, (args, p.stderr)
        assert len(lines) == 1, (args, p.stderr)
        assert lines[0].startswith(tool + ": "), (args, p.stderr)
        assert lines[0].endswith(f"try '{tool} -h'"), (args, p.stderr)
        assert p.stdout == ""


# -h, man page, completions

def arg_norm(s):
    return s.replace(" ", "").lower()


def help_options(text):
    """{option: argument} from the lines of -h that start with an option."""
    opts = {}
    for line in text.splitlines():
        if not re.match(r"^  -", line):
            continue
        spec = re.split(r"\s{2,}", line.strip())[0]
        names, arg = [], ""
        for part in spec.split(", "):
            m = re.match(r"^(--?[A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$", part)
            assert m, f"cannot read the -h line {line!r}"
            names.append(m.group(1))
            arg = arg_norm(m.group(2) or "") or arg
        opts.update((n, arg) for n in names)   # "-w, --wait N": both take N
    return opts


def man_options(text):
    """{option: argument} from the .It Fl lines of the OPTIONS section."""
    opts, section = {}, None
    for line in text.splitlines():
        if line.startswith(".Sh "):
            section = line[4:].strip()
        if section != "OPTIONS" or not line.startswith(".It Fl"):
            continue
        names, arg = [], ""
        for part in line[4:].split(" , "):
            words = part.split()
            assert words[0] == "Fl", line
            names.append("-" + words[1])
            rest = words[2:]
            i = 0
            while i < len(rest):
                w = rest[i]
                if w in ("Ar", "Cm"):
                    arg += rest[i + 1]
                    i += 1
                elif w == "Op":
                    arg += "[" + "".join(x for x in rest[i + 1:] if x not in ("Ar",)) + "]"
                    break
                elif w == "Oo":
                    arg += "["
                elif w == "Oc":
                    arg += "]"
                elif w != "Ns":
                    arg += w
                i += 1
        opts.update((n, arg_norm(arg)) for n in names)
    return opts


def bash_options(text):
    words = " ".join(re.findall(r"compgen -W '([^']*)'", text, re.S)).split()
    return {w for w in words if w.startswith("-")}


def zsh_options(text):
    text = text.replace("_arguments -s", "")
    found = re.findall(r"(?:^|[\s'{(,)])(--?[A-Za-z0-9][A-Za-z0-9-]*)", text, re.M)
    return set(found)


def fish_options(text):
    return ({"-" + s for s in re.findall(r"\s-[so] (\S+)", text)} |
            {"--" + s for s in re.findall(r"\s-l (\S+)", text)})


@pytest.mark.parametrize("tool", TOOLS)
def test_help_man_and_completions_list_the_same_options(tool, nws_bin):
    p = run([nws_bin(tool), "-h"])
    assert p.returncode == 0 and p.stderr == ""
    helped = help_options(p.stdout)
    with open(os.path.join(ROOT, "man", tool + ".1")) as f:
        manned = man_options(f.read())
    assert helped == manned, f"-h and man/{tool}.1 differ"
    with open(os.path.join(ROOT, "completions", "bash", tool)) as f:
        assert bash_options(f.read()) == set(helped), f"bash completion of {tool}"
    with open(os.path.join(ROOT, "completions", "zsh", "_" + tool)) as f:
        assert zsh_options(f.read()) == set(helped), f"zsh completion of {tool}"
    with open(os.path.join(ROOT, "completions", "fish", tool + ".fish")) as f:
        assert fish_options(f.read()) == set(helped), f"fish completion of {tool}"
    # Every option -h lists is one the tool takes: -h after it still prints usage.
    for opt, arg in helped.items():
        argv = [opt] if not arg or (arg[0], arg[-1]) == ("[", "]") else [opt, "1"]
        q = run([nws_bin(tool), *argv, "-h"])
        assert "unknown option" not in q.stderr, (opt, q.stderr)


# nws-pipe --new-name

def test_new_name_prints_a_random_private_name(nws_bin):
    names = set()
    for _ in range(2):
        p = run([nws_bin("nws-pipe"), "--new-name"])
        assert p.returncode == 0 and p.stderr == ""
        name = p.stdout.strip()
        assert p.stdout == name + "\n"
        assert NAME.match(name) and len(name) == 24, name
        names.add(name)
    assert len(names) == 2


# Test hosts

@pytest.fixture
def pipe_bin(nws_bin):
    for tool in ("nws-browse", "nws-link", "nws-advertise"):
        nws_bin(tool)
    return nws_bin("nws-pipe")


def finish(proc, what, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not exit by itself: {err!r}")
    err = err.decode(errors="replace")
    assert_no_sanitizer(err)
    return out, err


def transfer(host_r, host_s, pipe_bin, recv_args, send_args, channel, env=None):
    """A receiver with -1 and a sender with -w 1 -1; returns the receiver's output."""
    recv = host_r.popen([pipe_bin, *recv_args, "-1", channel], stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p = host_s.run([pipe_bin, *send_args, "-w", "1", "-t", "20", "-1", channel],
                   input=b"hello\n", timeout=40, env=env or {})
    assert p.returncode == 0, p.stderr
    out, err = finish(recv, "the receiver")
    assert recv.returncode == 0, err
    return out


def test_channel_argument_wins_over_nws_channel(hosts, pipe_bin):
    a, b = hosts(2)
    out = transfer(b, a, pipe_bin, ["--no-proxy"], ["--no-proxy"], "argument-chan",
                   env={"NWS_CHANNEL": "env-chan"})
    assert out == b"hello\n"


def test_nws_channel_still_used_without_an_argument(hosts, pipe_bin):
    a, b = hosts(2)
    recv = b.popen([pipe_bin, "--no-proxy", "-1", "env-only"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p = a.run([pipe_bin, "--no-proxy", "-w", "1", "-t", "20", "-1"], input=b"hi\n",
              timeout=40, env={"NWS_CHANNEL": "env-only"})
    assert p.returncode == 0, p.stderr
    out, err = finish(recv, "the receiver")
    assert (recv.returncode, out) == (0, b"hi\n"), err


def test_two_pipes_meet_through_a_running_proxy_without_avahi(hosts, pipe_bin, host_proxy):
    (a,) = hosts(1, avahi=False)
    proxy = host_proxy(a)
    out = transfer(a, a, pipe_bin, [], [], "same-machine")
    assert out == b"hello\n"
    assert proxy.proc.poll() is None


@pytest.mark.parametrize("url", ["ws://localhost:9009", "http://127.0.0.1:9009",
                                 "ws://[::1]:9009/", "http://localhost"])
def test_via_proxy_url_forms(hosts, pipe_bin, host_proxy, url):
    (a,) = hosts(1, avahi=False)
    host_proxy(a)
    out = transfer(a, a, pipe_bin, ["--via-proxy", url], ["--via-proxy=" + url], "forms")
    assert out == b"hello\n"


def test_via_proxy_refuses_tls_in_one_line(nws_bin):
    for url in ("wss://localhost:9009", "https://localhost:9009"):
        p = run([nws_bin("nws-pipe"), "--via-proxy", url, "c"])
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
        assert "not supported" in p.stderr


def test_no_avahi_no_proxy_wait_exits_69_in_one_line(hosts, pipe_bin):
    (a,) = hosts(1, avahi=False)
    p = a.run([pipe_bin, "-w", "1", "lonely"], timeout=30)
    err = p.stderr.decode()
    assert p.returncode == 69, err
    assert len(err.splitlines()) == 1, err
    assert "avahi-daemon" in err and "nws-proxy" in err


def test_no_avahi_no_proxy_keeps_waiting_with_one_line(hosts, pipe_bin):
    (a,) = hosts(1, avahi=False)
    p = a.popen([pipe_bin, "lonely"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
    first = []
    wait_for(lambda: first.append(p.stderr.readline()) or first[-1], 20, "a line on stderr")
    assert p.poll() is None, "nws-pipe exited instead of waiting"
    p.terminate()
    _, rest = finish(p, "nws-pipe after SIGTERM")
    err = first[-1].decode() + rest
    assert p.returncode == 0
    assert len(err.splitlines()) == 1, err
    assert "avahi-daemon" in err and "waiting" in err


def test_a_connect_from_a_client_is_not_a_client_action(proxy):
    p = proxy()

    async def ask():
        async with websockets.connect(f"{p.url}/clientaction") as ws:
            await ws.send(json.dumps({"action": "connect", "target": "0123456789abcdef"}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if m["action"] == "error":
                    return m
    err = asyncio.run(ask())
    assert "not a client action" in err["reason"], err


def test_json_through_proxy_has_the_proxy_id_from_the_first_line(hosts, pipe_bin, host_proxy):
    """The first connect event already names us by the proxy's id, and a broadcast of
    bytes comes with its source."""
    (a,) = hosts(1, avahi=False)
    host_proxy(a)
    other = a.popen([pipe_bin, "--raw", "--via-proxy", "-w", "1", "-1", "ids"],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    me = a.popen([pipe_bin, "--json", "--via-proxy", "ids"], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = json.loads(me.stdout.readline())
        assert first["action"] == "connect", first
        other.stdin.write(b"\xff\xfe binary")
        other.stdin.close()
        other.stdin = None
        _, err = finish(other, "the sender")
        assert other.returncode == 0, err
        me.stdin.write(b'{"action":"status"}\n')
        me.stdin.flush()
        frames = []

        def have(action):
            line = me.stdout.readline()
            if line:
                frames.append(json.loads(line))
            return any(f["action"] == action for f in frames)
        wait_for(lambda: have("status"), 10, "the answer to status")
        status = [f for f in frames if f["action"] == "status"][0]
        assert first["source"] == status["source"], (first, status)
        data = [f for f in frames if f["action"] == "broadcast"]
        assert data and data[0]["source"] == first["target"], frames
        assert data[0]["encoding"] == "base64"
    finally:
        if me.poll() is None:
            me.terminate()
            me.wait(10)

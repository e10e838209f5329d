"""One tool process driven by a test, the base of every suite's wrapper (Pipe, LinkNode, ...):
started in a test host or here, its stdout and stderr collected by threads, stopped by PID
(SIGTERM, then SIGKILL), and the one clean-exit check: exit status 0 and no sanitizer report.

    p = Proc([binary, "-v", "chat"], host=h)
    p.send(action="connect", channel="chat", target="a1")
    p.wait_until(lambda: p.frames(), 10, "a frame")
    p.close_stdin()
    p.clean_exit(2, "the end of its input")
"""
import json
import os
import queue
import re
import signal
import subprocess
import threading

from hosts import wait_for

# What ASan, LSan and UBSan print; any of these on stderr fails the test (make check-asan).
SANITIZER = ("Sanitizer", "runtime error:")


def json_or_none(line):
    """A JSON line as an object, or None for a line that is not JSON (a log line)."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def wakeups(pid):
    """How many times pid's main thread has slept and been woken."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        return int(re.search(r"^voluntary_ctxt_switches:\s*(\d+)", f.read(), re.M)[1])


def assert_no_sanitizer(err):
    assert not any(s in err for s in SANITIZER), err[-3000:]


def exits_clean(proc, stderr, timeout, what):
    """proc (a Popen) exits 0 within timeout seconds of what just happened, and stderr()
    then shows no sanitizer report; killed if it is still running."""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {timeout} s after {what}:\n{stderr()}")
    err = stderr()
    assert rc == 0, f"exited {rc} after {what}:\n{err}"
    assert_no_sanitizer(err)


class Proc:
    """env is added to the environment. stdout is kept as bytes (out) and, for a subclass
    defining _out_line (_err_line), handed to it a line at a time. stderr is kept as bytes,
    or written to a file (for tools whose stderr outlives the test's threads) in
    stderr_file, a directory, or in the host's directory if stderr_file is True."""

    def __init__(self, argv, host=None, env=None, stdin=subprocess.PIPE, read_stdout=True,
                 stderr_file=False, **kw):
        self.host = host
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        self.err_path = None
        err = subprocess.PIPE
        if stderr_file:
            where = host.dir if stderr_file is True else stderr_file
            self.err_path = os.path.join(where, f"stderr-{os.urandom(4).hex()}")
            err = open(self.err_path, "wb")
        kw.update(stdin=stdin, stdout=subprocess.PIPE, stderr=err)
        try:
            if host:
                self.proc = host.popen(argv, **kw, **({"env": env} if env is not None else {}))
            else:
                if env is not None:
                    kw["env"] = {**os.environ, **env}
                self.proc = subprocess.Popen(argv, **kw)
        finally:
            if stderr_file:
                err.close()   # the child has its own copy
        self.threads = []
        if not stderr_file:
            self.threads.append(threading.Thread(target=self._pump,
                                                 args=(self.proc.stderr, self.err), daemon=True))
        if read_stdout:
            self.threads.append(threading.Thread(target=self._pump,
                                                 args=(self.proc.stdout, self.out), daemon=True))
        for t in self.threads:
            t.start()

    @property
    def pid(self):
        return self.proc.pid

    def _pump(self, f, into):
        hook = self._out_line if into is self.out else self._err_line
        split = getattr(hook, "__func__", None) not in (Proc._out_line, Proc._err_line)
        pending = b""
        while True:
            b = f.read1(65536)
            if not b:
                if into is self.out:
                    self._out_end()
                return
            with self.lock:
                into.extend(b)
            if split:
                *lines, pending = (pending + b).split(b"\n")
                for line in lines:
                    hook(line)

    def _out_line(self, line):
        """Called from the stdout thread with each line (without its newline)."""

    def _err_line(self, line):
        """Called from the stderr thread with each line (without its newline)."""

    def _out_end(self):
        """Called from the stdout thread when stdout ends, after the last _out_line."""

    def lines(self):
        with self.lock:
            text = self.out.decode(errors="replace")
        return text.split("\n")[:-1]

    def frames(self):
        return [json.loads(s) for s in self.lines() if s.startswith("{")]

    def stderr(self):
        if self.err_path:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        with self.lock:
            return self.err.decode(errors="replace")

    def write(self, data):
        self.proc.stdin.write(data.encode() if isinstance(data, str) else data)
        self.proc.stdin.flush()

    def send(self, **frame):
        self.write(json.dumps(frame) + "\n")

    def wait_until(self, pred, timeout, what):
        """pred's first true value, failing early (with stderr) if the process exits first."""
        def check():
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before {what}:\n"
                                     f"{self.stderr()[-3000:]}")
            return None
        return wait_for(check, timeout, what)

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def join(self, timeout=5):
        for t in self.threads:
            t.join(timeout)

    def stop(self, timeout=5):
        """SIGTERM, then SIGKILL after timeout seconds; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.join(2)
        return self.proc.returncode

    def clean_exit(self, timeout, what):
        """The process exits 0 by itself within timeout seconds of what just happened, and
        printed no sanitizer report."""
        exits_clean(self.proc, lambda: (self.join(), self.stderr())[1], timeout, what)

    def stop_clean(self, timeout=10):
        """SIGTERM (unless it has exited), then the clean-exit check: exit status 0 within
        timeout seconds and no sanitizer report. Checking again changes nothing."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.clean_exit(timeout, "SIGTERM")


class JsonLines(Proc):
    """A Proc whose stdout is one JSON value a line, taken in order with next_json(), for
    tools driven a request at a time (test_proxy's Agent, test_browser's Browser)."""

    def __init__(self, argv, **kw):
        self.received = queue.Queue()   # stdout's values, then None at its end
        super().__init__(argv, **kw)

    def _out_line(self, line):
        self.received.put(json.loads(line))

    def _out_end(self):
        self.received.put(None)

    def next_json(self, timeout, what):
        """The next value within timeout seconds; what names the process in the error."""
        try:
            m = self.received.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nothing from {what} in {timeout:.1f} s") from None
        if m is None:
            self.received.put(None)
            raise EOFError(f"{what} exited:\n{self.stderr()[-3000:]}")
        return m

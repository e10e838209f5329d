"""The harness's clean-exit check (tests/lib/proc.py), which every proxy fixture and
at-end test relies on: it must fail for a tool that exits non-zero, prints a sanitizer
report or ignores SIGTERM. A Python stand-in plays the tool; nothing else runs."""
import sys

import pytest

from proc import Proc

# Prints its pid, then at SIGTERM writes argv[1] to stderr and exits with argv[2]; with
# argv[2] "ignore" it ignores SIGTERM.
STANDIN = r'''
import os, signal, sys
def term(*_):
    sys.stderr.write(sys.argv[1])
    sys.exit(int(sys.argv[2]))
signal.signal(signal.SIGTERM, signal.SIG_IGN if sys.argv[2] == "ignore" else term)
print(os.getpid(), flush=True)
while True:
    signal.pause()
'''
REPORT = "==7==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n"


def standin(tmp_path, report, status, to_file):
    p = Proc([sys.executable, "-c", STANDIN, report, status],
             stderr_file=str(tmp_path) if to_file else False)
    p.wait_until(lambda: p.lines(), 10, "the stand-in to start")
    return p


@pytest.mark.parametrize("to_file", [False, True])
def test_stop_clean_passes_a_clean_exit(tmp_path, to_file):
    p = standin(tmp_path, "bye\n", "0", to_file)
    p.stop_clean(5)
    assert p.stderr() == "bye\n"
    p.stop_clean(5)   # checking again changes nothing


@pytest.mark.parametrize("to_file", [False, True])
@pytest.mark.parametrize("report, status, what", [
    (REPORT, "0", "AddressSanitizer"),
    ("x.c:1:2: runtime error: signed integer overflow\n", "0", "runtime error"),
    ("", "1", "exited 1 after SIGTERM"),
    ("", "ignore", "still running 1 s after SIGTERM"),
])
def test_stop_clean_fails_what_is_not(tmp_path, to_file, report, status, what):
    p = standin(tmp_path, report, status, to_file)
    with pytest.raises(AssertionError, match=what):
        p.stop_clean(1)
    assert p.proc.poll() is not None   # and it is not left running

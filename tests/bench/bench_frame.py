#!/usr/bin/python3
"""CPU cost per frame of libcommon's frame and stream modules (tests/README.md).

Builds tests/bench/frame_speed.c against just the modules it measures (frame, stream,
jsontext, cbortext, buf), so it runs without root and without the rest of the tree, and prints
its figures: a pass-through stage's cost per 100-byte frame (read framing, action peek,
queueing the bytes as they are) and a consuming stage's (decode + encode); and the scans
of 1 MiB of ASCII, CJK and escape-dense text (UTF-8 check, the JSON writer's escape scan,
the proxy's read of a client frame), where text that is not ASCII shows what the ASCII
fast paths cost it."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SRC = ["tests/bench/frame_speed.c"] + [f"libcommon/{m}.c" for m in
                                       ("frame", "stream", "jsontext", "cbortext", "buf")]


def main():
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libcbor", "jansson",
                            "libsodium"], capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "frame_speed")
        subprocess.run(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-Ilibcommon", "-o", exe,
                        *SRC, *flags.stdout.split()], cwd=ROOT, check=True)
        return subprocess.run([exe], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Mesh formation: one channel on N test hosts (4, 8, 16, 24), an nws-pipe on each, all
started at once; prints the time from the last start until every host has seen every
other (N-1 connects each), and where that time went (median over the hosts): key
derivation and publishing (advertised), discovery (last peer resolved), linking (last
link up), with the dials made and the links refused because the channel was not open
yet; then the time until one more host, started on the formed mesh, and the others have
all met. Needs root (test hosts). All hosts share this machine's cores."""
import os
import secrets
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import hosts  # noqa: E402
import meshrun  # noqa: E402

SIZES = [int(n) for n in os.environ.get("NWS_MESH_SIZES", "4 8 16 24").split()]
BIN = os.environ.get("NWS_BIN") or os.path.join(ROOT, "build", "bin")
TIMEOUT = 180


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def one(n):
    net = hosts.Network()
    pipes = []
    try:
        hs = net.add(n + 1)
        pipe, ch = os.path.join(BIN, "nws-pipe"), "bench-" + secrets.token_hex(8)
        try:
            pipes = meshrun.start(hs[:n], pipe, ch)
            t0 = max(p.t_start for p in pipes)
            t = meshrun.wait_mesh(pipes, TIMEOUT) - t0
            ph = meshrun.phases(pipes)
            # One more host joins the formed mesh.
            pipes += meshrun.start(hs[n:], pipe, ch)
            tj = meshrun.wait_mesh(pipes, TIMEOUT) - pipes[-1].t_start
        finally:
            meshrun.stop(pipes)
        print(f"{n:3d} hosts: full mesh {t:6.2f} s after the last start | median per host: "
              f"advertised {med(p['advertised'] for p in ph):5.2f} s "
              f"(last host {max(p['advertised'] for p in ph):5.2f} s), "
              f"last peer resolved {med(p['last_found'] for p in ph):5.2f} s, "
              f"last link {med(p['last_link'] for p in ph):5.2f} s, "
              f"dials {med(p['dials'] for p in ph):.0f}, "
              f"refused early {sum(p['refused_early'] for p in ph)} in all | "
              f"host {n + 1} joins in {tj:5.2f} s", flush=True)
        return 0
    except (TimeoutError, RuntimeError) as e:
        print(f"{n:3d} hosts: {e}", flush=True)
        return 1
    finally:
        net.close()


def main():
    why = hosts.missing()
    if why:
        print(f"bench_mesh: skipped: {why}")
        return 0
    status = 0
    for n in SIZES:
        status |= one(n)
    return status


if __name__ == "__main__":
    sys.exit(main())

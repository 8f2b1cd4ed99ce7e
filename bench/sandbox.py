"""Sandbox start-to-result overhead: each tier against a plain subprocess.

    .venv/bin/python bench/sandbox.py [--quick] [--runs 300] [--json bench/results/sandbox.json]

Two workloads, each run to its result (outputs collected, process reaped):

- ``true``: ``/usr/bin/true`` — nothing but the cost of starting and ending the sandbox;
- ``python``: ``python3 -I -c 'print(1)'`` — a typical ``run_python`` call (the interpreter's
  own start-up, ~10 ms, is in every column).

Four ways: ``plain`` (``subprocess.run`` with captured output: the floor), ``process``
(fork + rlimits + Landlock + seccomp, fresh work directory created and removed), ``bwrap``
(bubblewrap namespaces + seccomp, tmpfs work directory) and ``bwrap+net`` (the same with a
network allowlist: the egress proxy started and stopped, the relay started in the sandbox
ahead of the command), each through ``LocalSandbox.run`` with a default profile.  The ways
alternate in blocks of 10 so a noisy neighbour slows them alike.  Overhead = sandbox p50 -
plain p50.  Every result is checked.

Then the egress proxy's added connect latency: open a connection to a local TCP echo server
and get one byte back through it, ``direct`` (host to server), ``proxy`` (host to the proxy's
UNIX socket: ``CONNECT localhost:port``, the proxy resolves the name, checks the address,
connects, answers 200) and ``sandbox`` (inside a bwrap sandbox, through the relay on
127.0.0.1:3128 and the proxy; timed inside the sandbox).  Added = p50 - direct p50.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ringfence.runtime.sandbox import Egress, LocalSandbox, SandboxProfile, Tier
from ringfence.runtime.sandbox.egress import parse_host_rule
from ringfence.runtime.sandbox.proxy import EgressProxy

HERE = Path(__file__).resolve().parent
BLOCK = 10
WORKLOADS: dict[str, tuple[list[str], bytes]] = {
    "true": (["true"], b""),
    "python": (["python3", "-I", "-c", "print(1)"], b"1\n"),
}


def _plain(argv: list[str], expected: bytes) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(argv, capture_output=True, check=False)
        assert done.returncode == 0 and done.stdout == expected, done

    return run


def _sandboxed(
    box: LocalSandbox, tier: Tier, argv: list[str], expected: bytes, network: Egress | None = None
) -> Callable[[], None]:
    profile = SandboxProfile(name=f"bench-{tier}", tier=tier, network=network)

    def run() -> None:
        result = box.run(profile, argv=argv)
        assert result.ok and result.stdout == expected and result.tier_used is tier, result
        assert (result.egress is None) is (network is None), result

    return run


@contextlib.contextmanager
def _echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that echoes each connection's bytes as they come."""
    server = socket.create_server(("127.0.0.1", 0), backlog=128)

    def one(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


# One connection and one echoed byte; the same code runs on the host and in the sandbox.
_TIMED = """
import socket, time
def through(connect, head):
    t0 = time.perf_counter_ns()
    s = connect()
    if head:
        s.sendall(head)
        got = b""
        while not got.endswith(b"\\r\\n\\r\\n"):
            got += s.recv(1)
        assert got.startswith(b"HTTP/1.1 200"), got
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    t1 = time.perf_counter_ns()
    s.close()
    return t1 - t0
"""


def _egress_latency(
    box: LocalSandbox, runs: int, with_sandbox: bool
) -> dict[str, dict[str, float]]:
    scope: dict[str, Any] = {}
    exec(_TIMED, scope)  # the same timing code as in the sandbox
    through: Callable[[Callable[[], socket.socket], bytes], int] = scope["through"]
    results: dict[str, dict[str, float]] = {}
    with _echo_server() as port:
        egress = Egress((parse_host_rule(f"localhost:{port}"),), allow_private=True)
        head = f"CONNECT localhost:{port} HTTP/1.1\r\n\r\n".encode()
        folder = tempfile.mkdtemp(prefix="rf-bench-")
        try:
            with EgressProxy(egress, os.path.join(folder, "p.sock")) as proxy:

                def via_proxy() -> socket.socket:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(proxy.path)
                    return s

                direct: list[int] = []
                proxied: list[int] = []
                for _ in range(10):  # warm up
                    through(lambda: socket.create_connection(("127.0.0.1", port)), b"")
                    through(via_proxy, head)
                while len(direct) < runs:
                    for _ in range(BLOCK):
                        direct.append(
                            through(lambda: socket.create_connection(("127.0.0.1", port)), b"")
                        )
                    for _ in range(BLOCK):
                        proxied.append(through(via_proxy, head))
                report = proxy.close()
                assert all(c.allowed for c in report.connections), report.refused[:1]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        results["direct"] = _stats(direct[:runs])
        results["proxy"] = _stats(proxied[:runs])
        if with_sandbox:
            code = _TIMED + (
                f"c = lambda: socket.create_connection(('127.0.0.1', 3128))\n"
                f"for _ in range(10): through(c, {head!r})\n"
                f"print([through(c, {head!r}) for _ in range({runs})])\n"
            )
            profile = SandboxProfile(name="bench-net", network=egress)
            result = box.run(profile, code=code)
            assert result.ok, result.stderr.decode()
            results["sandbox"] = _stats(json.loads(result.stdout))
    base = results["direct"]["p50_ms"]
    for figures in results.values():
        figures["added_p50_ms"] = figures["p50_ms"] - base
    return results


def _stats(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": ordered[len(ordered) // 2] / 1e6,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6,
        "mean_ms": statistics.fmean(ordered) / 1e6,
        "n": float(len(ordered)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 runs per way")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "sandbox.json")
    args = parser.parse_args()
    runs = 50 if args.quick else args.runs
    box = LocalSandbox()
    tiers = []
    for tier in Tier:
        found = box.availability(tier)
        print(
            f"{tier.value}: {'available' if found.available else 'NOT available'} ({found.detail})"
        )
        if found.available:
            tiers.append(tier)
    report: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.release()}",
        "python": sys.version.split()[0],
        "runs": runs,
        "results": {},
    }
    results: dict[str, dict[str, dict[str, float]]] = {}
    for workload, (argv, expected) in WORKLOADS.items():
        ways: dict[str, Callable[[], None]] = {"plain": _plain(argv, expected)}
        for tier in tiers:
            ways[tier.value] = _sandboxed(box, tier, argv, expected)
        if Tier.BWRAP in tiers:
            net = Egress((parse_host_rule("localhost"),), allow_private=True)
            ways["bwrap+net"] = _sandboxed(box, Tier.BWRAP, argv, expected, net)
        for fn in ways.values():  # warm up: page cache, probes, filters
            for _ in range(5):
                fn()
        samples: dict[str, list[int]] = {name: [] for name in ways}
        while min(len(s) for s in samples.values()) < runs:
            for name, fn in ways.items():
                for _ in range(BLOCK):
                    t0 = time.perf_counter_ns()
                    fn()
                    samples[name].append(time.perf_counter_ns() - t0)
        stats = {name: _stats(s[:runs]) for name, s in samples.items()}
        base = stats["plain"]["p50_ms"]
        for figures in stats.values():
            figures["overhead_p50_ms"] = figures["p50_ms"] - base
        results[workload] = stats
    report["results"] = results
    latency = _egress_latency(box, runs * 4, with_sandbox=Tier.BWRAP in tiers)
    report["egress_connect"] = latency
    print(f"\n{'workload':<8} {'way':<10} {'p50 ms':>8} {'p99 ms':>8} {'overhead p50':>13}")
    for workload, stats in results.items():
        for name, figures in stats.items():
            print(
                f"{workload:<8} {name:<10} {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}"
                f" {figures['overhead_p50_ms']:>+12.2f}"
            )
    print(f"\n{'connect + 1 byte':<19} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10}")
    for name, figures in latency.items():
        print(
            f"{name:<19} {figures['p50_ms']:>8.3f} {figures['p99_ms']:>8.3f}"
            f" {figures['added_p50_ms']:>+10.3f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()

"""Sandbox start-to-result overhead: each tier against a plain subprocess.

    .venv/bin/python bench/sandbox.py [--quick] [--runs 300] [--json bench/results/sandbox.json]

Two workloads, each run to its result (outputs collected, process reaped):

- ``true``: ``/usr/bin/true`` — nothing but the cost of starting and ending the sandbox;
- ``python``: ``python3 -I -c 'print(1)'`` — a typical ``run_python`` call (the interpreter's
  own start-up, ~10 ms, is in every column).

Three ways: ``plain`` (``subprocess.run`` with captured output: the floor), ``process``
(fork + rlimits + Landlock + seccomp, fresh work directory created and removed) and
``bwrap`` (bubblewrap namespaces + seccomp, tmpfs work directory), each through
``LocalSandbox.run`` with a default profile.  The ways alternate in blocks of 10 so a noisy
neighbour slows them alike.  Overhead = sandbox p50 - plain p50.  Every result is checked.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ringfence.runtime.sandbox import LocalSandbox, SandboxProfile, Tier

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
    box: LocalSandbox, tier: Tier, argv: list[str], expected: bytes
) -> Callable[[], None]:
    profile = SandboxProfile(name=f"bench-{tier}", tier=tier)

    def run() -> None:
        result = box.run(profile, argv=argv)
        assert result.ok and result.stdout == expected and result.tier_used is tier, result

    return run


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
    print(f"\n{'workload':<8} {'way':<8} {'p50 ms':>8} {'p99 ms':>8} {'overhead p50':>13}")
    for workload, stats in results.items():
        for name, figures in stats.items():
            print(
                f"{workload:<8} {name:<8} {figures['p50_ms']:>8.2f} {figures['p99_ms']:>8.2f}"
                f" {figures['overhead_p50_ms']:>+12.2f}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()

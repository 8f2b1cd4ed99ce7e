"""Timing harness shared by every benchmark (stdlib only, so peers' venvs can import it).

Each call is timed on its own with ``perf_counter_ns``; the cost of an empty timed call is
measured the same way and subtracted, so figures are the cost of the call itself.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any


def _noop() -> None:
    return None


def _samples(fn: Callable[[], Any], n: int) -> list[int]:
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out


def measure(fn: Callable[[], Any], *, n: int = 20_000, warmup: int = 2_000) -> dict[str, float]:
    """Median, p99 and mean of ``fn()`` in microseconds, timer overhead removed."""
    for _ in range(warmup):
        fn()
    overhead = statistics.median(_samples(_noop, 5_000))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        samples = sorted(max(s - overhead, 0) for s in _samples(fn, n))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": sum(samples) / len(samples) / 1000,
        "n": float(n),
    }

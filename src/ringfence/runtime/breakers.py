"""Circuit breakers at run time: this process's failure windows, the store's shared state.

Each process counts the outcomes it sees in a sliding window per breaker
(:class:`ringfence.core.limits.Window`); when its window says to open, it opens the breaker
in the store (a flagged cell), which every process sees before its next decision.  So the
failure rate is judged per process — on the calls it made — and ``min_calls`` counts that
process's calls; the open / half-open / closed state and the probes are shared.  While a
breaker is not closed the window is not fed, and it starts empty once the breaker closes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import msgspec

from ringfence.core.limits import (
    CLOSED,
    Breaker,
    BreakerPhase,
    BreakerSpec,
    Window,
    breaker_result,
)
from ringfence.runtime.ports import Cell, LimitStore

__all__ = ["Breakers"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Breaker).decode


def breaker_cell(state: Breaker) -> Cell:
    """The store cell of a breaker state (a closed breaker needs no cell)."""
    return Cell(None) if state.closed else Cell(_encode(state), True)


class Breakers:
    """Failure windows of this process, per breaker key."""

    def __init__(self, store: LimitStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}

    def record(
        self,
        entries: tuple[tuple[BreakerSpec, str], ...],
        shared: Mapping[str, Breaker],
        ok: bool,
        duration_ns: int,
        now_ns: int,
    ) -> None:
        """Count one outcome against each breaker in ``entries``; ``shared`` holds the
        breakers known not to be closed (their states as last read from the store)."""
        for spec, key in entries:
            failed = spec.failed(ok, duration_ns)
            state = shared.get(key)
            trip = None
            with self._lock:
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = Window(spec.window_ns)
                if state is None:
                    window.add(now_ns, failed)
                    trip = window.trips(spec, now_ns)
                else:
                    window.clear()
            if state is None and trip is None:
                continue
            if state is not None and state.phase == BreakerPhase.OPEN:
                continue  # a call that started before the breaker opened
            self._store.update(key, self._change(spec, now_ns, failed, trip))
            if trip is not None:
                with self._lock:
                    window.clear()

    @staticmethod
    def _change(
        spec: BreakerSpec, now_ns: int, failed: bool, trip: str | None
    ) -> Callable[[bytes | None], Cell]:
        def change(data: bytes | None) -> Cell:
            current = CLOSED if data is None else _decode(data)
            return breaker_cell(breaker_result(spec, current, now_ns, failed, trip))

        return change

"""A clock for tests: returns a fixed time that only moves when told to."""

from __future__ import annotations


class FixedClock:
    """Nanoseconds since the epoch; ``advance(seconds)`` moves it."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += int(seconds * 1e9)

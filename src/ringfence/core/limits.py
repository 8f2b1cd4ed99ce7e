"""Rate limits, budgets, circuit breakers and loop limits: specs and their arithmetic.

Pure: every function takes the time (ns since the epoch) as an argument; nothing here reads
a clock, a file or a store.  ``ringfence.runtime.controls`` keeps the state and applies them.

**Token bucket.**  A bucket holds up to ``capacity`` tokens and gains ``refill`` tokens per
``window_ns``.  Levels are integers in units of 1/``window_us`` of a token (a token is
``window_us`` units; one elapsed microsecond adds ``refill`` units), so refilling is exact
and never drifts, and the time consumed by a refill is whole microseconds.  A call budget is
a bucket that never refills (its window is in the state key instead).  Whatever sequence of
takes, leases and give-backs happens, the tokens handed out from time ``t0`` to ``t`` never
exceed ``capacity + refill * (t - t0) / window_ns`` (a Hypothesis test pins it).

**Leases.**  A process takes a batch of tokens at once (:func:`lease`: a sixteenth of what is
available, at least 1, at most ``MAX_LEASE``) and spends them locally; unspent tokens go back
with the next lease (:func:`lease` ``give_back``).  Tokens are only ever spent after they left
the shared bucket, so leases never over-allow from any start; see docs/controls.md for the
bound over a sliding window.

**Circuit breaker.**  ``closed`` admits everything; it opens when, over the last
``window_ns``, at least ``min_calls`` calls finished and the share that failed or took longer
than ``slow_ns`` reached ``failure_rate``.  ``open`` admits nothing for ``open_ns``; then it
is ``half_open`` and admits up to ``probes`` calls: a probe that succeeds closes it, one that
fails opens it again.  A probe that never reports (its process died) is replaced after
``open_ns``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from ringfence.core.policy.globs import names_match

__all__ = [
    "MAX_LEASE",
    "PER",
    "Breaker",
    "BreakerPhase",
    "BreakerSpec",
    "Bucket",
    "BucketSpec",
    "Budget",
    "LimitSet",
    "LoopLimit",
    "RateLimit",
    "Selector",
    "Usage",
    "Window",
    "breaker_admit",
    "breaker_result",
    "lease",
    "put_back",
    "refilled",
    "take",
]

PER = ("agent", "session", "tool", "user", "global")
LEASE_DIVISOR = 16
MAX_LEASE = 4096
MICROS = 1_000_000  # cost is kept in millionths


@dataclass(frozen=True)
class Selector:
    """Which actions a limit counts: tool / agent / user name globs and kinds (None: any)."""

    tools: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    users: tuple[str, ...] | None = None

    def admits_tool(self, kind: str, tool: str) -> bool:
        """The part that depends only on kind and tool (cached per tool by the runtime)."""
        if self.kinds is not None and kind not in self.kinds:
            return False
        return self.tools is None or names_match(self.tools, tool)

    @property
    def by_caller(self) -> bool:
        """True if the selector also depends on the agent or user."""
        return self.agents is not None or self.users is not None

    def admits_caller(self, agent: str | None, user: str | None) -> bool:
        """The part that depends on who acts (a missing user never matches a user glob)."""
        if self.agents is not None and (agent is None or not names_match(self.agents, agent)):
            return False
        return self.users is None or (user is not None and names_match(self.users, user))


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class BucketSpec:
    """``capacity`` tokens, ``refill`` tokens added per ``window_ns`` (a multiple of 1 µs)."""

    capacity: int
    refill: int
    window_ns: int

    @property
    def token(self) -> int:
        """Units per token (the window in microseconds)."""
        return max(1, self.window_ns // 1000)

    @property
    def full(self) -> int:
        """The level of a full bucket, in units."""
        return self.capacity * self.token


@dataclass(frozen=True)
class RateLimit:
    """``limit`` calls per ``window_ns`` (bursts up to ``burst``), one bucket per ``per`` value."""

    id: str
    per: str
    limit: int
    window_ns: int
    burst: int
    select: Selector = Selector()
    window_text: str = ""

    @property
    def bucket(self) -> BucketSpec:
        """The token bucket of one ``per`` value."""
        return BucketSpec(self.burst, self.limit, self.window_ns)

    @property
    def key(self) -> str:
        """State key prefix: the id and a digest of the numbers (a changed limit starts anew)."""
        return f"rate|{self.id}@{_fingerprint(self.per, self.limit, self.window_ns, self.burst)}|"

    def describe(self) -> str:
        """``10 per 60s`` (``, bursts of 20`` when the burst differs)."""
        text = f"{self.limit} per {self.window_text or f'{self.window_ns // 10**9}s'}"
        return text if self.burst == self.limit else f"{text}, bursts of {self.burst}"


@dataclass(frozen=True)
class Budget:
    """Calls, tokens and/or cost allowed per ``per`` value, for ever or per ``window_ns``.

    ``calls`` are counted when an action is admitted and never over-allowed; ``tokens`` and
    ``cost`` are reported by the caller after the fact, so the call that crosses the limit
    has already run: every later one is denied.  Cost is kept in millionths.
    """

    id: str
    per: str
    calls: int | None = None
    tokens: int | None = None
    cost_micros: int | None = None
    window_ns: int | None = None
    select: Selector = Selector()
    window_text: str = ""

    @property
    def key(self) -> str:
        """State key prefix (see :attr:`RateLimit.key`)."""
        fp = _fingerprint(self.per, self.calls, self.tokens, self.cost_micros, self.window_ns)
        return f"budget|{self.id}@{fp}|"

    @property
    def calls_bucket(self) -> BucketSpec | None:
        """The never-refilling bucket of calls, if calls are limited."""
        return None if self.calls is None else BucketSpec(self.calls, 0, 1000)

    def window(self, now_ns: int) -> tuple[int, int | None]:
        """(index of the window ``now_ns`` is in, the ns it ends at); (0, None) without one."""
        if self.window_ns is None:
            return 0, None
        index = now_ns // self.window_ns
        return index, (index + 1) * self.window_ns

    def exhausted(self, usage: Usage) -> str | None:
        """Which of tokens / cost is used up by ``usage`` (``"tokens 1200 of 1000"``), or None."""
        if self.tokens is not None and usage.tokens >= self.tokens:
            return f"tokens {usage.tokens} of {self.tokens}"
        if self.cost_micros is not None and usage.cost_micros >= self.cost_micros:
            return f"cost {usage.cost_micros / MICROS:g} of {self.cost_micros / MICROS:g}"
        return None

    def describe_window(self) -> str:
        """`` per 1d`` or ``""``."""
        return f" per {self.window_text}" if self.window_ns is not None else ""


@dataclass(frozen=True)
class BreakerSpec:
    """A circuit breaker over the tools ``select`` admits: one per tool, or one for all of
    them (``per: global`` — an MCP server's tools, say)."""

    id: str
    per: str  # "tool" or "global"
    failure_rate: float
    min_calls: int
    window_ns: int
    open_ns: int
    slow_ns: int | None = None
    probes: int = 1
    select: Selector = Selector()

    @property
    def key(self) -> str:
        """State key prefix (see :attr:`RateLimit.key`)."""
        return f"breaker|{self.id}@{_fingerprint(self.per, self.open_ns, self.probes)}|"

    def failed(self, ok: bool, duration_ns: int) -> bool:
        """Whether an outcome counts against the breaker (an error, or slower than slow_ns)."""
        return not ok or (self.slow_ns is not None and duration_ns > self.slow_ns)


@dataclass(frozen=True)
class LoopLimit:
    """Deny a call already allowed ``max_repeats`` times (same tool, same arguments) among
    the session's recent calls — the session state's ``repeats``, as ``state.repeats``."""

    max_repeats: int


@dataclass(frozen=True)
class LimitSet:
    """A policy's ``limits:`` section, parsed."""

    rates: tuple[RateLimit, ...] = ()
    budgets: tuple[Budget, ...] = ()
    breakers: tuple[BreakerSpec, ...] = ()
    loop: LoopLimit | None = None

    def __bool__(self) -> bool:
        return bool(self.rates or self.budgets or self.breakers or self.loop)


NO_LIMITS = LimitSet()

# -- token buckets ---------------------------------------------------------------------------


class Bucket(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A bucket's level (units) as of ``at_ns``."""

    level: int
    at_ns: int


def refilled(spec: BucketSpec, bucket: Bucket | None, now_ns: int) -> Bucket:
    """``bucket`` as of ``now_ns`` (a new bucket is full; a clock that went back adds nothing)."""
    if bucket is None:
        return Bucket(spec.full, now_ns)
    if now_ns <= bucket.at_ns or spec.refill == 0:
        return bucket
    micros = (now_ns - bucket.at_ns) // 1000
    level = bucket.level + micros * spec.refill
    if level >= spec.full:
        return Bucket(spec.full, now_ns)
    return Bucket(level, bucket.at_ns + micros * 1000)


def take(spec: BucketSpec, bucket: Bucket | None, now_ns: int, n: int = 1) -> tuple[Bucket, bool]:
    """Take ``n`` tokens if the bucket has them: (new state, whether they were taken)."""
    b = refilled(spec, bucket, now_ns)
    cost = n * spec.token
    if b.level < cost:
        return b, False
    return Bucket(b.level - cost, b.at_ns), True


def lease(
    spec: BucketSpec,
    bucket: Bucket | None,
    now_ns: int,
    *,
    give_back: int = 0,
    divisor: int = LEASE_DIVISOR,
    most: int = MAX_LEASE,
) -> tuple[Bucket, int]:
    """Return ``give_back`` unspent tokens, then take a batch: (new state, tokens granted).

    Returned tokens never fill the bucket past its capacity, so handing out and giving back
    can only lower what is handed out later.
    """
    b = refilled(spec, bucket, now_ns)
    level = put_back(spec, b, now_ns, give_back).level if give_back else b.level
    available = level // spec.token
    if available <= 0:
        return Bucket(level, b.at_ns), 0
    granted = min(most, max(1, available // divisor))
    return Bucket(level - granted * spec.token, b.at_ns), granted


def put_back(spec: BucketSpec, bucket: Bucket | None, now_ns: int, n: int) -> Bucket:
    """Return ``n`` unspent tokens (never past the capacity)."""
    b = refilled(spec, bucket, now_ns)
    return Bucket(min(spec.full, b.level + n * spec.token), b.at_ns)


def next_token_ns(spec: BucketSpec, bucket: Bucket) -> int | None:
    """When the bucket will next hold a whole token (None if it never refills)."""
    short = spec.token - bucket.level
    if short <= 0:
        return bucket.at_ns
    if spec.refill == 0:
        return None
    return bucket.at_ns + -(-short // spec.refill) * 1000


def full_at_ns(spec: BucketSpec, bucket: Bucket) -> int | None:
    """When the bucket will be full again, i.e. as good as a fresh one (None: never)."""
    short = spec.full - bucket.level
    if short <= 0:
        return bucket.at_ns
    if spec.refill == 0:
        return None
    return bucket.at_ns + -(-short // spec.refill) * 1000


# -- budgets ---------------------------------------------------------------------------------


class Usage(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Tokens and cost (millionths) reported against one budget in one window."""

    tokens: int = 0
    cost_micros: int = 0

    def plus(self, tokens: int, cost_micros: int) -> Usage:
        """This usage with more added."""
        return Usage(self.tokens + tokens, self.cost_micros + cost_micros)


# -- circuit breakers ------------------------------------------------------------------------


class BreakerPhase(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A breaker's shared state: phase, since when, probes handed out, why it opened."""

    phase: str = BreakerPhase.CLOSED.value
    since_ns: int = 0
    probes: int = 0
    why: str = ""

    @property
    def closed(self) -> bool:
        """True when calls go through."""
        return self.phase == BreakerPhase.CLOSED


CLOSED = Breaker()


def breaker_admit(spec: BreakerSpec, state: Breaker, now_ns: int) -> tuple[Breaker, bool]:
    """Whether a call may go through now, and the state after handing out a probe."""
    if state.phase == BreakerPhase.CLOSED:
        return state, True
    if state.phase == BreakerPhase.OPEN:
        if now_ns < state.since_ns + spec.open_ns:
            return state, False
        return Breaker(BreakerPhase.HALF_OPEN.value, now_ns, 1, state.why), True
    if state.probes < spec.probes:
        return Breaker(state.phase, state.since_ns, state.probes + 1, state.why), True
    if now_ns >= state.since_ns + spec.open_ns:  # the probes never reported: try again
        return Breaker(state.phase, now_ns, 1, state.why), True
    return state, False


def breaker_result(
    spec: BreakerSpec, state: Breaker, now_ns: int, failed: bool, trip: str | None
) -> Breaker:
    """The state after a call finished.  ``trip`` is why the failure window says to open a
    closed breaker (from :meth:`Window.trips`), or None."""
    if state.phase == BreakerPhase.HALF_OPEN:
        if failed:
            return Breaker(BreakerPhase.OPEN.value, now_ns, 0, f"probe failed; {state.why}")
        return CLOSED
    if state.phase == BreakerPhase.CLOSED and trip is not None:
        return Breaker(BreakerPhase.OPEN.value, now_ns, 0, trip)
    return state


class Window:
    """Calls and failures over the last ``window_ns``, in ``slots`` sub-windows (one process's
    view; time is passed in)."""

    __slots__ = ("_calls", "_failures", "_slot_ns", "_slots", "_stamp")

    def __init__(self, window_ns: int, slots: int = 10) -> None:
        self._slots = slots
        self._slot_ns = max(1, window_ns // slots)
        self._stamp = [-1] * slots
        self._calls = [0] * slots
        self._failures = [0] * slots

    def add(self, now_ns: int, failed: bool) -> None:
        """Count one finished call."""
        tick = now_ns // self._slot_ns
        i = tick % self._slots
        if self._stamp[i] != tick:
            self._stamp[i], self._calls[i], self._failures[i] = tick, 0, 0
        self._calls[i] += 1
        self._failures[i] += failed

    def counts(self, now_ns: int) -> tuple[int, int]:
        """(calls, failures) in the window ending at ``now_ns``."""
        tick = now_ns // self._slot_ns
        calls = failures = 0
        for i in range(self._slots):
            if tick - self._slots < self._stamp[i] <= tick:
                calls += self._calls[i]
                failures += self._failures[i]
        return calls, failures

    def trips(self, spec: BreakerSpec, now_ns: int) -> str | None:
        """Why the breaker should open now (``"6 of 10 calls failed or were slow"``), or None."""
        calls, failures = self.counts(now_ns)
        if calls < spec.min_calls or failures < spec.failure_rate * calls:
            return None
        return f"{failures} of {calls} calls failed or were slow"

    def clear(self) -> None:
        """Forget everything (after the breaker closed again)."""
        self._stamp = [-1] * self._slots

"""Session bookkeeping for the Guard: state before each decision, updates after it.

A session (one agent run, one conversation) accumulates a ``SessionState`` (see
ringfence.core.flow): labels (only ever added), counters, calls per tool, recent call digests
(loop detection) and value provenance — which addresses, links, account numbers, paths … came
from the user's own request, from trusted tools, or only from untrusted content.  Before a
decision the Guard puts a :class:`SessionView` on the action (read by ``state.…`` fields and
the ``provenance`` operator); after an allow it counts the call and applies the rule's labels
and counts; after the tool ran it observes the result (untrusted if the tool's or server's
labels say so, or if a tripwire fired) and adds the result's labels.

States live behind the ``SessionStore`` port; the default keeps them in memory, bounded (least
recently used sessions are forgotten first).

A result's provenance can wait (``observed(..., defer=True)``, for a store in this process):
its labels and tripwires are applied at once, but taking its parts into provenance, the
largest share of the work, is done for a batch of results at a time
(:meth:`SessionState.observe_many`).  Nothing reads provenance without it: the policy's
``provenance`` questions (:attr:`SessionView.provenance`) and :meth:`Sessions.state` take
in what waits first, so a decision sees every result observed before it, as without
deferral.  What waits is bounded (:data:`MAX_PENDING` results of a session, and
:data:`MAX_PENDING_SESSIONS` sessions); :meth:`Sessions.settle_all` takes it all in (the
MCP gateway calls it once its recorder is idle).  Once a session's policy has asked about
provenance while results waited, that session's results no longer wait: the question would
otherwise take them in on the decision's path, where the recorder's thread does it off it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ringfence.core.action import Action
from ringfence.core.decision import Decision
from ringfence.core.flow import Provenance, SessionState, Source, call_digest
from ringfence.core.tripwires import scan_output

__all__ = [
    "MAX_ASKING",
    "MAX_PENDING",
    "MAX_PENDING_SESSIONS",
    "UNTRUSTED",
    "MemorySessionStore",
    "SessionView",
    "Sessions",
]

log = logging.getLogger(__name__)

UNTRUSTED = "untrusted"
MAX_SESSIONS = 100_000
MAX_REQUESTS_SEEN = 10_000
MAX_PENDING = 16
"""Results of one session whose provenance may wait; the one that makes this many takes
them all in."""
MAX_PENDING_SESSIONS = 1_024
"""Sessions with results waiting; past this, every session's are taken in."""
MAX_ASKING = 16_384
"""Sessions remembered as asking about provenance (their results are not deferred)."""


class SessionView(msgspec.Struct, frozen=True, gc=False):
    """What a policy sees of the session when one action is decided."""

    session: SessionState
    repeats: int  # how many of the recent calls were this exact call (tool + arguments)
    digest: str  # of this call, to count it once it is allowed
    # Set when results of this session were waiting to be taken into provenance: the
    # session's provenance with them (see the module docstring).
    settled: Callable[[], Provenance] | None = None

    @property
    def calls(self) -> int:
        """Allowed calls in the session so far."""
        return self.session.calls

    @property
    def counters(self) -> Mapping[str, int]:
        """The session's counters (names beyond the cap share ``"*"``)."""
        return self.session.counters

    @property
    def tool_calls(self) -> Mapping[str, int]:
        """Allowed calls per tool."""
        return self.session.tool_calls

    @property
    def provenance(self) -> Provenance:
        """Where the session's values came from (every result observed so far)."""
        settled = self.settled
        return self.session.provenance if settled is None else settled()

    def count(self, field: str, name: str) -> int:
        """``state.counters.<name>`` / ``state.tool_calls.<tool>`` (over-counts past the cap)."""
        if field == "counters":
            return self.session.counter(name)
        return self.session.tool_count(name)


class MemorySessionStore:
    """Session states in memory, at most ``max_sessions`` (the least recently used go first)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._states: OrderedDict[str, SessionState] = OrderedDict()
        self._max = max_sessions
        self._lock = threading.Lock()

    def load(self, session: str) -> SessionState | None:
        """The state of ``session``, or None if it has none (yet, or any more)."""
        with self._lock:
            state = self._states.get(session)
            if state is not None:
                self._states.move_to_end(session)
            return state

    def update(self, session: str, change: Callable[[SessionState], SessionState]) -> SessionState:
        """Replace the state of ``session`` by ``change(state)``, atomically."""
        with self._lock:
            state = change(self._states.get(session) or SessionState())
            self._states[session] = state
            self._states.move_to_end(session)
            while len(self._states) > self._max:
                self._states.popitem(last=False)
            return state


class Sessions:
    """The Guard's view of its session store: every change is one atomic ``update``."""

    def __init__(self, store: Any = None, *, tripwires: bool = True) -> None:
        self.store = store if store is not None else MemorySessionStore()
        self._tripwires = tripwires
        self._requests: OrderedDict[str, str] = OrderedDict()
        self._requests_lock = threading.Lock()
        # Results whose provenance waits, per session, oldest first (see the module docstring).
        self._pending: dict[str, list[tuple[Any, Source]]] = {}
        self._pending_lock = threading.Lock()  # for _pending
        self._settling = threading.Lock()  # held while waiting results are taken in: in order
        self._deferrable = isinstance(self.store, MemorySessionStore)
        # Sessions whose policy asked about provenance while results waited: theirs are
        # taken in at once from then on, off the decision's path (see observed).
        self._asking: set[str] = set()

    def state(self, session: str) -> SessionState:
        """The session's state (an empty one if it has none), every result observed so far
        taken in."""
        if session in self._pending:
            self.settle(session)
        return self.store.load(session) or SessionState()

    def labels(self, session: str) -> frozenset[str]:
        """The session's labels (applied at once, also for results whose provenance waits)."""
        state = self.store.load(session)
        return frozenset() if state is None else state.labels

    def settle(self, session: str) -> None:
        """Take the results of ``session`` whose provenance waits into its state.  If that
        fails, they stay waiting, first in line, and the error is raised: a decision that
        asks about provenance is refused rather than made without them."""
        with self._settling:
            with self._pending_lock:
                items = self._pending.pop(session, None)
            if not items:
                return
            try:
                self.store.update(session, lambda s: s.observe_many(items))
            except BaseException:
                with self._pending_lock:
                    self._pending[session] = items + self._pending.get(session, [])
                raise

    def settle_all(self) -> None:
        """:meth:`settle` every session with results waiting; one that fails is logged and
        stays waiting, the others are taken in."""
        for session in list(self._pending):
            try:
                self.settle(session)
            except Exception:
                log.exception("session %r: taking results into provenance failed", session)

    def prepare(self, action: Action) -> Action:
        """``action`` with the session's labels and a SessionView (unchanged without a session)."""
        session = action.session
        if session is None:
            return action
        request = action.request
        with self._requests_lock:
            new_request = bool(request) and self._requests.get(session) != request
            if new_request:
                self._requests[session] = request  # type: ignore[assignment]
                self._requests.move_to_end(session)
                while len(self._requests) > MAX_REQUESTS_SEEN:
                    self._requests.popitem(last=False)
        if new_request:
            # The user's own words: what they name is theirs (recipients, links, paths).
            state = self.store.update(session, lambda s: s.observe(request, Source.USER))
        else:
            # As stored: results whose provenance waits are taken in only if the policy
            # asks about provenance (SessionView.provenance).
            state = self.store.load(session) or SessionState()
        digest = call_digest(action.tool, action.args)
        settled = functools.partial(self._provenance, session) if session in self._pending else None
        view = SessionView(state, state.repeats(digest), digest, settled)
        labels = action.labels | state.labels if state.labels else action.labels
        return msgspec.structs.replace(action, labels=labels, state=view)

    def allowed(self, action: Action, decision: Decision) -> None:
        """Count an allowed action and apply its rule's labels and counts."""
        session, view = action.session, action.state
        if session is None:
            return
        if isinstance(view, SessionView):
            digest = view.digest
        else:
            digest = call_digest(action.tool, action.args)
        ob = decision.obligations

        def change(state: SessionState) -> SessionState:
            state = state.with_call(action.tool, digest)
            if ob.labels:
                state = state.with_labels(ob.labels)
            for name, n in ob.counts:
                state = state.with_counter(name, n)
            return state

        self.store.update(session, change)

    def observed(
        self,
        session: str,
        content: Any,
        labels: tuple[str, ...],
        named: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
        *,
        defer: bool = False,
    ) -> tuple[str, ...]:
        """Take a tool's result into the session; the labels it brought (incl. tripwires).
        ``named`` is the tool's ``user_named`` declaration (by, vouch), if it has one.
        ``defer``: its provenance may wait (see the module docstring; ``content`` must not
        change meanwhile); its labels are added at once either way."""
        trip = set(scan_output(content).labels) if self._tripwires else set()
        # A tripwire in any tool's output makes that output untrusted, whatever the tool.
        untrusted = UNTRUSTED in labels or bool(trip)
        added = set(labels) | trip | ({UNTRUSTED} if untrusted else set())
        source = Source.UNTRUSTED if untrusted else Source.TRUSTED
        if defer and named is None and self._deferrable and session not in self._asking:
            with self._pending_lock:
                waiting = self._pending.setdefault(session, [])
                waiting.append((content, source))
                full = len(waiting) >= MAX_PENDING
                crowded = len(self._pending) > MAX_PENDING_SESSIONS
            if added:
                self.store.update(session, lambda s: s.with_labels(added))
            if crowded:
                self.settle_all()
            elif full:
                self.settle(session)
            return tuple(sorted(added))
        if session in self._pending:
            self.settle(session)  # what waits came first

        def change(state: SessionState) -> SessionState:
            state = state.observe(content, source, named=named)
            return state.with_labels(added) if added else state

        self.store.update(session, change)
        return tuple(sorted(added))

    def _provenance(self, session: str) -> Provenance:
        # The policy asks this session about provenance: what waits is taken in now, on the
        # decision's path, so results after this one are not made to wait (the recorder
        # takes them in right after the answer, before the next request comes).
        if len(self._asking) >= MAX_ASKING:
            self._asking.clear()  # forgetting only lets results wait again
        self._asking.add(session)
        return self.state(session).provenance

    def add_labels(self, session: str, labels: tuple[str, ...]) -> None:
        """Add labels to a session directly."""
        self.store.update(session, lambda s: s.with_labels(labels))

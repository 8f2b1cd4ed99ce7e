"""Session state: labels, counters, call history and value provenance, as one frozen value.

A session (one agent run or one user conversation) accumulates state across actions.
:class:`SessionState` is immutable; every ``with_…``/``observe`` method returns a new
state, so the runtime can compute the next state, decide, and store it through a store
port with :func:`encode_state` / :func:`decode_state`.

Labels only ever grow: there is no method that removes one, and observing UNTRUSTED
content adds :data:`UNTRUSTED_LABEL` by itself.  A store that cannot decode a saved state
must deny rather than start over, or the label would be lost.

Everything is bounded (:class:`~.values.FlowLimits`).  Counter and tool names beyond the
cap share one :data:`OTHER` bucket, which :meth:`SessionState.counter` and
:meth:`~SessionState.tool_count` report for every unrecorded name — over-counting, never
under-counting.  The encoded state stays under ``state_bytes``: when provenance would push
it over (leaving room for the counters, tools and recent window to fill up), the oldest
parts of the largest source are dropped and that source marked overflowed.  Labels are
never dropped; too many labels is an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import msgspec

from ringfence.core.flow.parts import PartKind
from ringfence.core.flow.provenance import (
    MAX_NAMED_CHARS,
    Provenance,
    Seen,
    Source,
    as_tuple,
    named_values,
)
from ringfence.core.flow.values import DEFAULT_LIMITS, FlowLimits
from ringfence.errors import InputError

__all__ = [
    "OTHER",
    "UNTRUSTED_LABEL",
    "SessionState",
    "call_digest",
    "decode_state",
    "encode_state",
]

UNTRUSTED_LABEL = "untrusted"
"""The label :meth:`SessionState.observe` adds for UNTRUSTED content."""
OTHER = "*"
"""The shared bucket for counter and tool names beyond the cap."""

_INT_MAX = 2**63 - 1
_MAX_DELTA = 2**32
_MAX_DIGEST = 128
Count = Annotated[int, msgspec.Meta(ge=0, le=_INT_MAX)]


class SessionState(msgspec.Struct, frozen=True, dict=True, forbid_unknown_fields=True):
    """What a session has accumulated: labels, named counters, how many calls (in all and
    per tool), digests of the most recent calls (for loop detection) and provenance."""

    labels: frozenset[str] = frozenset()
    counters: dict[str, Count] = msgspec.field(default_factory=dict)
    calls: Count = 0
    tool_calls: dict[str, Count] = msgspec.field(default_factory=dict)
    recent: tuple[str, ...] = ()
    provenance: Provenance = Provenance()

    def with_labels(
        self, labels: Iterable[str] | str, *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> SessionState:
        """This state with ``labels`` added (a single string is one label).  InputError if
        a label is empty, too long or unprintable, or the session would hold too many."""
        new = frozenset([labels] if isinstance(labels, str) else labels)
        if new <= self.labels:
            return self
        for label in new:
            _check_name("label", label, limits)
        merged = self.labels | new
        if len(merged) > limits.labels:
            raise InputError(
                f"session state: more than {limits.labels} labels", code="input.session.labels"
            )
        return _fit(msgspec.structs.replace(self, labels=merged), limits)

    def with_call(
        self, tool: str, args_digest: str, *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> SessionState:
        """This state after one more call of ``tool`` whose :func:`call_digest` is
        ``args_digest``; the recent window keeps the last ``limits.recent`` digests."""
        _check_name("tool", tool, limits)
        if (
            not isinstance(args_digest, str)
            or not args_digest.isascii()
            or not args_digest.isprintable()
            or not 0 < len(args_digest) <= _MAX_DIGEST
        ):
            raise InputError(
                f"session state: a call digest is 1 to {_MAX_DIGEST} printable ASCII characters",
                code="input.session.digest",
            )
        recent = (*self.recent, args_digest)[-limits.recent :] if limits.recent > 0 else ()
        return msgspec.structs.replace(
            self,
            calls=min(self.calls + 1, _INT_MAX),
            tool_calls=_bumped(self.tool_calls, tool, 1, limits.tools),
            recent=recent,
        )

    def with_counter(
        self, name: str, delta: int = 1, *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> SessionState:
        """This state with counter ``name`` increased by ``delta`` (0 to 2**32; counters
        only grow, like labels).  Totals saturate at 2**63 - 1."""
        _check_name("counter", name, limits)
        if type(delta) is not int or not 0 <= delta <= _MAX_DELTA:
            raise InputError(
                f"session state: counter delta must be an integer from 0 to {_MAX_DELTA}, "
                f"got {delta!r}",
                code="input.session.counter",
            )
        counters = _bumped(self.counters, name, delta, limits.counters)
        return msgspec.structs.replace(self, counters=counters)

    def counter(self, name: str) -> int:
        """The value of counter ``name``; for a name not recorded, the :data:`OTHER` bucket
        (0 unless the cap was reached), so a budget is never under-counted."""
        return self.counters.get(name, self.counters.get(OTHER, 0))

    def tool_count(self, tool: str) -> int:
        """How many calls of ``tool`` this session made (see :meth:`counter` for the cap)."""
        return self.tool_calls.get(tool, self.tool_calls.get(OTHER, 0))

    def repeats(self, args_digest: str) -> int:
        """How many of the recent calls had this :func:`call_digest`."""
        return self.recent.count(args_digest)

    def observe(
        self,
        content: Any,
        source: Source,
        *,
        named: tuple[Sequence[str], Sequence[str]] | None = None,
        limits: FlowLimits = DEFAULT_LIMITS,
    ) -> SessionState:
        """This state after ``source`` showed the session ``content`` (a tool result, the
        user's request).  UNTRUSTED content adds :data:`UNTRUSTED_LABEL`, even when it
        has no significant parts: the injected text itself is the risk.

        ``named`` is the tool's ``(by, vouch)`` field names: records in ``content`` the user
        named by a ``by`` field vouch for their ``vouch`` fields (:func:`named_values`)."""
        source = Source(source)
        provenance = self.provenance.observe(content, source, limits=limits)
        if named is not None:
            by, vouch = named
            values = named_values(content, provenance.user_seen, by, vouch, limits=limits)
            provenance = provenance.with_named(values, limits=limits)
        return self._observed(provenance, source is Source.UNTRUSTED, limits)

    def observe_many(
        self, items: Sequence[tuple[Any, Source]], *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> SessionState:
        """This state after each ``(content, source)`` of ``items`` in turn, as
        :meth:`observe` (without ``named``) would leave it one by one, but made once: one
        new state and one size check for them all (:meth:`.Provenance.observe_many`).
        The parts and texts are those one by one gives unless the state must shrink: then
        which source gives up its oldest parts is decided once, for the whole batch, and
        can differ (either way, the source that gives them up is marked overflowed)."""
        provenance = self.provenance.observe_many(items, limits=limits)
        untrusted = any(Source(source) is Source.UNTRUSTED for _, source in items)
        return self._observed(provenance, untrusted, limits)

    def _observed(
        self, provenance: Provenance, untrusted: bool, limits: FlowLimits
    ) -> SessionState:
        labels = self.labels
        if untrusted and UNTRUSTED_LABEL not in labels:
            labels = labels | {UNTRUSTED_LABEL}
        elif provenance is self.provenance:
            # Nothing new (seen just before): this state, as large as it was — what a call
            # adds to the counts and the recent window fits the headroom _fit left for it.
            return self
        state = msgspec.structs.replace(self, labels=labels, provenance=provenance)
        if labels is self.labels and _SHELL in self.__dict__:
            state.__dict__[_SHELL] = self.__dict__[_SHELL]  # only provenance changed
        return _fit(state, limits)

    def size_bytes(self) -> int:
        """The size of :func:`encode_state` of this state."""
        return len(encode_state(self))


def _check_name(what: str, name: object, limits: FlowLimits) -> None:
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= limits.label_chars
        or not name.isprintable()
    ):
        raise InputError(
            f"session state: a {what} name is 1 to {limits.label_chars} printable "
            f"characters, got {name!r:.80}",
            code=f"input.session.{what}",
        )


def _bumped(counts: dict[str, int], name: str, delta: int, cap: int) -> dict[str, int]:
    key = name
    if name not in counts and len(counts) - (OTHER in counts) >= cap:
        key = OTHER
    out = dict(counts)
    out[key] = min(out.get(key, 0) + delta, _INT_MAX)
    return out


def _headroom(state: SessionState, limits: FlowLimits) -> int:
    """Bytes the counters, tool counts, call count and recent window can still grow by."""
    entry = 4 * limits.label_chars + 26  # name (UTF-8 or escaped) + quotes, colon, 20 digits
    growth = 20 + (limits.recent - len(state.recent)) * (_MAX_DIGEST + 3)
    for counts, cap in ((state.counters, limits.counters), (state.tool_calls, limits.tools)):
        growth += max(0, cap + 1 - len(counts)) * entry + 20 * len(counts)
    return growth


def _fit(state: SessionState, limits: FlowLimits) -> SessionState:
    budget = limits.state_bytes - _headroom(state, limits)
    size = _encoded_size(state)
    while size > budget:
        provenance = state.provenance
        # The source holding the most parts gives them up first, oldest first.
        source = max(reversed(Source), key=lambda s: len(provenance.seen(s).parts))
        seen = provenance.seen(source)
        if seen.parts:
            average = max(1, len(_ENCODER.encode(seen.parts)) // len(seen.parts))
            dropped = seen.without_oldest(min(len(seen.parts), (size - budget) // average + 1))
        else:
            source = max(reversed(Source), key=lambda s: len(provenance.seen(s).corpus))
            seen = provenance.seen(source)
            if not seen.texts and provenance.named:
                # Vouched values go last, oldest first: losing one only makes it less named.
                fewer = provenance.named[len(provenance.named) // 2 + 1 :]
                provenance = msgspec.structs.replace(provenance, named=fewer)
                state = msgspec.structs.replace(state, provenance=provenance)
                size = _encoded_size(state)
                continue
            if not seen.texts:
                raise InputError(
                    f"session state: {size} bytes without provenance to drop exceeds the "
                    f"limit of {budget} bytes (labels and counts are never dropped)",
                    code="input.session.size",
                )
            dropped = Seen(seen.parts, seen.texts[1:], True)
        state = msgspec.structs.replace(state, provenance=provenance.replaced(source, dropped))
        size = _encoded_size(state)
    return state


def _encoded_size(state: SessionState) -> int:
    """``len(encode_state(state))`` without encoding what provenance holds: each record
    knows its own encoded size (kept up to date as parts come and go), and the rest of the
    state (its "shell") is encoded once per state and carried over when only provenance
    changes (:meth:`SessionState.observe`)."""
    p = state.provenance
    shell: int | None = state.__dict__.get(_SHELL)
    if shell is None:
        shell = len(_ENCODER.encode(msgspec.structs.replace(state, provenance=_NO_PROVENANCE)))
        state.__dict__[_SHELL] = shell
    if p.named:
        shell += len(_ENCODER.encode(Provenance(named=p.named))) - _EMPTY_PROVENANCE
    seens = (p.user_seen, p.trusted_seen, p.untrusted_seen)
    return shell + sum(s.encoded_size() - _EMPTY_SEEN for s in seens)


_ENCODER = msgspec.json.Encoder(order="deterministic", enc_hook=as_tuple)
_EMPTY_SEEN = len(_ENCODER.encode(Seen()))
_NO_PROVENANCE = Provenance()
_EMPTY_PROVENANCE = len(_ENCODER.encode(_NO_PROVENANCE))
_SHELL = "_shell_bytes"  # the cached encoded size of a state without its provenance
_DECODER = msgspec.json.Decoder(SessionState)
_DIGEST_ENCODER = msgspec.json.Encoder(order="sorted")


def encode_state(state: SessionState) -> bytes:
    """``state`` as JSON bytes; the same state always encodes to the same bytes."""
    return _ENCODER.encode(state)


def decode_state(data: bytes, *, limits: FlowLimits = DEFAULT_LIMITS) -> SessionState:
    """The state :func:`encode_state` wrote.  InputError naming the problem if ``data`` is
    not such a state or breaks the bounds of ``limits``."""
    try:
        state = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise InputError(f"session state: {exc}", code="input.session_state") from None
    problem = _state_problem(state, limits)
    if problem:
        raise InputError(f"session state: {problem}", code="input.session_state")
    return state


def _state_problem(state: SessionState, limits: FlowLimits) -> str | None:
    if len(state.labels) > limits.labels:
        return f"more than {limits.labels} labels - at `$.labels`"
    if len(state.recent) > limits.recent:
        return f"more than {limits.recent} recent calls - at `$.recent`"
    for field, counts, cap in (
        ("counters", state.counters, limits.counters),
        ("tool_calls", state.tool_calls, limits.tools),
    ):
        if len(counts) - (OTHER in counts) > cap:
            return f"more than {cap} names - at `$.{field}`"
    named = state.provenance.named
    if len(named) > limits.named_values:
        return f"more than {limits.named_values} named values - at `$.provenance.named`"
    if any(len(v) > MAX_NAMED_CHARS for v in named):
        return f"a named value longer than {MAX_NAMED_CHARS} characters - at `$.provenance.named`"
    for source in Source:
        seen = state.provenance.seen(source)
        where = f"`$.provenance.{source.value}_seen.parts`"
        if len(seen.parts) > limits.parts_per_source:
            return f"more than {limits.parts_per_source} parts - at {where}"
        if any(part.kind is PartKind.TRUNCATED for part in seen.parts):
            return f"a truncation marker is never a seen part - at {where}"
    return None


def call_digest(tool: str, args: dict[str, Any]) -> str:
    """The sha256 (hex) of ``[tool, args]`` as canonical JSON (keys sorted), so that the
    same call with its arguments in any order has the same digest."""
    try:
        encoded = _DIGEST_ENCODER.encode([tool, args])
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"call digest: {exc}", code="input.session.digest") from None
    return hashlib.sha256(encoded).hexdigest()

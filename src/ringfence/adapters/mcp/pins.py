"""Pinned tool surfaces: which version of each tool is approved, and what to do when it changes.

Rug-pull defence.  Every tool of every upstream server has a :class:`PinRecord` holding the
*approved* version (``pinned``) and, while it is quarantined, the *observed* version awaiting
review (``pending``).  :func:`reconcile` compares a fresh listing with the pins:

=====================  ======================================  =====================================
observed               ``mode="tofu"``                         ``mode="allowlist"``
=====================  ======================================  =====================================
unknown tool           pinned (trust on first use)             quarantined unless its digest is in
                                                               the allowlist
changed tool           quarantined                             quarantined
changed instructions   every tool of the server quarantined    same
tool gone              reported; the record is kept            same
=====================  ======================================  =====================================

A quarantined tool stays quarantined until :func:`approve` accepts the observed version, even if
the server changes it back: flipping a definition back and forth is itself worth a look.  A
tool's status is derived, never stored independently: quarantined while it has a pending
version or its server has pending instructions, pinned otherwise.

Pure: time comes in as an argument and every function returns a new :class:`PinSet`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from ringfence.adapters.mcp.surface import ServerSurface, ToolPin, instructions_digest
from ringfence.errors import ConfigError, InputError

__all__ = [
    "EventKind",
    "InstructionsPin",
    "Mode",
    "PinEvent",
    "PinRecord",
    "PinSet",
    "ServerPins",
    "Status",
    "approve",
    "approved_surface",
    "observed_surface",
    "quarantine",
    "reconcile",
]

Mode = Literal["tofu", "allowlist"]
MODES: tuple[Mode, ...] = ("tofu", "allowlist")


class Status(StrEnum):
    """Whether calls to a tool may go through (pinned) or are refused (quarantined)."""

    PINNED = "pinned"
    QUARANTINED = "quarantined"


class EventKind(StrEnum):
    """What :func:`reconcile` noticed; each event becomes an audit record at the gateway."""

    TOOL_PINNED = "tool.pinned"  # new tool trusted (first use, or allowlisted)
    TOOL_UNKNOWN = "tool.unknown"  # new tool quarantined (allowlist mode, digest not listed)
    TOOL_CHANGED = "tool.changed"  # observed definition differs from the last one seen
    TOOL_REMOVED = "tool.removed"
    TOOL_RETURNED = "tool.returned"
    INSTRUCTIONS_PINNED = "instructions.pinned"
    INSTRUCTIONS_UNKNOWN = "instructions.unknown"
    INSTRUCTIONS_CHANGED = "instructions.changed"


@dataclass(frozen=True)
class PinEvent:
    """One change :func:`reconcile` found; ``digest`` is the observed one, ``previous`` the last."""

    kind: EventKind
    server: str
    tool: str | None
    digest: str | None
    previous: str | None
    message: str


@dataclass(frozen=True)
class InstructionsPin:
    """One version of a server's instructions (text kept so a change can be diffed)."""

    digest: str
    text: str | None

    @classmethod
    def of(cls, text: str | None) -> InstructionsPin:
        """The pin for ``text``."""
        return cls(instructions_digest(text), text)


@dataclass(frozen=True)
class PinRecord:
    """The pin state of one tool; at least one of ``pinned`` and ``pending`` is set."""

    pinned: ToolPin | None  # approved version; None until approved (allowlist mode)
    pending: ToolPin | None  # observed version awaiting approval; None when nothing is pending
    first_seen: datetime
    approved_at: datetime | None = None
    last_changed: datetime | None = None
    removed_at: datetime | None = None  # set while the tool is missing from the listing
    reason: str | None = None  # why it is quarantined, for people

    def __post_init__(self) -> None:
        if self.pinned is None and self.pending is None:
            raise InputError("a pin record needs a pinned or a pending version", code="input.pin")

    @property
    def observed(self) -> ToolPin:
        """The version last seen: the pending one if any, else the approved one."""
        seen = self.pending or self.pinned
        assert seen is not None  # __post_init__ guarantees it
        return seen


@dataclass(frozen=True)
class ServerPins:
    """Pins for one upstream server."""

    instructions: InstructionsPin | None  # approved; None until approved (allowlist mode)
    pending_instructions: InstructionsPin | None = None
    tools: Mapping[str, PinRecord] = field(default_factory=dict)

    def status(self, tool: str) -> tuple[Status, str | None]:
        """(status, reason) of ``tool``; a tool with no record is quarantined."""
        record = self.tools.get(tool)
        if record is None:
            return Status.QUARANTINED, "tool is not pinned"
        if self.pending_instructions is not None:
            what = "changed" if self.instructions is not None else "are not approved"
            return Status.QUARANTINED, f"the server's instructions {what}"
        if record.pending is not None:
            return Status.QUARANTINED, record.reason or "awaiting approval"
        return Status.PINNED, None


@dataclass(frozen=True)
class PinSet:
    """Pins for every upstream server, by server name."""

    servers: Mapping[str, ServerPins] = field(default_factory=dict)

    def refusal(self, server: str, tool: str) -> str | None:
        """Why a call to ``tool`` on ``server`` must be refused now, or None if it may proceed."""
        pins = self.servers.get(server)
        if pins is None:
            return "server is not pinned"
        status, reason = pins.status(tool)
        if status is Status.QUARANTINED:
            return f"tool is quarantined: {reason}"
        record = pins.tools[tool]
        if record.removed_at is not None:
            return "tool is not in the server's current listing"
        return None


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise InputError("time must be timezone-aware", code="input.time")
    return now.astimezone(UTC)


def _new_server(
    observed: ServerSurface, mode: Mode, allow: Collection[str]
) -> tuple[ServerPins, PinEvent]:
    pin = InstructionsPin.of(observed.instructions)
    # No instructions means nothing reaches the model, so there is nothing to allowlist.
    trusted = mode == "tofu" or not observed.instructions or pin.digest in allow
    kind = EventKind.INSTRUCTIONS_PINNED if trusted else EventKind.INSTRUCTIONS_UNKNOWN
    message = "instructions pinned" if trusted else "instructions not in the allowlist"
    event = PinEvent(kind, observed.name, None, pin.digest, None, message)
    if trusted:
        return ServerPins(pin), event
    return ServerPins(None, pin), event


def _observe_instructions(
    pins: ServerPins, observed: ServerSurface
) -> tuple[ServerPins, list[PinEvent]]:
    pin = InstructionsPin.of(observed.instructions)
    last = pins.pending_instructions or pins.instructions
    if last is not None and last.digest == pin.digest:
        return pins, []
    event = PinEvent(
        EventKind.INSTRUCTIONS_CHANGED,
        observed.name,
        None,
        pin.digest,
        last.digest if last else None,
        "server instructions changed; every tool of the server is quarantined",
    )
    return replace(pins, pending_instructions=pin), [event]


def _new_tool(
    server: str, pin: ToolPin, mode: Mode, allow: Collection[str], now: datetime
) -> tuple[PinRecord, PinEvent]:
    if mode == "tofu" or pin.digest in allow:
        how = "trust on first use" if mode == "tofu" else "digest is in the allowlist"
        record = PinRecord(pin, None, now, approved_at=now)
        return record, PinEvent(EventKind.TOOL_PINNED, server, pin.name, pin.digest, None, how)
    reason = "new tool; its digest is not in the allowlist"
    record = PinRecord(None, pin, now, reason=reason)
    return record, PinEvent(EventKind.TOOL_UNKNOWN, server, pin.name, pin.digest, None, reason)


def _observe_tool(
    server: str, record: PinRecord, pin: ToolPin, now: datetime
) -> tuple[PinRecord, list[PinEvent]]:
    events = []
    if record.removed_at is not None:
        record = replace(record, removed_at=None)
        events.append(
            PinEvent(EventKind.TOOL_RETURNED, server, pin.name, pin.digest, None, "tool is back")
        )
    last = record.observed
    if last.digest == pin.digest:
        return record, events
    approved = record.pinned.digest if record.pinned else "nothing approved"
    if record.pinned is not None and record.pinned.digest == pin.digest:
        reason = "definition changed and changed back; approve to release it"
    else:
        reason = f"definition changed since approval ({approved} -> {pin.digest})"
    record = replace(record, pending=pin, last_changed=now, reason=reason)
    events.append(
        PinEvent(EventKind.TOOL_CHANGED, server, pin.name, pin.digest, last.digest, reason)
    )
    return record, events


def reconcile(
    pins: PinSet,
    observed: ServerSurface,
    mode: Mode,
    now: datetime,
    allowlist: Collection[str] = frozenset(),
) -> tuple[PinSet, tuple[PinEvent, ...]]:
    """New pins after seeing ``observed``, and the events to record (instructions first).

    ``allowlist`` holds digests (tool or instructions) an operator has approved in advance; it
    only decides what happens to things never seen before.  ConfigError for an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(
            f"pin mode must be 'tofu' or 'allowlist', not {mode!r}", code="config.pins"
        )
    now = _utc(now)
    server = pins.servers.get(observed.name)
    events: list[PinEvent] = []
    if server is None:
        server, event = _new_server(observed, mode, allowlist)
        events.append(event)
    else:
        server, found = _observe_instructions(server, observed)
        events += found
    tools = dict(server.tools)
    for name, pin in observed.tools.items():
        record = tools.get(name)
        if record is None:
            tools[name], event = _new_tool(observed.name, pin, mode, allowlist, now)
            events.append(event)
        else:
            tools[name], found = _observe_tool(observed.name, record, pin, now)
            events += found
    for name, record in server.tools.items():
        if name not in observed.tools and record.removed_at is None:
            tools[name] = replace(record, removed_at=now)
            digest = record.observed.digest
            events.append(
                PinEvent(EventKind.TOOL_REMOVED, observed.name, name, None, digest, "tool is gone")
            )
    server = replace(server, tools=dict(sorted(tools.items())))
    servers = dict(pins.servers)
    servers[observed.name] = server
    return PinSet(dict(sorted(servers.items()))), tuple(events)


def _server(pins: PinSet, server: str) -> ServerPins:
    found = pins.servers.get(server)
    if found is None:
        raise InputError(f"no pins for server {server!r}", code="input.pin.unknown")
    return found


def _check_digest(what: str, given: str | None, observed: str) -> None:
    if given is not None and given != observed:
        raise InputError(
            f"{what}: asked to approve {given} but the observed version is {observed}; "
            "review the diff again",
            code="input.pin.digest_mismatch",
        )


def approve(
    pins: PinSet, server: str, tool: str | None, digest: str | None, now: datetime
) -> PinSet:
    """Accept the observed (quarantined) version of ``tool``, or the server's instructions.

    With ``tool=None`` the server's pending instructions are approved; tools with changes of
    their own stay quarantined until approved one by one.  If ``digest`` is given it must be
    the observed one, so what is approved is what was reviewed (InputError otherwise).
    """
    now = _utc(now)
    current = _server(pins, server)
    if tool is None:
        pending = current.pending_instructions
        if pending is None:
            raise InputError(
                f"server {server!r} has no instructions awaiting approval",
                code="input.pin.nothing_pending",
            )
        _check_digest(f"instructions of {server!r}", digest, pending.digest)
        updated = replace(current, instructions=pending, pending_instructions=None)
    else:
        record = current.tools.get(tool)
        if record is None:
            raise InputError(f"server {server!r} has no tool {tool!r}", code="input.pin.unknown")
        if record.pending is None:
            raise InputError(
                f"tool {tool!r} of {server!r} is not awaiting approval",
                code="input.pin.nothing_pending",
            )
        _check_digest(f"tool {tool!r} of {server!r}", digest, record.pending.digest)
        fresh = replace(record, pinned=record.pending, pending=None, approved_at=now, reason=None)
        updated = replace(current, tools={**current.tools, tool: fresh})
    return PinSet({**pins.servers, server: updated})


def quarantine(pins: PinSet, server: str, tool: str, reason: str) -> PinSet:
    """Quarantine ``tool`` (e.g. for scan findings) until its observed version is approved."""
    current = _server(pins, server)
    record = current.tools.get(tool)
    if record is None:
        raise InputError(f"server {server!r} has no tool {tool!r}", code="input.pin.unknown")
    held = replace(record, pending=record.observed, reason=reason)
    return PinSet({**pins.servers, server: replace(current, tools={**current.tools, tool: held})})


def approved_surface(pins: PinSet, server: str) -> ServerSurface:
    """The approved versions of ``server``'s tools and instructions (the left side of a diff)."""
    current = _server(pins, server)
    tools = {n: r.pinned for n, r in current.tools.items() if r.pinned is not None}
    text = current.instructions.text if current.instructions else None
    return ServerSurface(server, text, tools)


def observed_surface(pins: PinSet, server: str) -> ServerSurface:
    """The versions last seen of ``server``'s listed tools (the right side of a diff)."""
    current = _server(pins, server)
    tools = {n: r.observed for n, r in current.tools.items() if r.removed_at is None}
    seen = current.pending_instructions or current.instructions
    return ServerSurface(server, seen.text if seen else None, tools)

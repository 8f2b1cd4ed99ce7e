"""The ``control`` audit record: a kill switch turned on or off.

Written by whoever made the change when it can (the Python API, ``ringfence kill`` when no
other process holds the audit log) and by every process using the same controls store when
its Controls first sees a change made elsewhere (``observed: true``): each enforcement
point's log shows when the kill reached it.  Fields, in code-point order like the other
record structs (see :mod:`ringfence.core.audit.record`):

``at``        when the kill or unkill was made (ns since the epoch); ``ts`` is when this
              record was written
``by``        who made it; ``reason`` why
``kill_id``   the kill's id (an unkill names the kill it lifted)
``observed``  false: this process made the change; true: it saw a change made elsewhere
``op``        ``kill`` or ``unkill``
``scope``     ``agent``, ``tool``, ``session``, ``user`` or ``all``; ``value`` the name or
              glob (``*`` for ``all``)
"""

from __future__ import annotations

import msgspec

from ringfence.core.audit.record import SCHEMA_VERSION
from ringfence.core.killswitch import KillEvent

__all__ = ["ControlRecord", "control_record"]


class ControlRecord(msgspec.Struct, gc=False):
    """A kill or unkill (fields in code-point order)."""

    at: int
    by: str
    kill_id: str
    observed: bool
    op: str
    prev: str
    reason: str
    scope: str
    seq: int
    ts: int
    type: str
    v: int
    value: str


def control_record(event: KillEvent, *, time_ns: int, observed: bool) -> ControlRecord:
    """The record of one kill-history entry (``seq``/``prev`` are added by the writer)."""
    return ControlRecord(
        event.at_ns,
        event.by,
        event.kill_id,
        observed,
        event.op,
        "",
        event.reason,
        event.scope.kind,
        -1,
        time_ns,
        "control",
        SCHEMA_VERSION,
        event.scope.value,
    )

"""Helpers shared by the runtime tests: a fixed clock, a record reader, approval stores."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ringfence.core.audit.encoding import decode
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard import Guard
from ringfence.stores.approvals import SQLiteApprovalStore
from ringfence.stores.approvals_memory import MemoryApprovalStore

T0 = 1_700_000_000_000_000_000

GuardFactory = Callable[..., Guard]


class FixedClock:
    """A clock that starts at ``start`` and advances by one microsecond per reading."""

    def __init__(self, start: int = T0) -> None:
        self._next = itertools.count(start, 1_000)

    def __call__(self) -> int:
        return next(self._next)


def records_of(log: AuditLog, type_: str | None = None) -> list[dict[str, Any]]:
    """The decoded records of ``log`` (only those of ``type_`` when given)."""
    out = [decode(data) for _, data in log.store.records()]
    return [r for r in out if type_ is None or r["type"] == type_]


def approval_store(kind: str, folder: Path, **options: Any) -> Any:
    """An approvals store of ``kind`` ("memory" or "sqlite", in ``folder``)."""
    if kind == "memory":
        return MemoryApprovalStore(**options)
    return SQLiteApprovalStore(folder / "approvals.sqlite", poll_s=0.005, **options)

"""The ports the runtime depends on.  Stores implement them; tests use the in-memory ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from ringfence.core.action import Action
from ringfence.core.audit.checkpoint import Checkpoint
from ringfence.core.decision import Decision
from ringfence.core.flow import SessionState

__all__ = ["ApprovalAnswer", "Approver", "AuditStore", "Clock", "SessionStore"]


@runtime_checkable
class AuditStore(Protocol):
    """Durable, append-only storage of audit records and checkpoints.

    ``append`` must not return before the record would survive the process being killed.
    Only one writer may hold a store open for appending at a time.
    """

    @property
    def log_id(self) -> str: ...

    def append(self, seq: int, data: bytes) -> None: ...

    def append_checkpoint(self, checkpoint: Checkpoint, state: bytes) -> None: ...

    def records(self, start: int = 0) -> Iterator[tuple[int, bytes]]: ...

    def checkpoints(self) -> list[Checkpoint]: ...

    def resume_point(self) -> tuple[int, bytes] | None:
        """(size, compact-range state) of the last checkpoint, if any."""
        ...

    def close(self) -> None: ...


class Clock(Protocol):
    """Wall-clock time in nanoseconds since the epoch."""

    def __call__(self) -> int: ...


class ApprovalAnswer:
    """An approver's answer to a require_approval decision."""

    __slots__ = ("approved", "approver", "note")

    def __init__(self, approved: bool, approver: str, note: str = "") -> None:
        self.approved = approved
        self.approver = approver
        self.note = note

    def __repr__(self) -> str:
        return f"ApprovalAnswer(approved={self.approved}, approver={self.approver!r})"


class Approver(Protocol):
    """Answers require_approval decisions; may block until a human answers."""

    def __call__(self, action: Action, decision: Decision) -> ApprovalAnswer: ...


class SessionStore(Protocol):
    """Where session states live (labels, counters, provenance); see runtime/sessions.py.

    ``update`` must be atomic for every user of the store (threads, and processes for a shared
    store): a lost update could lose a label such as ``untrusted``.
    """

    def load(self, session: str) -> SessionState | None:
        """The state of ``session``, or None."""
        ...

    def update(self, session: str, change: Callable[[SessionState], SessionState]) -> SessionState:
        """Replace the state by ``change(state)`` (an empty state if none); the new state."""
        ...

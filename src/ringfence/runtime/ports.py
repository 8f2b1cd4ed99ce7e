"""The ports the runtime depends on.  Stores implement them; tests use the in-memory ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ringfence.core.action import Action
from ringfence.core.approvals import (
    ApprovalLimits,
    PendingRequest,
    Problem,
    Receipt,
    Scope,
    Status,
    Submission,
)
from ringfence.core.audit.checkpoint import Checkpoint
from ringfence.core.decision import Decision
from ringfence.core.flow import SessionState
from ringfence.core.identity.records import AgentRecord, KeyRecord, RegistryState, Revocation
from ringfence.core.killswitch import Kill, KillEvent, KillScope

if TYPE_CHECKING:
    from ringfence.runtime.sandbox.profile import SandboxProfile, SandboxResult, Tier

__all__ = [
    "ApprovalAnswer",
    "ApprovalStore",
    "Approver",
    "AuditStore",
    "Cell",
    "Clock",
    "ControlStore",
    "IdentityRegistry",
    "KillSwitchStore",
    "LimitStore",
    "Sandbox",
    "SessionStore",
]


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


class ApprovalStore(Protocol):
    """Approval requests and the receipts that answer them; see runtime/approvals.py.

    Every method that changes something is atomic for every user of the store (threads, and
    processes for a shared store): two reviewers answering at once, or two callers redeeming
    one receipt at once, must see exactly one of them succeed.
    """

    def submit(
        self, request: PendingRequest, limits: ApprovalLimits | None, now_ns: int
    ) -> Submission:
        """Join an identical pending request (same ``group``), or check the caps (none when
        ``limits`` is None) and store ``request``; in one transaction."""
        ...

    def get(self, request_id: str) -> PendingRequest | None:
        """The request, or None."""
        ...

    def latest(self, group: str) -> PendingRequest | None:
        """The newest request of ``group``, or None."""
        ...

    def requests(self, *, status: Status | None, limit: int, now_ns: int) -> list[PendingRequest]:
        """Requests, newest first (pending past their deadline count as expired)."""
        ...

    def decide(
        self,
        request_id: str,
        status: Status,
        *,
        by: str,
        note: str,
        now_ns: int,
        receipt: Receipt | None = None,
    ) -> PendingRequest | Problem:
        """Answer a pending request (approved, with its receipt; denied; expired; cancelled)."""
        ...

    def plans(self, agent: str, session: str | None, now_ns: int) -> list[PendingRequest]:
        """Approved plan requests of ``agent`` in ``session`` whose receipts have not expired."""
        ...

    def redeem(
        self, receipt: Receipt, steps: tuple[int, ...], *, decision_id: str, now_ns: int
    ) -> int | Problem:
        """Use the first unused step of ``steps`` of a stored, unrevoked ``receipt`` (it must
        be the very receipt stored, signature included); the step used, or why none was."""
        ...

    def cancel(self, scope: Scope, *, by: str, note: str, now_ns: int) -> list[str]:
        """Cancel pending and revoke approved requests in ``scope``; their ids."""
        ...

    def version(self) -> int:
        """A number that changes whenever anything in the store may have changed."""
        ...

    def wait(self, since: int, timeout_s: float) -> int:
        """Block until ``version()`` differs from ``since`` or ``timeout_s`` passes; the version."""
        ...


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


class IdentityRegistry(Protocol):
    """Agents, keys and revocations of one trust domain; see runtime/identity.py.

    ``generation`` is read on every credential check, so it must be cheap, and it must change
    for every user of the registry (threads, and processes for a shared registry) once a
    change has committed: that is how a revocation takes effect on the next check.
    """

    def generation(self) -> int:
        """A number that changes whenever anything in the registry changes."""
        ...

    def state(self) -> RegistryState:
        """A consistent snapshot of everything but private keys."""
        ...

    def initialise(self, trust_domain: str) -> str:
        """Bind an empty registry to ``trust_domain``; the trust domain it is bound to."""
        ...

    def add_agent(self, agent: AgentRecord, key: KeyRecord, seed: bytes) -> None:
        """Register an agent and its key pair (IdentityError ``identity.exists`` if known)."""
        ...

    def add_key(self, key: KeyRecord, seed: bytes, *, retire: str | None, at_ns: int) -> None:
        """Add a key (of the ring, or a new key of an agent, which becomes its current one),
        retiring key ``retire`` at ``at_ns`` in the same transaction."""
        ...

    def revoke(self, revocation: Revocation) -> None:
        """Record a revocation (revoking twice keeps the first)."""
        ...

    def private_key(self, kid: str) -> bytes:
        """The 32-byte seed of key ``kid`` (IdentityError ``identity.no_key`` if not held)."""
        ...


class KillSwitchStore(Protocol):
    """Active kills and their history; see runtime/controls.py.

    ``generation`` is read on every decision, so it must be cheap, and it must change for
    every user of the store (threads, and processes for a shared store) once a kill or unkill
    has committed: that is how a kill takes effect on the next check everywhere.
    """

    def generation(self) -> int:
        """A number that changes whenever a kill, an unkill or a flagged cell changes."""
        ...

    def kills(self) -> tuple[Kill, ...]:
        """The active kills."""
        ...

    def add_kill(self, kill: Kill) -> KillEvent | None:
        """Make ``kill`` active; None (and nothing changes) if its scope is already killed."""
        ...

    def remove_kill(
        self, scope: KillScope, *, by: str, reason: str, at_ns: int
    ) -> KillEvent | None:
        """Lift the kill of exactly ``scope``; None if there is none."""
        ...

    def events(self, after: int = 0) -> tuple[KillEvent, ...]:
        """Kill history entries with ``seq > after``, oldest first."""
        ...


class Cell(NamedTuple):
    """What a :meth:`LimitStore.update` change returns: the new bytes (None deletes the
    cell), whether the cell is *flagged* (a budget used up, a breaker not closed) and when
    the store may forget it (ns since the epoch; None: keep)."""

    data: bytes | None
    flagged: bool = False
    expires_ns: int | None = None


class LimitStore(Protocol):
    """Opaque state cells of rate limits, budgets and breakers; see runtime/controls.py.

    ``update`` must be atomic for every user of the store (threads, and processes for a
    shared store): two processes taking tokens from one bucket must never both get the
    last one.  ``generation`` must change whenever a cell becomes or stops being flagged or
    a flagged cell changes, so that every process re-reads :meth:`flagged` before its next
    decision.
    """

    def generation(self) -> int:
        """See :meth:`KillSwitchStore.generation` (one number for both)."""
        ...

    def update(self, key: str, change: Callable[[bytes | None], Cell]) -> None:
        """Replace the cell ``key`` by ``change(current bytes or None)``, atomically."""
        ...

    def flagged(self) -> dict[str, bytes]:
        """Every flagged cell."""
        ...


class ControlStore(KillSwitchStore, LimitStore, Protocol):
    """One store for both: the kill switch and the limits share one generation number."""


class Sandbox(Protocol):
    """Runs commands and code inside a sandbox profile; see runtime/sandbox (LocalSandbox,
    and ringfence.testing.sandbox.FakeSandbox for tests)."""

    def tier_for(self, profile: SandboxProfile) -> Tier:
        """The tier ``profile`` would run in here, or SandboxUnavailable (fail closed)."""
        ...

    def run(
        self,
        profile: SandboxProfile,
        *,
        argv: Sequence[str] | None = None,
        code: str | None = None,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Run ``argv`` or Python ``code`` in ``profile`` (SandboxError if it cannot start)."""
        ...

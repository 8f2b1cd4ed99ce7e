"""In-memory stores for tests and examples: same contracts, nothing durable."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

from ringfence.core.audit.checkpoint import Checkpoint
from ringfence.errors import AuditError

__all__ = ["MemoryAuditStore"]


class MemoryAuditStore:
    """Audit records in a list.  ``fail_writes = True`` makes every append fail (fault tests)."""

    def __init__(self, log_id: str | None = None) -> None:
        self._log_id = log_id or str(uuid.uuid4())
        self.rows: list[tuple[int, bytes]] = []
        self.cps: list[tuple[Checkpoint, bytes]] = []
        self.fail_writes = False
        self.closed = False
        self._lock = threading.Lock()

    @property
    def log_id(self) -> str:
        """This log's id."""
        return self._log_id

    def append(self, seq: int, data: bytes) -> None:
        """Store one record."""
        with self._lock:
            if self.fail_writes or self.closed:
                raise AuditError("memory audit store refuses writes")
            self.rows.append((seq, data))

    def append_checkpoint(self, checkpoint: Checkpoint, state: bytes) -> None:
        """Store one checkpoint."""
        with self._lock:
            if self.fail_writes or self.closed:
                raise AuditError("memory audit store refuses writes")
            self.cps.append((checkpoint, state))

    def records(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """Stored records from ``start`` on."""
        return iter([r for r in list(self.rows) if r[0] >= start])

    def checkpoints(self) -> list[Checkpoint]:
        """Stored checkpoints, oldest first."""
        return [c for c, _ in self.cps]

    def resume_point(self) -> tuple[int, bytes] | None:
        """(size, state) of the latest checkpoint."""
        if not self.cps:
            return None
        cp, state = max(self.cps, key=lambda p: p[0].size)
        return cp.size, state

    def close(self) -> None:
        """Refuse further writes."""
        self.closed = True

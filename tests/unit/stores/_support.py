"""Helpers for the store tests: records, simulated kills, raw journal access."""

from __future__ import annotations

import os
from pathlib import Path

from nacl.signing import SigningKey

from ringfence.core.audit.checkpoint import Checkpoint, sign_checkpoint
from ringfence.core.audit.encoding import canonical
from ringfence.core.audit.merkle import CompactRange, leaf_hash
from ringfence.runtime.audit import AuditLog
from ringfence.stores.journal import RECORD, encode_frame, journal_files, read_frames
from ringfence.stores.sqlite import SQLiteAuditStore


def chain(n: int, start: int = 0, prev: bytes = b"") -> list[tuple[int, bytes]]:
    """``n`` hash-linked canonical records numbered from ``start``."""
    out = []
    for seq in range(start, start + n):
        data = canonical({"type": "test", "n": seq, "seq": seq, "prev": prev.hex()})
        out.append((seq, data))
        prev = leaf_hash(data)
    return out


def checkpoint_for(
    rows: list[tuple[int, bytes]], key: SigningKey, log_id: str, time_ns: int = 1
) -> tuple[Checkpoint, bytes]:
    """A signed checkpoint over ``rows`` (all records from 0) and the tree state."""
    tree = CompactRange()
    for _, data in rows:
        tree.append(leaf_hash(data))
    head = leaf_hash(rows[-1][1]) if rows else b""
    cp = sign_checkpoint(
        key, log_id=log_id, size=tree.size, root=tree.root(), head=head, time_ns=time_ns
    )
    return cp, tree.state()


def abandon(store: SQLiteAuditStore) -> None:
    """Leave the store's files exactly as SIGKILL would: no flush, no journal cleanup.

    The flusher thread is stopped (a killed process has none), file descriptors and
    connections are closed without committing anything, and the lock is released.
    """
    store._closed = True
    store._wake.set()
    store._flusher.join()
    assert store._journal is not None
    store._journal.abandon()
    store._reader.close()
    store._db.close()
    os.close(store._lock_fd)


def abandon_log(log: AuditLog) -> None:
    """Kill an AuditLog over a SQLite store: no final checkpoint, nothing flushed."""
    log._timer_stop.set()
    log._timer.join()
    assert isinstance(log.store, SQLiteAuditStore)
    abandon(log.store)


def used_bytes(journal: Path) -> bytearray:
    """A journal file's bytes up to the end of its last frame (a live or abandoned journal is
    preallocated: zeros follow)."""
    raw = journal.read_bytes()
    end = 0
    for _, _, payload in read_frames(journal):
        end += len(encode_frame(RECORD, 0, payload))
    assert not any(raw[end:]), "only zeros follow the frames"
    return bytearray(raw[:end])


def journals(directory: Path) -> list[Path]:
    """The journal files in ``directory``, oldest first."""
    return [p for _, p in journal_files(directory)]

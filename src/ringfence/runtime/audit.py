"""The audit log writer: numbers, links, hashes and seals records, then hands them to a store.

Each record gets ``seq`` and ``prev`` (the previous leaf hash) and becomes a leaf of the
Merkle tree.  A signed checkpoint is written every ``checkpoint_every`` records, when
``checkpoint_seconds`` have passed since the last one, and on :meth:`AuditLog.close`.
``append`` returns only when the store holds the record durably; if the store fails it
raises :class:`~ringfence.errors.AuditError` and the caller must not run the action.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nacl.signing import SigningKey, VerifyKey

from ringfence.core.audit.checkpoint import key_id, sign_checkpoint
from ringfence.core.audit.encoding import canonical, encode_record, encode_unchecked
from ringfence.core.audit.merkle import CompactRange, leaf_hash
from ringfence.core.audit.record import Record
from ringfence.core.audit.verify import Report, verify_log
from ringfence.errors import AuditError, InputError
from ringfence.runtime.ports import AuditStore, Clock

__all__ = ["AuditLog"]

log = logging.getLogger(__name__)
_sha256 = hashlib.sha256
_LEAF_PREFIX = hashlib.sha256(b"\x00")


class AuditLog:
    """Append-only, hash-linked, Merkle-sealed audit log over an :class:`AuditStore`."""

    def __init__(
        self,
        store: AuditStore,
        signing_key: SigningKey,
        *,
        clock: Clock = time.time_ns,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 1.0,
    ) -> None:
        self.store = store
        # A store that checks its journal frames by the record's leaf hash takes it too.
        self._append_hashed: Any = getattr(store, "append_hashed", None)
        self._key = signing_key
        self._clock = clock
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self._lock = threading.Lock()
        self._closed = False
        self._tree, self._head, self._sealed = self._resume()
        self._size = self._tree.size
        self._unfolded: list[bytes] = []
        self._last_seal = time.monotonic()
        if self._sealed < self._size:
            self.checkpoint()  # seal records left unsealed by an unclean stop
        # Applied to every record before it is numbered, hashed and stored: secrets never
        # reach the log (ringfence.runtime.broker.install_audit_redaction sets it).
        self.redactor: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._timer_stop = threading.Event()
        self._timer = threading.Thread(
            target=self._seal_loop, name="ringfence-audit-seal", daemon=True
        )
        self._timer.start()

    def _resume(self) -> tuple[CompactRange, bytes, int]:
        point = self.store.resume_point()
        tree = CompactRange() if point is None else CompactRange.from_state(*point)
        head = b""
        if point is not None and point[0] > 0:
            last = next(iter(self.store.records(point[0] - 1)), None)
            if last is None or last[0] != point[0] - 1:
                # Appending here would chain new records to nothing, over a hole.
                raise AuditError(
                    f"audit log is missing record {point[0] - 1}, which a checkpoint covers; "
                    "run 'ringfence audit verify'",
                    code="audit.corrupt",
                )
            head = leaf_hash(last[1])
        for seq, data in self.store.records(tree.size):
            if seq != tree.size:
                raise AuditError(
                    f"audit log has a gap at record {tree.size}; run 'ringfence audit verify'",
                    code="audit.corrupt",
                )
            head = leaf_hash(data)
            tree.append(head)
        return tree, head, 0 if point is None else point[0]

    @property
    def size(self) -> int:
        """How many records the log holds."""
        return self._size

    @property
    def public_keys(self) -> dict[str, VerifyKey]:
        """``{key id: public key}`` of the checkpoint signing key."""
        vk = self._key.verify_key
        return {key_id(bytes(vk)): vk}

    def append(self, record: Record | dict[str, Any], *, checked: bool = True) -> int:
        """Add ``record`` (without seq/prev); return its seq once it is durable.

        ``checked=False`` skips the walk that rejects NaN, infinities and out-of-range integers;
        only for records whose numbers were already checked (the Guard's: arguments passed the
        input gate, the rest it makes itself).  Invalid UTF-8 is refused either way.
        """
        redactor = self.redactor
        if redactor is not None:
            try:
                plain = record if type(record) is dict else msgspec.to_builtins(record)
                record, checked = redactor(plain), True
            except Exception as exc:  # an unredacted record must not be written instead
                raise AuditError(f"record could not be redacted: {type(exc).__name__}") from exc
        with self._lock:
            if self._closed:
                raise AuditError("audit log is closed")
            seq = self._size
            is_dict = type(record) is dict
            if is_dict:
                record["seq"] = seq  # type: ignore[index]
                record["prev"] = self._head.hex()  # type: ignore[index]
            else:
                record.seq = seq  # type: ignore[union-attr]
                record.prev = self._head.hex()  # type: ignore[union-attr]
            try:
                if checked:
                    data = canonical(record if is_dict else msgspec.to_builtins(record))  # type: ignore[arg-type]
                else:
                    data = encode_unchecked(record) if is_dict else encode_record(record)
            except InputError as exc:
                raise AuditError(f"record cannot be encoded: {exc.message}") from exc
            except (TypeError, ValueError, OverflowError) as exc:
                raise AuditError(f"record cannot be encoded: {exc}") from exc
            h = _LEAF_PREFIX.copy()  # RFC 9162 leaf hash, without copying the record
            h.update(data)
            leaf = h.digest()
            # Durable before anything below: append raises AuditError, and nothing changes.
            if self._append_hashed is not None:
                self._append_hashed(seq, data, leaf)
            else:
                self.store.append(seq, data)
            # Folded into the tree in batches (at seal time): same hashes, off the hot path.
            self._unfolded.append(leaf)
            self._size = seq + 1
            self._head = leaf
            if self._size - self._sealed >= self._every:
                self._checkpoint_locked()
            return seq

    def checkpoint(self) -> None:
        """Sign and store a checkpoint of the log as it is now."""
        with self._lock:
            self._checkpoint_locked()

    def _fold(self) -> CompactRange:
        append = self._tree.append
        for leaf in self._unfolded:
            append(leaf)
        self._unfolded.clear()
        return self._tree

    def _checkpoint_locked(self) -> None:
        self._fold()
        cp = sign_checkpoint(
            self._key,
            log_id=self.store.log_id,
            size=self._tree.size,
            root=self._tree.root(),
            head=self._head,
            time_ns=self._clock(),
        )
        self.store.append_checkpoint(cp, self._tree.state())
        self._sealed = self._tree.size
        self._last_seal = time.monotonic()

    def _seal_loop(self) -> None:
        while not self._timer_stop.wait(self._seconds / 2):
            with self._lock:
                due = time.monotonic() - self._last_seal >= self._seconds
                if self._closed or not due or self._sealed == self._size:
                    continue
                try:
                    self._checkpoint_locked()
                except AuditError:
                    log.exception("audit log: periodic checkpoint failed")

    def verify(self) -> Report:
        """Verify everything stored so far with this log's own key."""
        with self._lock:
            return verify_log(
                self.store.records(),
                self.store.checkpoints(),
                self.public_keys,
                log_id=self.store.log_id,
            )

    def close(self) -> None:
        """Write a final checkpoint and close the store.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._timer_stop.set()
            try:
                if self._sealed != self._size or self._size == 0:
                    self._checkpoint_locked()
            finally:
                self._closed = True
                self.store.close()
        self._timer.join(timeout=5)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

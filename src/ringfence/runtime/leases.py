"""Token leases: a process's local share of shared token buckets.

Taking a token from a bucket in the shared store is a write transaction (~20 µs with
SQLite).  Instead a process takes a *lease* — a batch of tokens
(:func:`ringfence.core.limits.lease`: a sixteenth of what the bucket holds, at least 1, at
most 4096) — and spends it locally without a lock, going back to the store only when the
lease is spent or ``lease_ns`` old.  An old lease's unspent tokens go back to the bucket
with the next lease.  A bucket found empty is remembered as empty until its next token is
due or ``lease_ns`` passes, so a caller over its
limit is refused without a store round trip.

Tokens are spent only after they left the shared bucket, so no interleaving of threads and
processes spends more than the bucket handed out.  The price is fairness: tokens leased by
one process are not available to another until spent or returned (a bucket with fewer than
16 tokens left leases one at a time, so near the limit every call goes to the store).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator

import msgspec

from ringfence.core.limits import (
    Bucket,
    BucketSpec,
    full_at_ns,
    lease,
    next_token_ns,
    put_back,
)
from ringfence.runtime.ports import Cell, LimitStore

__all__ = ["LEASE_NS", "Leases"]

log = logging.getLogger(__name__)

LEASE_NS = 100_000_000  # 100 ms
MAX_LEASES = 10_000
_encode = msgspec.msgpack.Encoder().encode
_decode_bucket = msgspec.msgpack.Decoder(Bucket).decode


class Lease:
    """Tokens this process holds from one bucket, until ``until`` (ns since the epoch).

    ``next(lease.tokens, 0)`` takes one (1) or finds none (0): an ``itertools.repeat``
    iterator, so taking is one atomic C call that needs no lock and the lease is a few bytes
    whatever its size.  Tokens put back (a call another limit refused) wait in ``back``.
    """

    __slots__ = ("back", "dry", "spec", "tokens", "until")

    def __init__(self, granted: int, until: int, spec: BucketSpec, dry: bool = False) -> None:
        self.tokens: Iterator[int] = itertools.repeat(1, granted)
        self.back: list[int] = []
        self.until = until
        self.spec = spec
        self.dry = dry  # the bucket had nothing: refuse without the store until `until`

    def put_back(self) -> None:
        """Return one token taken from this lease."""
        self.back.append(1)

    def take_back(self) -> bool:
        """Take a token that was put back, if there is one."""
        try:
            return bool(self.back.pop())
        except IndexError:
            return False

    def drain(self) -> int:
        """Take every token left (each exactly once, even against concurrent spenders)."""
        n = sum(self.tokens)
        while self.take_back():
            n += 1
        return n


class Leases:
    """This process's leases on the buckets of one :class:`LimitStore`.

    The caller spends from ``held[key]`` directly (``next(lease.tokens, 0)`` while
    ``now < until``) and calls :meth:`take` when that finds none.
    """

    def __init__(self, store: LimitStore, *, lease_ns: int = LEASE_NS) -> None:
        self._store = store
        self._lease_ns = lease_ns
        self._lock = threading.Lock()
        self.held: dict[str, Lease] = {}

    def take(
        self, key: str, spec: BucketSpec, now_ns: int, expires_ns: int | None = None
    ) -> Lease | None:
        """Take one token of bucket ``key``, renewing the lease if needed: the lease it came
        from (to :meth:`Lease.put_back` it), or None if the bucket is empty.  The store may
        forget the bucket at ``expires_ns`` (default: once it is full again)."""
        with self._lock:
            old = self.held.get(key)
            if old is not None and now_ns < old.until:
                if old.dry:
                    return None
                if next(old.tokens, 0) or old.take_back():
                    return old
            fresh = self._renew(key, spec, old, now_ns, expires_ns)
            if fresh.dry or not next(fresh.tokens, 0):
                return None
            return fresh

    def _renew(
        self, key: str, spec: BucketSpec, old: Lease | None, now_ns: int, expires_ns: int | None
    ) -> Lease:
        """Give back what ``old`` has left and lease anew from the store (lock held)."""
        give_back = 0 if old is None else old.drain()
        got: list[tuple[Bucket, int]] = []

        def change(data: bytes | None) -> Cell:
            bucket = None if data is None else _decode_bucket(data)
            new, granted = lease(spec, bucket, now_ns, give_back=give_back)
            got.append((new, granted))
            expires = full_at_ns(spec, new) if expires_ns is None else expires_ns
            return Cell(_encode(new), False, expires)

        try:
            self._store.update(key, change)
        except BaseException:
            if old is not None:  # not given back after all
                old.back.extend([1] * give_back)
            raise
        bucket, granted = got[-1]
        if len(self.held) >= MAX_LEASES:
            self._sweep(now_ns)
        if granted:
            fresh = Lease(granted, now_ns + self._lease_ns, spec)
        else:
            due = next_token_ns(spec, bucket)
            until = now_ns + self._lease_ns if due is None else min(due, now_ns + self._lease_ns)
            fresh = Lease(0, until, spec, dry=True)
        self.held[key] = fresh
        return fresh

    def _sweep(self, now_ns: int) -> None:
        """Forget expired leases (their unspent tokens are lost: fewer calls, never more)."""
        for key in [k for k, v in self.held.items() if now_ns >= v.until]:
            del self.held[key]

    def give_back(self, now_ns: int) -> None:
        """Return every unspent token to the store (on close; best effort)."""
        with self._lock:
            held, self.held = self.held, {}
            for key, lease_ in held.items():
                n = lease_.drain()
                if n:
                    self._put_back(key, lease_.spec, n, now_ns)

    def _put_back(self, key: str, spec: BucketSpec, n: int, now_ns: int) -> None:
        def change(data: bytes | None) -> Cell:
            bucket = None if data is None else _decode_bucket(data)
            new = put_back(spec, bucket, now_ns, n)
            return Cell(_encode(new), False, full_at_ns(spec, new))

        try:
            self._store.update(key, change)
        except Exception:  # tokens not returned are only fewer calls later
            log.exception("could not return %d leased token(s) of %s", n, key)

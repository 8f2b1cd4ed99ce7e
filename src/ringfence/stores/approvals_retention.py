"""Retention for the SQLite approval store: which finished requests may go, and deleting them.

A request may be deleted once it has ended before the cut-off — its answer, or for a request
with a receipt the receipt's expiry if that is later (an approval can be used until then) —
and every answer of it is in the audit log (``answers.audited`` = 1).  One with an answer not
yet audited, or with none queued (answered by a Ringfence older than the outbox), is kept:
deleting it would lose an audit record.  Pending requests are never candidates.  The request,
its answers and its redeemed steps go in the caller's transaction.
"""

from __future__ import annotations

import sqlite3

import msgspec

from ringfence.core.approvals import Receipt
from ringfence.runtime.approvals import Pruned

__all__ = ["prune_rows"]

# Finished requests answered before a time whose answers are all audited (receipts are
# checked after: an approval counts as ended when its receipt expires), oldest first; and
# those kept because an answer is not audited, or was never queued.
_PRUNABLE = (
    "SELECT id, created, decided, receipt FROM requests r "
    "WHERE status IN ('approved', 'denied', 'expired', 'cancelled', 'used', 'revoked') "
    "AND created < ?1 AND COALESCE(decided, created) < ?1 "
    "AND EXISTS (SELECT 1 FROM answers a WHERE a.request = r.id) "
    "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.request = r.id AND a.audited = 0) "
    "ORDER BY created LIMIT ?2"
)
_HELD = (
    "SELECT id, created, decided, receipt FROM requests r "
    "WHERE status IN ('approved', 'denied', 'expired', 'cancelled', 'used', 'revoked') "
    "AND created < ?1 AND COALESCE(decided, created) < ?1 "
    "AND (NOT EXISTS (SELECT 1 FROM answers a WHERE a.request = r.id) "
    "OR EXISTS (SELECT 1 FROM answers a WHERE a.request = r.id AND a.audited = 0))"
)
_UNREADABLE = (msgspec.DecodeError, ValueError, TypeError)
_receipt_decoder = msgspec.json.Decoder(Receipt)


def _ended(created: object, decided: object, receipt: object) -> tuple[int, str | None]:
    """When a request row stopped mattering (see ``ended_ns``), and its receipt's id.  A
    receipt that cannot be read cannot be redeemed either: the answer time counts."""
    ended = decided if isinstance(decided, int) else created
    assert isinstance(ended, int)  # INTEGER NOT NULL
    if not isinstance(receipt, bytes):
        return ended, None
    try:
        found = _receipt_decoder.decode(receipt)
    except _UNREADABLE:
        return ended, None
    return max(ended, found.expires_ns), found.id


def prune_rows(db: sqlite3.Connection, before_ns: int, limit: int, *, count_kept: bool) -> Pruned:
    """Delete up to ``limit`` requests that ended before ``before_ns`` and whose answers are
    all audited (inside a write transaction); ``count_kept``: also count those held back."""
    requests = answers = 0
    for rid, created, decided, receipt in db.execute(_PRUNABLE, (before_ns, limit)).fetchall():
        ended, receipt_id = _ended(created, decided, receipt)
        if ended >= before_ns:
            continue  # an approval whose receipt can still be used
        answers += db.execute("DELETE FROM answers WHERE request = ?", (rid,)).rowcount
        if receipt_id is not None:
            db.execute("DELETE FROM redeemed WHERE receipt = ?", (receipt_id,))
        db.execute("DELETE FROM requests WHERE id = ?", (rid,))
        requests += 1
    kept = 0
    if count_kept:
        held = db.execute(_HELD, (before_ns,)).fetchall()
        kept = sum(_ended(c, d, r)[0] < before_ns for _, c, d, r in held)
    return Pruned(requests, answers, kept)

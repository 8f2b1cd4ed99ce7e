"""Verify a stored audit log: every record, every link, every checkpoint.

Detects a changed byte in any record, a deleted, inserted or reordered record, a log cut
back below a signed checkpoint, and a forged or re-signed checkpoint; names the first bad
record.  Records carry ``seq`` (their position) and ``prev`` (the previous record's leaf hash),
so most edits are pinned to one record; an attacker who rewrites the whole chain after some
record is caught by the next checkpoint, and the report gives the range it lies in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from nacl.signing import VerifyKey

from ringfence.core.audit.checkpoint import Checkpoint, verify_checkpoint
from ringfence.core.audit.merkle import CompactRange

_sha256 = hashlib.sha256

__all__ = ["Report", "verify_log"]


class _Link(msgspec.Struct):
    seq: int
    prev: str


_link_decoder = msgspec.json.Decoder(_Link)


@dataclass
class Report:
    """The result of verifying a log."""

    records: int = 0
    checkpoints: int = 0
    root: str = ""
    ok: bool = True
    first_bad: int | None = None  # the first record known to be bad
    bad_range: tuple[int, int] | None = None  # when only a range can be named
    problems: list[str] = field(default_factory=list)
    unsealed: int = 0  # records after the last checkpoint (not yet covered by a signature)
    notes: list[str] = field(default_factory=list)  # oddities that are not failures

    def fail(self, message: str, first_bad: int | None = None) -> None:
        self.ok = False
        self.problems.append(message)
        if first_bad is not None and (self.first_bad is None or first_bad < self.first_bad):
            self.first_bad = first_bad


def verify_log(
    rows: Iterable[tuple[int, bytes]],
    checkpoints: Iterable[Checkpoint],
    keys: dict[str, VerifyKey],
    *,
    log_id: str | None = None,
) -> Report:
    """Verify ``rows`` (stored position, record bytes) against signed ``checkpoints``."""
    report = Report()
    cps = sorted(checkpoints, key=lambda c: (c.size, c.time_ns))
    report.checkpoints = len(cps)
    good_cps: list[Checkpoint] = []
    last_time = -1
    for cp in cps:
        why = verify_checkpoint(cp, keys)
        if why is None and log_id is not None and cp.log_id != log_id:
            why = f"belongs to log {cp.log_id}, not {log_id}"
        if why is None and cp.time_ns < last_time:
            # Not evidence of tampering (the signature holds): a clock stepped back.
            report.notes.append(f"checkpoint at size {cp.size} is dated before the one before it")
        if why is not None:
            report.fail(f"checkpoint at size {cp.size}: {why} (forged or tampered)")
            continue
        last_time = cp.time_ns
        good_cps.append(cp)
    pending = iter(good_cps)
    next_cp = next(pending, None)
    while next_cp is not None and next_cp.size == 0:
        next_cp = next(pending, None)
    tree = CompactRange()
    prev = b""
    last_sealed = 0
    expected = 0
    for position, data in rows:
        if report.first_bad is not None:
            break
        if position != expected:
            report.fail(
                f"record {expected} is missing (next stored record is {position}): deleted",
                expected,
            )
            break
        try:
            # Only the link fields are parsed: every other byte is covered by the leaf hash.
            link = _link_decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises both
            report.fail(f"record {expected}: not a valid record ({exc})", expected)
            break
        if link.seq != expected:
            report.fail(
                f"record at position {expected} says it is record {link.seq!r}: "
                "inserted, deleted or reordered",
                expected,
            )
            break
        if link.prev != prev.hex():
            culprit = max(expected - 1, 0)
            report.fail(
                f"record {expected} does not link to record {culprit}: record {culprit} was "
                "changed, or records were reordered",
                culprit,
            )
            break
        leaf = _sha256(b"\x00" + data).digest()
        # The tree before this record, kept only when a checkpoint seals it: to tell an edit of
        # this record alone from a rewritten chain (which also changes the last record).
        before = None
        if next_cp is not None and next_cp.size == expected + 1:
            before = CompactRange(tree.size, tree.hashes)
        tree.append(leaf)
        prev = leaf
        expected += 1
        while next_cp is not None and next_cp.size == expected:
            if next_cp.head != leaf.hex() and (
                next_cp.root == tree.root().hex()
                or _root_with(before, next_cp.head) == next_cp.root
            ):
                report.fail(
                    f"record {expected - 1} does not match the head hash signed at size "
                    f"{next_cp.size}: changed",
                    expected - 1,
                )
            elif next_cp.root != tree.root().hex():
                report.bad_range = (last_sealed, expected)
                report.fail(
                    f"records {last_sealed}..{expected - 1} do not match the root signed at "
                    f"size {next_cp.size}: rewritten",
                    last_sealed,
                )
            last_sealed = expected
            next_cp = next(pending, None)
        if next_cp is not None and next_cp.size < expected:  # impossible with sorted sizes
            next_cp = next(pending, None)
    report.records = expected
    report.root = tree.root().hex()
    if report.first_bad is None and next_cp is not None:
        report.fail(
            f"the log ends at {expected} records but a checkpoint signed size {next_cp.size}: "
            "records were truncated",
            expected,
        )
    report.unsealed = expected - last_sealed
    return report


def _root_with(before: CompactRange | None, head: str) -> str | None:
    """The root hex of ``before`` plus the leaf ``head`` (hex), or None if it cannot be built."""
    if before is None:
        return None
    try:
        leaf = bytes.fromhex(head)
    except ValueError:
        return None
    tree = CompactRange(before.size, before.hashes)
    tree.append(leaf)
    return tree.root().hex()

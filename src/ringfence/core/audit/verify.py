"""Verify a stored audit log: every record, every link, every checkpoint.

Detects a changed byte in any record, a deleted, inserted or reordered record, a log cut
back below a signed checkpoint, and a forged or re-signed checkpoint; names the first bad
record.  Records carry ``seq`` (their position) and ``prev`` (the previous record's leaf hash),
so most edits are pinned to one record; an attacker who rewrites the whole chain after some
record is caught by the next checkpoint, and the report gives the range it lies in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from nacl.signing import VerifyKey

from ringfence.core.audit.checkpoint import Checkpoint, verify_checkpoint
from ringfence.core.audit.encoding import decode, is_canonical
from ringfence.core.audit.merkle import CompactRange, leaf_hash
from ringfence.errors import InputError

__all__ = ["Report", "verify_log"]


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
            why = "is older than the checkpoint before it"
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
            record = decode(data)
        except InputError as exc:
            report.fail(f"record {expected}: {exc.message}", expected)
            break
        if not is_canonical(data):
            report.fail(f"record {expected}: not in canonical form (edited by hand?)", expected)
            break
        if record.get("seq") != expected:
            report.fail(
                f"record at position {expected} says it is record {record.get('seq')!r}: "
                "inserted, deleted or reordered",
                expected,
            )
            break
        if record.get("prev") != prev.hex():
            culprit = max(expected - 1, 0)
            report.fail(
                f"record {expected} does not link to record {culprit}: record {culprit} was "
                "changed, or records were reordered",
                culprit,
            )
            break
        leaf = leaf_hash(data)
        tree.append(leaf)
        prev = leaf
        expected += 1
        while next_cp is not None and next_cp.size == expected:
            if next_cp.head != leaf.hex():
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

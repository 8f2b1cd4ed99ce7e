"""Tampering with a closed SQLite log on disk is found by a fresh reader and verify_log.

The log is written through ``open_audit_log`` (checkpoints at 5, 10 and on close at 12), then
edited with plain SQL the way an intruder with file access could; verification uses only the
public key file, as an auditor would.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from nacl.signing import SigningKey

import ringfence
from ringfence.core.audit.checkpoint import Checkpoint, sign_checkpoint
from ringfence.core.audit.encoding import canonical, decode
from ringfence.core.audit.merkle import leaf_hash, root_of
from ringfence.core.audit.verify import Report, verify_log
from ringfence.stores.keys import load_public_key
from ringfence.stores.sqlite import SQLiteAuditStore

RECORDS = 12
Db = sqlite3.Connection


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with ringfence.open_audit_log(tmp_path, checkpoint_every=5, checkpoint_seconds=3600) as log:
        for i in range(RECORDS):
            log.append({"type": "decision", "n": i, "effect": "deny" if i % 3 else "allow"})
    return tmp_path


def verify(data_dir: Path) -> Report:
    keys = load_public_key(data_dir / "keys" / "audit-signing.pub")
    store = SQLiteAuditStore(data_dir / "audit", readonly=True)
    try:
        return verify_log(store.records(), store.checkpoints(), keys, log_id=store.log_id)
    finally:
        store.close()


def tamper(data_dir: Path, edit: Callable[[Db], None]) -> None:
    with contextlib.closing(sqlite3.connect(data_dir / "audit" / "audit.sqlite")) as db:
        edit(db)
        db.commit()


def record(db: Db, seq: int) -> bytes:
    return bytes(db.execute("SELECT data FROM records WHERE seq = ?", (seq,)).fetchone()[0])


def set_record(db: Db, seq: int, data: bytes) -> None:
    db.execute("UPDATE records SET data = ? WHERE seq = ?", (data, seq))


def test_untouched_log_verifies(data_dir: Path) -> None:
    report = verify(data_dir)
    assert report.ok, report.problems
    assert report.records == RECORDS
    assert report.checkpoints == 3
    assert report.unsealed == 0


@pytest.mark.parametrize("seq", [0, 3, 4, 6, 9, 11])
def test_changed_record_is_named(data_dir: Path, seq: int) -> None:
    def edit(db: Db) -> None:
        data = record(db, seq).replace(b'"effect":"deny"', b'"effect":"allow"')
        data = data.replace(b'"effect":"allow"', b'"effect":"allow","note":"x"', 1)
        set_record(db, seq, data)

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == seq
    assert str(seq) in report.problems[0]


def test_record_made_non_canonical_is_named(data_dir: Path) -> None:
    tamper(data_dir, lambda db: set_record(db, 2, record(db, 2).replace(b",", b", ", 1)))
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == 2


def test_record_that_is_not_json_is_named(data_dir: Path) -> None:
    tamper(data_dir, lambda db: set_record(db, 7, b"\x00garbage"))
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == 7


@pytest.mark.parametrize("seq", [0, 5, 7])
def test_deleted_record_is_named(data_dir: Path, seq: int) -> None:
    tamper(data_dir, lambda db: db.execute("DELETE FROM records WHERE seq = ?", (seq,)))
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == seq
    assert "missing" in report.problems[0]


def test_deleting_the_tail_after_a_checkpoint_is_truncation(data_dir: Path) -> None:
    tamper(data_dir, lambda db: db.execute("DELETE FROM records WHERE seq >= 10"))
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == 10
    assert "truncated" in report.problems[0]


def test_deleting_everything_is_truncation(data_dir: Path) -> None:
    tamper(data_dir, lambda db: db.execute("DELETE FROM records"))
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == 0


def test_inserted_copy_at_the_end_is_named(data_dir: Path) -> None:
    tamper(
        data_dir,
        lambda db: db.execute("INSERT INTO records VALUES (?, ?)", (RECORDS, record(db, 3))),
    )
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == RECORDS


def test_inserted_copy_in_the_middle_is_named(data_dir: Path) -> None:
    def edit(db: Db) -> None:
        copy = record(db, 5)
        for seq in range(RECORDS - 1, 5, -1):  # make room at 6
            db.execute("UPDATE records SET seq = ? WHERE seq = ?", (seq + 1, seq))
        db.execute("INSERT INTO records VALUES (6, ?)", (copy,))

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == 6


@pytest.mark.parametrize(("a", "b"), [(2, 8), (10, 11), (0, 1)])
def test_swapped_records_are_named(data_dir: Path, a: int, b: int) -> None:
    def edit(db: Db) -> None:
        first, second = record(db, a), record(db, b)
        set_record(db, a, second)
        set_record(db, b, first)

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad == a


def test_renumbered_copy_is_caught_by_its_link(data_dir: Path) -> None:
    def edit(db: Db) -> None:  # replace record 8 by record 2 with its seq fixed up
        body = decode(record(db, 2))
        body["seq"] = 8
        set_record(db, 8, canonical(body))

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    # Record 8 no longer links to record 7: from the link alone, a replaced record 8 and an
    # edited record 7 look the same, and the report names the earlier one.
    assert report.first_bad in (7, 8)
    assert "record 8 does not link to record 7" in report.problems[0]


def test_rewritten_chain_is_caught_by_the_next_checkpoint(data_dir: Path) -> None:
    def edit(db: Db) -> None:  # change record 7 and re-link everything after it
        prev = leaf_hash(record(db, 6)).hex()
        for seq in range(7, RECORDS):
            body = decode(record(db, seq))
            if seq == 7:
                body["effect"] = "allow" if body["effect"] == "deny" else "deny"
            body["prev"] = prev
            data = canonical(body)
            set_record(db, seq, data)
            prev = leaf_hash(data).hex()

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert report.first_bad is not None
    assert 5 <= report.first_bad <= 7  # inside the range the checkpoint at 10 seals
    if report.bad_range is not None:
        assert report.bad_range[0] <= 7 < report.bad_range[1]


def _forge(cp: Checkpoint, key: SigningKey, **changes: object) -> bytes:
    forged = sign_checkpoint(
        key,
        log_id=str(changes.get("log_id", cp.log_id)),
        size=int(changes.get("size", cp.size)),  # type: ignore[call-overload]
        root=bytes.fromhex(str(changes.get("root", cp.root))),
        head=bytes.fromhex(str(changes.get("head", cp.head))),
        time_ns=cp.time_ns,
    )
    return forged.to_json()


def _checkpoint(db: Db, size: int) -> Checkpoint:
    row = db.execute("SELECT data FROM checkpoints WHERE size = ?", (size,)).fetchone()
    return Checkpoint.from_json(bytes(row[0]))


def test_checkpoint_resigned_by_another_key_is_refused(data_dir: Path) -> None:
    intruder = SigningKey.generate()

    def edit(db: Db) -> None:
        forged = _forge(_checkpoint(db, 10), intruder)
        db.execute("UPDATE checkpoints SET data = ? WHERE size = 10", (forged,))

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert any("checkpoint at size 10" in p and "unknown key" in p for p in report.problems)


def test_rewritten_log_with_resigned_checkpoints_is_refused(data_dir: Path) -> None:
    intruder = SigningKey.generate()

    def edit(db: Db) -> None:
        set_record(db, 11, record(db, 11).replace(b'"n":11', b'"n":99'))
        tail = [record(db, s) for s in range(RECORDS)]
        leaves = [leaf_hash(d) for d in tail]
        forged = _forge(
            _checkpoint(db, 12), intruder, root=root_of(leaves).hex(), head=leaves[-1].hex()
        )
        db.execute("UPDATE checkpoints SET data = ? WHERE size = 12", (forged,))

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert any("unknown key" in p for p in report.problems)


def test_checkpoint_edited_without_resigning_is_refused(data_dir: Path) -> None:
    def edit(db: Db) -> None:
        cp = _checkpoint(db, 5)
        edited = msgspec.structs.replace(cp, time_ns=cp.time_ns + 1)
        db.execute("UPDATE checkpoints SET data = ? WHERE size = 5", (edited.to_json(),))

    tamper(data_dir, edit)
    report = verify(data_dir)
    assert not report.ok
    assert any("checkpoint at size 5" in p and "signature" in p for p in report.problems)


def test_checkpoints_of_another_log_are_refused(data_dir: Path) -> None:
    tamper(data_dir, lambda db: db.execute("UPDATE meta SET value = 'other' WHERE key = 'log_id'"))
    report = verify(data_dir)
    assert not report.ok
    assert all("belongs to log" in p for p in report.problems)


def test_verify_with_the_wrong_public_key_fails(data_dir: Path) -> None:
    other = SigningKey.generate().verify_key
    (data_dir / "keys" / "audit-signing.pub").write_text(bytes(other).hex() + "\n")
    report = verify(data_dir)
    assert not report.ok
    assert report.problems

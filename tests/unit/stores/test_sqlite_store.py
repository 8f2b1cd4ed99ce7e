"""SQLiteAuditStore: one writer, readers at any time, and a journal that survives a kill."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from ringfence import AuditError
from ringfence.core.audit.encoding import decode
from ringfence.core.audit.verify import verify_log
from ringfence.runtime.audit import AuditLog
from ringfence.stores import journal as journal_module
from ringfence.stores import sqlite as sqlite_module
from ringfence.stores.journal import CHECKPOINT, RECORD, encode_frame, read_frames
from ringfence.stores.sqlite import SQLiteAuditStore

from ._support import abandon, abandon_log, chain, checkpoint_for, journals, used_bytes


def sql_rows(directory: Path, table: str = "records") -> int:
    with contextlib.closing(sqlite3.connect(directory / "audit.sqlite")) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def new_log(store: SQLiteAuditStore, key: SigningKey, **options: Any) -> AuditLog:
    options.setdefault("checkpoint_every", 10_000)
    options.setdefault("checkpoint_seconds", 3600)
    return AuditLog(store, key, **options)


@contextlib.contextmanager
def reader(directory: Path) -> Iterator[SQLiteAuditStore]:
    store = SQLiteAuditStore(directory, readonly=True)
    try:
        yield store
    finally:
        store.close()


# -- basics --------------------------------------------------------------------------------


def test_append_and_read_back(writer: SQLiteAuditStore, store_dir: Path) -> None:
    rows = chain(5)
    for seq, data in rows:
        writer.append(seq, data)
    assert list(writer.records()) == rows
    assert list(writer.records(3)) == rows[3:]
    assert writer.count() == 5
    assert sorted(p.name for p in store_dir.iterdir()) == [
        "audit-ingest.lock",
        "audit-journal2.1",
        "audit.lock",
        "audit.sqlite",
        "audit.sqlite-shm",
        "audit.sqlite-wal",
    ]
    writer.close()
    assert sorted(p.name for p in store_dir.iterdir()) == [
        "audit-ingest.lock",
        "audit.lock",
        "audit.sqlite",
    ]
    assert sql_rows(store_dir) == 5


def test_log_id_is_chosen_once(store_dir: Path) -> None:
    first = SQLiteAuditStore(store_dir)
    log_id = first.log_id
    first.close()
    second = SQLiteAuditStore(store_dir)
    assert second.log_id == log_id
    second.close()
    with reader(store_dir) as r:
        assert r.log_id == log_id
    other = SQLiteAuditStore(store_dir.parent / "other")
    assert other.log_id != log_id
    other.close()


def test_checkpoints_round_trip(writer: SQLiteAuditStore, signing_key: SigningKey) -> None:
    rows = chain(3)
    for seq, data in rows:
        writer.append(seq, data)
    cp1, state1 = checkpoint_for(rows[:2], signing_key, writer.log_id, time_ns=1)
    cp2, state2 = checkpoint_for(rows, signing_key, writer.log_id, time_ns=2)
    writer.append_checkpoint(cp1, state1)
    writer.append_checkpoint(cp2, state2)
    assert writer.checkpoints() == [cp1, cp2]
    assert writer.resume_point() == (3, state2)


def test_empty_store(writer: SQLiteAuditStore) -> None:
    assert list(writer.records()) == []
    assert writer.checkpoints() == []
    assert writer.resume_point() is None


def test_writes_after_close_are_refused(store_dir: Path) -> None:
    store = SQLiteAuditStore(store_dir)
    store.close()
    store.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        store.append(0, b"{}")


def test_invalid_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="durability") as info:
        SQLiteAuditStore(tmp_path / "audit", durability="sometimes")
    assert info.value.code == "audit.unavailable"
    assert not (tmp_path / "audit").exists()


def test_a_file_in_the_way_is_an_audit_error(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("not a directory")
    with pytest.raises(AuditError, match="cannot open audit store"):
        SQLiteAuditStore(tmp_path / "audit")


def test_durability_fsync(
    store_dir: Path, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    log = new_log(SQLiteAuditStore(store_dir, durability="fsync"), signing_key)
    for i in range(3):
        before = len(synced)
        log.append({"i": i})
        assert len(synced) > before  # synced before append returned

    def worker(t: int) -> None:
        for i in range(25):
            log.append({"t": t, "i": i})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    with reader(store_dir) as r:
        assert [s for s, _ in r.records()] == list(range(103))


# -- one writer, many readers --------------------------------------------------------------


def test_a_second_writer_is_refused(writer: SQLiteAuditStore, store_dir: Path) -> None:
    with pytest.raises(AuditError) as info:
        SQLiteAuditStore(store_dir)
    assert info.value.code == "audit.locked"
    writer.append(0, chain(1)[0][1])  # the first writer is unaffected
    writer.close()
    SQLiteAuditStore(store_dir).close()


def test_readonly_needs_an_existing_log(tmp_path: Path) -> None:
    with pytest.raises(AuditError) as info:
        SQLiteAuditStore(tmp_path / "nothing", readonly=True)
    assert info.value.code == "audit.not_found"


def test_reader_sees_journaled_records_while_the_writer_is_open(
    writer: SQLiteAuditStore, store_dir: Path, signing_key: SigningKey
) -> None:
    rows = chain(6)
    for seq, data in rows[:4]:
        writer.append(seq, data)
    cp, state = checkpoint_for(rows[:4], signing_key, writer.log_id)
    writer.append_checkpoint(cp, state)
    assert sql_rows(store_dir) == 0  # still only in the journal

    with reader(store_dir) as r:
        assert r.log_id == writer.log_id
        assert list(r.records()) == rows[:4]
        assert list(r.records(2)) == rows[2:4]
        assert r.checkpoints() == [cp]
        writer.flush()
        assert sql_rows(store_dir) == 4
        assert list(r.records()) == rows[:4]  # no duplicates once both hold them
        assert r.checkpoints() == [cp]
        for seq, data in rows[4:]:
            writer.append(seq, data)
        assert list(r.records()) == rows
        writer.close()
        assert list(r.records()) == rows
    with reader(store_dir) as r:
        assert list(r.records()) == rows
        assert r.checkpoints() == [cp]


def test_reader_cannot_write(writer: SQLiteAuditStore, store_dir: Path) -> None:
    with reader(store_dir) as r:
        with pytest.raises(AuditError, match="read-only"):
            r.append(0, b"{}")
        r.flush()  # a no-op, not an error


# -- moving the journal into SQLite --------------------------------------------------------


def test_busy_writer_flushes_inline_in_batches(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 4)
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    for seq, data in chain(3):
        store.append(seq, data)
    assert sql_rows(store_dir) == 0
    store.append(*chain(4)[3])
    assert sql_rows(store_dir) == 4
    store.close()


def test_quiet_writer_is_flushed_in_the_background(store_dir: Path) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=0.01)
    for seq, data in chain(3):
        store.append(seq, data)
    deadline = time.monotonic() + 5
    while sql_rows(store_dir) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sql_rows(store_dir) == 3
    store.close()


def test_journal_rotates_and_committed_generations_are_deleted(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 200)
    store = SQLiteAuditStore(store_dir, flush_interval=3600, ingest="inline")
    rows = chain(12)
    for seq, data in rows[:6]:
        store.append(seq, data)
    assert [p.name for p in journals(store_dir)] == ["audit-journal2.1"]
    store.flush()
    assert [p.name for p in journals(store_dir)] == ["audit-journal2.2"]
    for seq, data in rows[6:]:
        store.append(seq, data)
    store.flush()
    assert [p.name for p in journals(store_dir)] == ["audit-journal2.3"]
    assert list(store.records()) == rows
    store.close()
    assert journals(store_dir) == []


def test_inline_flush_failure_does_not_break_numbering(
    store_dir: Path,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 3)
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    log = new_log(store, signing_key)
    real = store._transaction
    failures = [sqlite3.OperationalError("database is locked")]

    @contextlib.contextmanager
    def flaky() -> Iterator[None]:
        if failures:
            raise failures.pop()
        with real():
            yield

    monkeypatch.setattr(store, "_transaction", flaky)
    seqs = [log.append({"n": i}) for i in range(8)]  # the third append's flush fails
    assert seqs == list(range(8))
    assert "moving records into SQLite failed" in caplog.text
    log.close()
    with reader(store_dir) as r:
        assert [decode(d)["n"] for _, d in r.records()] == list(range(8))
    reopened = new_log(SQLiteAuditStore(store_dir), signing_key)
    assert reopened.verify().ok
    reopened.close()


def test_background_flush_failure_is_retried(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=0.01)
    real = store._transaction
    failures = [sqlite3.OperationalError("disk I/O error")]

    @contextlib.contextmanager
    def flaky() -> Iterator[None]:
        if failures:
            raise failures.pop()
        with real():
            yield

    monkeypatch.setattr(store, "_transaction", flaky)
    rows = chain(3)
    for seq, data in rows:
        store.append(seq, data)
    deadline = time.monotonic() + 5
    while sql_rows(store_dir) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sql_rows(store_dir) == 3
    assert "moving records into SQLite failed" in caplog.text
    store.close()


def test_failed_sync_stops_all_further_writes(
    store_dir: Path,
    signing_key: SigningKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = new_log(SQLiteAuditStore(store_dir, durability="fsync"), signing_key)
    log.append({"n": 0})
    real = os.fdatasync
    failures = [OSError(5, "Input/output error")]

    def flaky(fd: int) -> None:
        if failures:
            raise failures.pop()
        real(fd)

    monkeypatch.setattr(os, "fdatasync", flaky)
    with pytest.raises(AuditError, match="sync"):
        log.append({"n": 1})
    # The frame may or may not be on disk: nothing may be numbered after it in this process.
    with pytest.raises(AuditError):
        log.append({"n": 2})
    abandon_log(log)
    log = new_log(SQLiteAuditStore(store_dir), signing_key)
    assert log.append({"n": 3}) == 2  # the unsynced frame was recovered, then numbering goes on
    log.close()
    with reader(store_dir) as r:
        assert [decode(d)["n"] for _, d in r.records()] == [0, 1, 3]
    reopened = new_log(SQLiteAuditStore(store_dir), signing_key)
    assert reopened.verify().ok
    reopened.close()


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_failed_write_stops_all_further_writes(
    store_dir: Path, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    # A memory-mapped journal cannot fail a write; a file system without preallocation
    # gets plain writes, which can.
    monkeypatch.setattr(os, "posix_fallocate", _no_fallocate)
    store = SQLiteAuditStore(store_dir, flush_interval=3600, durability=durability)
    log = new_log(store, signing_key)
    log.append({"n": 0})
    real = os.pwritev
    assert store._journal is not None and not store._journal.mapped
    journal_fd = store._journal.fd

    def short_then_fail(fd: int, parts: Any, offset: int) -> int:
        if fd != journal_fd:
            return real(fd, parts, offset)
        os.pwrite(fd, b"".join(parts)[:5], offset)  # half a frame reaches the file, then ENOSPC
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwritev", short_then_fail)
    with pytest.raises(AuditError, match="cannot write"):
        log.append({"n": 1})
    monkeypatch.setattr(os, "pwritev", real)
    with pytest.raises(AuditError):
        log.append({"n": 2})  # would land after the torn frame and be lost on recovery
    abandon_log(log)
    log = new_log(SQLiteAuditStore(store_dir), signing_key)
    assert log.append({"n": 3}) == 1
    log.close()
    with reader(store_dir) as r:
        assert [decode(d)["n"] for _, d in r.records()] == [0, 3]


def _no_fallocate(fd: int, offset: int, length: int) -> None:
    raise OSError(95, "Operation not supported")


def test_a_journal_that_cannot_rotate_stops_later_writes_not_this_one(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 2000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 8)
    store = SQLiteAuditStore(store_dir, flush_interval=3600, ingest="inline")
    rows = chain(40)
    real_open = journal_module.os.open

    def no_new_files(path: Any, flags: int, mode: int = 0o777) -> int:
        if "audit-journal" in str(path):
            raise OSError(24, "Too many open files")
        return real_open(path, flags, mode)

    monkeypatch.setattr(journal_module.os, "open", no_new_files)
    written = 0
    with pytest.raises(AuditError, match=r"rotate: .*Too many open files"):
        for seq, data in rows:
            store.append(seq, data)  # the append that triggers the rotation still succeeds
            written += 1
    monkeypatch.setattr(journal_module.os, "open", real_open)
    assert written >= 8
    abandon(store)
    store = SQLiteAuditStore(store_dir)
    assert list(store.records()) == rows[:written]  # nothing lost, nothing past the failure
    store.close()


# -- recovery after a kill -----------------------------------------------------------------


def test_journal_recovery_after_a_kill(
    store_dir: Path, signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    log = new_log(SQLiteAuditStore(store_dir, flush_interval=3600), signing_key, checkpoint_every=4)
    for i in range(10):
        log.append({"n": i})
    abandon_log(log)
    assert sql_rows(store_dir) == 0  # everything is only in the journal
    assert len(journals(store_dir)) == 1

    caplog.set_level(logging.WARNING)
    store = SQLiteAuditStore(store_dir)
    assert "recovered 10 record(s) and 2 checkpoint(s)" in caplog.text
    assert [p.name for p in journals(store_dir)] == ["audit-journal2.1"]  # a fresh, empty one
    assert list(read_frames(journals(store_dir)[0])) == []
    log = new_log(store, signing_key, checkpoint_every=4)
    assert log.size == 10
    assert [cp.size for cp in store.checkpoints()] == [4, 8, 10]  # the tail was sealed on open
    report = log.verify()
    assert report.ok, report.problems
    assert report.unsealed == 0
    assert log.append({"n": 10}) == 10
    log.close()
    with reader(store_dir) as r:
        assert [decode(d)["n"] for _, d in r.records()] == list(range(11))
        report = verify_log(r.records(), r.checkpoints(), log.public_keys, log_id=r.log_id)
    assert report.ok, report.problems


def test_recovery_from_a_copy_taken_while_open(
    tmp_path: Path, store_dir: Path, signing_key: SigningKey
) -> None:
    log = new_log(SQLiteAuditStore(store_dir, flush_interval=3600), signing_key, checkpoint_every=3)
    for i in range(4):
        log.append({"n": i})
    log.store.flush()  # some records in SQLite (its WAL) ...
    for i in range(4, 7):
        log.append({"n": i})  # ... and some only in the journal
    snapshot = tmp_path / "snapshot"
    shutil.copytree(store_dir, snapshot)
    log.close()

    copy = new_log(SQLiteAuditStore(snapshot), signing_key)
    assert copy.size == 7
    report = copy.verify()
    assert report.ok, report.problems
    copy.close()
    with reader(snapshot) as r:
        assert [decode(d)["n"] for _, d in r.records()] == list(range(7))


def test_records_already_committed_are_not_recovered_twice(
    store_dir: Path, signing_key: SigningKey
) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(8)
    for seq, data in rows[:5]:
        store.append(seq, data)
    store.flush()  # committed, but the journal file still holds the frames
    for seq, data in rows[5:]:
        store.append(seq, data)
    abandon(store)
    store = SQLiteAuditStore(store_dir)
    assert list(store.records()) == rows
    store.close()


@pytest.mark.parametrize(
    "damage",
    ["truncate", "flip-crc", "flip-payload", "flip-length"],
)
def test_a_torn_last_frame_is_dropped(
    store_dir: Path, signing_key: SigningKey, damage: str
) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(5)
    for seq, data in rows:
        store.append(seq, data)
    abandon(store)
    (journal,) = journals(store_dir)
    raw = used_bytes(journal)
    last = len(encode_frame(RECORD, 4, rows[4][1]))
    if damage == "truncate":
        del raw[-3:]
    elif damage == "flip-crc":
        raw[-1] ^= 0xFF
    elif damage == "flip-payload":
        raw[-last + 20] ^= 0x01
    else:
        raw[-last + 9] ^= 0x01  # the length field: the frame now overruns the file
    journal.write_bytes(bytes(raw))

    log = new_log(SQLiteAuditStore(store_dir), signing_key)
    assert log.size == 4
    assert list(log.store.records()) == rows[:4]
    assert log.append({"type": "test", "n": 4}) == 4  # numbering continues where it stopped
    report = log.verify()
    assert report.ok, report.problems
    log.close()


@pytest.mark.parametrize("tail", [b"\x01\x00\x00", b"\x00" * 4096], ids=["half-header", "zeros"])
def test_junk_after_the_last_frame_is_ignored(store_dir: Path, tail: bytes) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(3)
    for seq, data in rows:
        store.append(seq, data)
    abandon(store)
    (journal,) = journals(store_dir)
    journal.write_bytes(bytes(used_bytes(journal)) + tail)
    store = SQLiteAuditStore(store_dir)
    assert list(store.records()) == rows
    store.close()


def test_a_corrupt_frame_ends_the_journal_there(store_dir: Path) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(5)
    for seq, data in rows:
        store.append(seq, data)
    abandon(store)
    (journal,) = journals(store_dir)
    raw = used_bytes(journal)
    first_two = sum(len(encode_frame(RECORD, s, d)) for s, d in rows[:2])
    raw[first_two + 20] ^= 0x01  # inside frame 2
    journal.write_bytes(bytes(raw))
    store = SQLiteAuditStore(store_dir)
    assert list(store.records()) == rows[:2]
    store.close()


def test_a_journal_that_skips_a_record_refuses_to_open(store_dir: Path) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(4)
    for seq, data in (rows[0], rows[1], rows[3]):
        store.append(seq, data)
    abandon(store)
    with pytest.raises(AuditError) as info:
        SQLiteAuditStore(store_dir)
    assert info.value.code == "audit.corrupt"
    assert "skips from record 1 to 3" in info.value.message
    assert journals(store_dir)  # the evidence is kept
    with pytest.raises(AuditError) as info:
        SQLiteAuditStore(store_dir)  # the failed open released the lock
    assert info.value.code == "audit.corrupt"
    for path in journals(store_dir):
        path.unlink()
    SQLiteAuditStore(store_dir).close()


def test_recovery_reads_every_generation_in_order(store_dir: Path, signing_key: SigningKey) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(30)
    for seq, data in rows[:5]:
        store.append(seq, data)
    abandon(store)
    # A writer killed mid-rotation leaves several generations; 10 sorts after 9.  Files of an
    # older version (audit-journal.N, CRC frames) are read in order with this one's.
    (first,) = journals(store_dir)
    for gen, part in ((2, rows[5:10]), (9, rows[10:20]), (10, rows[20:])):
        frames = b"".join(encode_frame(RECORD, s, d) for s, d in part)
        (store_dir / f"audit-journal.{gen}").write_bytes(frames)
    cp, state = checkpoint_for(rows, signing_key, "ignored-log-id")
    with (store_dir / "audit-journal.10").open("ab") as fh:
        fh.write(
            encode_frame(
                CHECKPOINT, 30, len(cp.to_json()).to_bytes(4, "little") + cp.to_json() + state
            )
        )
    store = SQLiteAuditStore(store_dir)
    assert list(store.records()) == rows
    assert store.checkpoints() == [cp]
    assert store.resume_point() == (30, state)
    assert [p.name for p in journals(store_dir)] == ["audit-journal2.1"]
    assert list(read_frames(journals(store_dir)[0])) == []
    store.close()
    assert first.name == "audit-journal2.1"


def test_fsync_rotation_under_concurrent_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotation in fsync mode must not close a descriptor a group commit is syncing."""
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 2_000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 7)
    key = SigningKey.generate()
    log = AuditLog(SQLiteAuditStore(tmp_path, durability="fsync"), key, checkpoint_every=50)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(60):
                log.append({"v": 1, "type": "test", "ts": i, "decision_id": f"{n}-{i}"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert errors == []
    store = SQLiteAuditStore(tmp_path, readonly=True)
    report = verify_log(store.records(), store.checkpoints(), log.public_keys, log_id=store.log_id)
    store.close()
    assert report.ok, report.problems
    assert report.records == 240


def test_sustained_load_hands_ingestion_to_a_helper_process(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the journal rotates, a helper process moves rotated files into SQLite."""
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 2_000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 5)
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(400)
    for seq, data in rows[:20]:
        store.append(seq, data)
    helper = store._helper
    assert helper is not None and helper.poll() is None
    for seq, data in rows[20:]:
        store.append(seq, data)
    deadline = time.monotonic() + 20
    while sql_rows(store_dir) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)  # the helper works on its own; the writer never flushed since
    assert sql_rows(store_dir) >= 300
    assert len(journals(store_dir)) <= 3  # rotated files it moved were deleted
    assert list(store.records()) == rows
    store.close()
    assert helper.poll() == 0
    assert journals(store_dir) == []
    assert sql_rows(store_dir) == 400


def test_writer_killed_with_a_helper_running_recovers(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new writer waits for the old helper, then recovers what is left in the journals."""
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 2_000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 5)
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(300)
    for seq, data in rows:
        store.append(seq, data)
    helper = store._helper
    assert helper is not None
    abandon(store)  # as if the process were killed: no close, no final flush
    assert helper.stdin is not None
    helper.stdin.close()  # what the kernel does to the pipe when the writer dies
    again = SQLiteAuditStore(store_dir, flush_interval=3600)
    assert list(again.records()) == rows
    again.close()
    assert helper.wait(timeout=20) == 0


def test_close_in_helper_mode_keeps_every_record(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: closing after the helper stopped deleted the current journal unread."""
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 2_000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 5)
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    rows = chain(250)
    for seq, data in rows:
        store.append(seq, data)
    assert store._helper is not None
    store.close()  # no read before close: the close itself must move the current journal
    assert journals(store_dir) == []
    assert sql_rows(store_dir) == 250
    with reader(store_dir) as r:
        assert list(r.records()) == rows


def test_close_never_deletes_the_only_copy(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteAuditStore(store_dir, flush_interval=3600, ingest="inline")
    rows = chain(10)
    for seq, data in rows:
        store.append(seq, data)
    monkeypatch.setattr(store, "flush", lambda: None)  # as if moving into SQLite silently failed
    with pytest.raises(AuditError) as err:
        store.close()
    assert err.value.code == "audit.corrupt"
    assert [p.name for p in journals(store_dir)] == ["audit-journal2.1"]
    again = SQLiteAuditStore(store_dir, flush_interval=3600)  # lock was released; recovers
    assert list(again.records()) == rows
    again.close()


def test_audit_log_through_helper_mode_verifies_in_full(
    store_dir: Path, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 4_000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 10)
    log = new_log(SQLiteAuditStore(store_dir, flush_interval=3600), signing_key)
    for i in range(500):
        log.append({"n": i})
    assert isinstance(log.store, SQLiteAuditStore) and log.store._helper is not None
    log.close()
    with reader(store_dir) as r:
        report = verify_log(r.records(), r.checkpoints(), log.public_keys, log_id=r.log_id)
        assert max(c.size for c in r.checkpoints()) == 500
    assert report.ok and report.records == 500 and report.unsealed == 0


def test_a_quiet_writer_in_helper_mode_still_reaches_sqlite(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "ROTATE_BYTES", 2_000)
    monkeypatch.setattr(sqlite_module, "FLUSH_BATCH", 5)
    store = SQLiteAuditStore(store_dir, flush_interval=0.05)
    rows = chain(60)
    for seq, data in rows:
        store.append(seq, data)
    assert store._from_files
    deadline = time.monotonic() + 10
    while sql_rows(store_dir) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)  # no read, no close: the idle flusher moves the current journal too
    assert sql_rows(store_dir) == 60
    store.close()


def test_the_log_writes_hashed_frames_that_survive_a_kill(
    store_dir: Path, signing_key: SigningKey
) -> None:
    """The audit log hands its leaf hashes to the store: the journal holds hashed frames
    (checked by that hash), in files an older version's ``audit-journal.*`` never matches."""
    from ringfence.stores.journal import HASHED_RECORD

    log = new_log(SQLiteAuditStore(store_dir, flush_interval=3600), signing_key)
    for n in range(5):
        log.append({"n": n})
    (path,) = journals(store_dir)
    assert path.read_bytes()[0] == HASHED_RECORD
    assert not list(store_dir.glob("audit-journal.*"))  # what an older version looks for
    abandon_log(log)  # killed: nothing flushed into SQLite
    log = new_log(SQLiteAuditStore(store_dir), signing_key)
    assert log.append({"n": 5}) == 5
    assert log.verify().ok
    log.close()
    with reader(store_dir) as r:
        assert [decode(d)["n"] for _, d in r.records()] == [0, 1, 2, 3, 4, 5]

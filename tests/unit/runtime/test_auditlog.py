"""AuditLog: numbering, hash links, checkpoints, resume after reopen, and refusing bad states."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from ringfence import AuditError
from ringfence.core.audit.checkpoint import key_id, verify_checkpoint
from ringfence.core.audit.encoding import canonical, decode
from ringfence.core.audit.merkle import leaf_hash, root_of
from ringfence.core.audit.verify import verify_log
from ringfence.runtime.audit import AuditLog
from ringfence.stores.memory import MemoryAuditStore
from ringfence.stores.sqlite import SQLiteAuditStore

from ._support import FixedClock

CLOCK = FixedClock()  # shared, so that a reopened log's checkpoints are later than the old ones


def open_log(store: Any, key: SigningKey, **options: Any) -> AuditLog:
    options.setdefault("checkpoint_every", 10_000)
    options.setdefault("checkpoint_seconds", 3600)
    return AuditLog(store, key, clock=CLOCK, **options)


def expected_root(store: Any, size: int | None = None) -> str:
    leaves = [leaf_hash(data) for _, data in store.records()]
    return root_of(leaves[:size] if size is not None else leaves).hex()


def test_records_are_numbered_and_linked(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key)
    assert [log.append({"n": i}) for i in range(5)] == [0, 1, 2, 3, 4]
    assert log.size == 5
    prev = ""
    for seq, data in store.records():
        record = decode(data)
        assert record == {"n": seq, "seq": seq, "prev": prev}
        assert data == canonical(record)
        prev = leaf_hash(data).hex()
    log.close()


def test_checkpoint_every_n_records_and_on_close(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key, checkpoint_every=3)
    for i in range(7):
        log.append({"n": i})
    assert [cp.size for cp in store.checkpoints()] == [3, 6]
    log.close()
    cps = store.checkpoints()
    assert [cp.size for cp in cps] == [3, 6, 7]
    keys = {key_id(bytes(signing_key.verify_key)): signing_key.verify_key}
    for cp in cps:
        assert verify_checkpoint(cp, keys) is None
        assert cp.log_id == store.log_id
        assert cp.root == expected_root(store, cp.size)
        assert cp.head == leaf_hash(dict(store.records())[cp.size - 1]).hex()
    assert log.verify().ok


def test_close_seals_an_empty_log_and_is_idempotent(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key)
    log.close()
    log.close()
    assert [(cp.size, cp.head) for cp in store.checkpoints()] == [(0, "")]
    assert store.closed


def test_close_does_not_reseal_a_sealed_log(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key, checkpoint_every=2)
    log.append({"n": 0})
    log.append({"n": 1})
    log.close()
    assert [cp.size for cp in store.checkpoints()] == [2]


def test_checkpoint_after_checkpoint_seconds(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key, checkpoint_seconds=0.05)
    log.append({"n": 0})
    deadline = time.monotonic() + 5
    while not store.checkpoints() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [cp.size for cp in store.checkpoints()] == [1]
    time.sleep(0.15)
    assert len(store.checkpoints()) == 1  # nothing new, nothing to seal
    log.close()
    assert len(store.checkpoints()) == 1


def test_append_after_close_raises(signing_key: SigningKey) -> None:
    log = open_log(MemoryAuditStore(), signing_key)
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.append({"n": 0})


def test_store_failure_raises_and_leaves_no_hole(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key)
    log.append({"n": 0})
    store.fail_writes = True
    with pytest.raises(AuditError):
        log.append({"n": 1})
    assert log.size == 1
    store.fail_writes = False
    assert log.append({"n": 2}) == 1
    log.close()
    assert log.verify().ok


@pytest.mark.parametrize(
    "record",
    [{"x": float("nan")}, {"x": float("inf")}, {"x": 2**70}, {"x": object()}, {"x": "\ud800"}],
    ids=["nan", "inf", "huge-int", "object", "lone-surrogate"],
)
def test_unencodable_records_are_refused(signing_key: SigningKey, record: dict[str, Any]) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key)
    with pytest.raises(AuditError, match="cannot be encoded"):
        log.append(record)
    assert store.rows == []
    assert log.append({"x": 1}) == 0
    log.close()


def test_public_keys_name_the_signing_key(signing_key: SigningKey) -> None:
    log = open_log(MemoryAuditStore(), signing_key)
    vk = signing_key.verify_key
    assert log.public_keys == {key_id(bytes(vk)): vk}
    log.close()


def test_concurrent_appends_are_contiguous(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key, checkpoint_every=50)
    seqs: list[int] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(200):
            seq = log.append({"t": t, "i": i})
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert sorted(seqs) == list(range(800))
    assert [seq for seq, _ in store.records()] == list(range(800))
    report = log.verify()
    assert report.ok, report.problems
    assert report.records == 800
    assert report.unsealed == 0


def test_verify_detects_an_edit(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key)
    for i in range(4):
        log.append({"n": i})
    log.close()
    seq, data = store.rows[1]
    store.rows[1] = (seq, data.replace(b'"n":1', b'"n":9'))
    report = log.verify()
    assert not report.ok
    assert report.first_bad == 1


# -- resuming ------------------------------------------------------------------------------


def test_reopen_resumes_seq_prev_and_root_exactly(tmp_path: Path, signing_key: SigningKey) -> None:
    log = open_log(SQLiteAuditStore(tmp_path), signing_key, checkpoint_every=4)
    for i in range(10):
        log.append({"n": i})
    last = dict(log.store.records())[9]
    log.close()

    store = SQLiteAuditStore(tmp_path)
    log = open_log(store, signing_key, checkpoint_every=4)
    assert log.size == 10
    assert log.append({"n": 10}) == 10
    record = decode(dict(store.records())[10])
    assert record["prev"] == leaf_hash(last).hex()
    log.close()

    reader = SQLiteAuditStore(tmp_path, readonly=True)
    cps = reader.checkpoints()
    assert [cp.size for cp in cps] == [4, 8, 10, 11]
    for cp in cps:
        assert cp.root == expected_root(reader, cp.size)
    report = verify_log(reader.records(), cps, log.public_keys, log_id=reader.log_id)
    assert report.ok, report.problems
    assert report.records == 11
    reader.close()


def test_reopen_without_any_checkpoint_replays_every_record(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    first = open_log(store, signing_key)
    for i in range(3):
        first.append({"n": i})
    first._timer_stop.set()  # the first writer dies without closing
    assert store.checkpoints() == []

    log = open_log(store, signing_key)
    assert [cp.size for cp in store.checkpoints()] == [3]  # the unsealed records were sealed
    assert store.checkpoints()[0].root == expected_root(store)
    assert log.append({"n": 3}) == 3
    log.close()
    assert log.verify().ok


def test_reopen_seals_records_written_after_the_last_checkpoint(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    first = open_log(store, signing_key, checkpoint_every=2)
    for i in range(5):
        first.append({"n": i})
    first._timer_stop.set()  # abandoned: record 4 is not sealed
    assert [cp.size for cp in store.checkpoints()] == [2, 4]

    log = open_log(store, signing_key, checkpoint_every=2)
    assert [cp.size for cp in store.checkpoints()] == [2, 4, 5]
    assert log.size == 5
    log.close()
    assert log.verify().ok


def test_a_log_with_a_gap_refuses_to_open(signing_key: SigningKey) -> None:
    store = MemoryAuditStore()
    log = open_log(store, signing_key)
    for i in range(4):
        log.append({"n": i})
    log._timer_stop.set()
    del store.rows[2]
    with pytest.raises(AuditError) as info:
        open_log(store, signing_key)
    assert info.value.code == "audit.corrupt"
    assert "gap at record 2" in info.value.message


def test_a_gap_after_the_last_checkpoint_refuses_to_open(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    store = SQLiteAuditStore(tmp_path)
    log = open_log(store, signing_key, checkpoint_every=3)
    for i in range(5):
        log.append({"n": i})
    log.close()
    store = SQLiteAuditStore(tmp_path)
    for seq in (5, 7):  # record 6 never made it
        store.append(seq, canonical({"n": seq, "seq": seq, "prev": ""}))
    store.close()
    store = SQLiteAuditStore(tmp_path)
    with pytest.raises(AuditError) as info:
        open_log(store, signing_key)
    assert info.value.code == "audit.corrupt"
    assert "gap at record 6" in info.value.message
    store.close()


def test_a_log_cut_below_its_checkpoint_refuses_to_open(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    log = open_log(SQLiteAuditStore(tmp_path), signing_key)
    for i in range(5):
        log.append({"n": i})
    log.close()  # checkpoint at size 5
    with contextlib.closing(sqlite3.connect(tmp_path / "audit.sqlite")) as db, db:
        db.execute("DELETE FROM records WHERE seq = 4")
    store = SQLiteAuditStore(tmp_path)
    with pytest.raises(AuditError) as info:
        open_log(store, signing_key)
    assert info.value.code == "audit.corrupt"
    assert "missing record 4" in info.value.message
    store.close()

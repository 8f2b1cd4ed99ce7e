"""The AuditStore contract, run against every store: memory and SQLite behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ringfence import AuditError
from ringfence.core.audit.encoding import canonical
from ringfence.runtime.ports import AuditStore
from ringfence.stores.memory import MemoryAuditStore
from ringfence.stores.sqlite import SQLiteAuditStore

from ._support import chain, checkpoint_for


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditStore]:
    made: AuditStore = (
        MemoryAuditStore() if request.param == "memory" else SQLiteAuditStore(tmp_path / "s")
    )
    yield made
    made.close()


def test_is_an_audit_store(store: AuditStore) -> None:
    assert isinstance(store, AuditStore)
    assert store.log_id


def test_records_in_order_from_any_start(store: AuditStore) -> None:
    rows = chain(6)
    for seq, data in rows:
        store.append(seq, data)
    assert list(store.records()) == rows
    assert list(store.records(4)) == rows[4:]
    assert list(store.records(6)) == []


def test_latest_checkpoint_is_the_resume_point(store: AuditStore, signing_key: SigningKey) -> None:
    rows = chain(4)
    for seq, data in rows:
        store.append(seq, data)
    assert store.resume_point() is None
    small, small_state = checkpoint_for(rows[:2], signing_key, store.log_id, time_ns=1)
    big, big_state = checkpoint_for(rows, signing_key, store.log_id, time_ns=2)
    store.append_checkpoint(small, small_state)
    store.append_checkpoint(big, big_state)
    assert store.checkpoints() == [small, big]
    assert store.resume_point() == (4, big_state)


def test_closed_store_refuses_writes(store: AuditStore, signing_key: SigningKey) -> None:
    store.close()
    with pytest.raises(AuditError):
        store.append(0, chain(1)[0][1])
    cp, state = checkpoint_for(chain(1), signing_key, store.log_id)
    with pytest.raises(AuditError):
        store.append_checkpoint(cp, state)


def test_memory_store_fault_switch(signing_key: SigningKey) -> None:
    store = MemoryAuditStore(log_id="fixed")
    assert store.log_id == "fixed"
    store.fail_writes = True
    with pytest.raises(AuditError):
        store.append(0, b"{}")
    cp, state = checkpoint_for(chain(1), signing_key, "fixed")
    with pytest.raises(AuditError):
        store.append_checkpoint(cp, state)
    assert store.rows == []
    assert store.cps == []
    store.fail_writes = False
    store.append(0, b"{}")
    assert list(store.records()) == [(0, b"{}")]


TRICKY = [
    "plain",
    "caf\u00e9 \u4e2d\u6587 \U0001f600",
    'quote " and backslash \\ and slash /',
    "control \t \n \x00 \x1f",
    "line separators \u2028 \u2029",
    "</script><!--",
    "",
]


def test_record_bytes_survive_the_move_into_sqlite_exactly(tmp_path: Path) -> None:
    rows = [(seq, canonical({"seq": seq, "text": text})) for seq, text in enumerate(TRICKY)]
    store = SQLiteAuditStore(tmp_path / "s", flush_interval=3600)
    for seq, data in rows:
        store.append(seq, data)
    store.flush()  # one batch of consecutive records
    store.append(len(rows), canonical({"seq": len(rows), "text": "\\u0000"}))
    store.close()
    rows.append((len(rows), canonical({"seq": len(rows), "text": "\\u0000"})))
    reader = SQLiteAuditStore(tmp_path / "s", readonly=True)
    try:
        assert list(reader.records()) == rows
    finally:
        reader.close()

"""The controls stores (SQLite and memory): one contract, then what only SQLite promises —
kept across restarts, one generation word for every process, atomic across processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.core.killswitch import Kill, KillScope
from ringfence.runtime.ports import Cell, ControlStore
from ringfence.stores import controls as controls_store
from ringfence.stores.controls import MemoryControlStore, SQLiteControlStore

T0 = 1_700_000_000 * 10**9


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControlStore]:
    s: ControlStore = (
        MemoryControlStore() if request.param == "memory" else SQLiteControlStore(tmp_path)
    )
    yield s
    s.close()  # type: ignore[attr-defined]


def kill(kind: str = "agent", value: str | None = "bot", kid: str = "k-1") -> Kill:
    return Kill(KillScope.of(kind, value), kid, "because", "alice", T0)


# -- the contract ------------------------------------------------------------------------------


def test_kill_unkill_and_history(store: ControlStore) -> None:
    g0 = store.generation()
    event = store.add_kill(kill())
    assert event is not None and event.op == "kill" and event.kill_id == "k-1"
    assert store.generation() != g0
    assert store.kills() == (kill(),)
    lifted = store.remove_kill(KillScope.of("agent", "bot"), by="bob", reason="fixed", at_ns=T0 + 1)
    assert lifted is not None and lifted.op == "unkill" and lifted.kill_id == "k-1"
    assert (lifted.by, lifted.reason, lifted.at_ns) == ("bob", "fixed", T0 + 1)
    assert store.kills() == ()
    assert [e.op for e in store.events()] == ["kill", "unkill"]
    assert [e.op for e in store.events(event.seq)] == ["unkill"]


def test_killing_a_killed_scope_keeps_the_first(store: ControlStore) -> None:
    store.add_kill(kill(kid="k-1"))
    g = store.generation()
    assert store.add_kill(kill(kid="k-2")) is None
    assert store.generation() == g
    assert [k.id for k in store.kills()] == ["k-1"]


def test_unkill_of_an_unkilled_scope_changes_nothing(store: ControlStore) -> None:
    store.add_kill(kill("tool", "x"))
    g = store.generation()
    assert store.remove_kill(KillScope.of("tool", "y"), by="b", reason="", at_ns=T0) is None
    # an exact scope only: a glob kill is lifted by naming the glob, not a tool it matches
    assert store.remove_kill(KillScope.of("agent", "x"), by="b", reason="", at_ns=T0) is None
    assert store.generation() == g and len(store.kills()) == 1


def test_cells_update_atomically_and_flag(store: ControlStore) -> None:
    g = store.generation()
    store.update("c", lambda d: Cell(b"1"))
    assert store.generation() == g  # an unflagged cell does not move the generation
    store.update("c", lambda d: Cell((d or b"") + b"2", flagged=True))
    g_flagged = store.generation()
    assert g_flagged != g and store.flagged() == {"c": b"12"}
    store.update("c", lambda d: Cell(d, flagged=True))
    assert store.generation() != g_flagged  # a flagged cell's change moves it too
    g2 = store.generation()
    store.update("c", lambda d: Cell(None))  # deleting a flagged cell unflags it
    assert store.flagged() == {} and store.generation() != g2
    seen: list[bytes | None] = []
    store.update("c", lambda d: (seen.append(d), Cell(b"x"))[1])
    assert seen == [None]


def test_a_failing_change_leaves_the_cell_as_it_was(store: ControlStore) -> None:
    store.update("c", lambda d: Cell(b"before", flagged=True))

    def boom(data: bytes | None) -> Cell:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update("c", boom)
    assert store.flagged() == {"c": b"before"}
    store.update("c", lambda d: Cell(b"after"))  # the store still works


# -- SQLite only -------------------------------------------------------------------------------


def test_kills_and_cells_survive_a_restart(tmp_path: Path) -> None:
    s = SQLiteControlStore(tmp_path)
    s.add_kill(kill())
    s.update("c", lambda d: Cell(b"v", flagged=True))
    s.close()
    again = SQLiteControlStore(tmp_path)
    assert again.kills() == (kill(),)
    assert again.flagged() == {"c": b"v"}
    assert len(again.events()) == 1
    again.close()


def test_the_generation_word_is_shared_between_instances(tmp_path: Path) -> None:
    a, b = SQLiteControlStore(tmp_path), SQLiteControlStore(tmp_path)
    before = b.generation()
    a.add_kill(kill())
    assert b.generation() != before  # no poll needed: the word is shared memory
    assert b.kills() == (kill(),)
    a.close()
    b.close()


def test_poll_repairs_a_word_left_behind_by_a_dead_writer(tmp_path: Path) -> None:
    s = SQLiteControlStore(tmp_path)
    s.poll()
    before = s.generation()
    db = sqlite3.connect(tmp_path / "controls.sqlite")  # commits without publishing
    db.execute("UPDATE generation SET value = value + 1")
    db.commit()
    db.close()
    assert s.generation() == before
    s.poll()
    assert s.generation() == before + 1
    s.close()


def test_a_new_store_repairs_the_word_on_open(tmp_path: Path) -> None:
    SQLiteControlStore(tmp_path).close()
    (tmp_path / "controls.gen").write_bytes(struct.pack("<Q", 999))
    s = SQLiteControlStore(tmp_path)
    assert s.generation() == 0
    s.close()


def test_expired_cells_are_pruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controls_store, "PRUNE_EVERY", 3)
    s = SQLiteControlStore(tmp_path)
    s.update("old", lambda d: Cell(b"x", flagged=True, expires_ns=1))
    s.update("keep", lambda d: Cell(b"y", flagged=True))
    g = s.generation()
    s.update("other", lambda d: Cell(b"z", expires_ns=2**62))  # the third write prunes
    assert s.flagged() == {"keep": b"y"}
    assert s.generation() != g  # a flagged cell went
    s.close()


def test_an_unwritable_folder_is_a_config_error(tmp_path: Path) -> None:
    from ringfence.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot open controls store"):
        SQLiteControlStore(blocker / "sub")


def _count(path: str, n: int) -> None:
    s = SQLiteControlStore(path)
    for _ in range(n):
        s.update("n", lambda d: Cell(str(int(d or b"0") + 1).encode()))
    s.close()


def test_updates_from_several_processes_are_never_lost(tmp_path: Path) -> None:
    SQLiteControlStore(tmp_path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_count, args=(str(tmp_path), 200)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = SQLiteControlStore(tmp_path)
    got: list[bytes | None] = []
    s.update("n", lambda d: (got.append(d), Cell(d))[1])
    assert got == [b"600"]
    s.close()

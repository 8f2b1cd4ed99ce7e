"""The SQLite session store: kept across restarts, atomic across processes, corrupt ⇒ deny."""

from __future__ import annotations

import multiprocessing
import sqlite3
import textwrap
from pathlib import Path

import pytest

import ringfence
from ringfence import Effect
from ringfence.core.flow import SessionState, Source
from ringfence.errors import ConfigError, InputError
from ringfence.stores.sessions import SQLiteSessionStore

POLICY = textwrap.dedent(
    """
    version: 1
    tools:
      fetch: {args: {type: object, properties: {url: {type: string}}}, labels: [untrusted]}
      send: {args: {type: object, properties: {to: {type: string}}}}
    rules:
      - {id: fetch, effect: allow, tool: fetch}
      - {id: send, effect: allow, tool: send, count: sent}
      - {id: tainted, effect: deny, tool: send, when: {field: labels, contains: untrusted}}
    """
).lstrip("\n")


def test_update_and_load_round_trip(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.sqlite")
    assert store.load("s") is None
    state = store.update("s", lambda st: st.with_labels(("pii",)).with_counter("n", 2))
    assert state.labels == frozenset({"pii"})
    again = store.load("s")
    assert again is not None and again.labels == frozenset({"pii"}) and again.counter("n") == 2
    store.close()


def test_a_failing_change_leaves_the_state_as_it_was(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.sqlite")
    store.update("s", lambda st: st.with_labels(("a",)))

    def boom(state: SessionState) -> SessionState:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update("s", boom)
    loaded = store.load("s")
    assert loaded is not None and loaded.labels == frozenset({"a"})
    store.update("s", lambda st: st.with_labels(("b",)))  # the store still works
    store.close()


def _add_counts(path: str, n: int) -> None:
    store = SQLiteSessionStore(path)
    for _ in range(n):
        store.update("shared", lambda st: st.with_counter("hits", 1))
    store.close()


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite")
    SQLiteSessionStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_add_counts, args=(path, 150)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    store = SQLiteSessionStore(path)
    state = store.load("shared")
    assert state is not None and state.counter("hits") == 450
    store.close()


def test_a_corrupt_row_is_an_error_not_a_fresh_state(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SQLiteSessionStore(path)
    store.update("s", lambda st: st.observe("from a web page", Source.UNTRUSTED))
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE sessions SET data = ? WHERE id = 's'", (b'{"labels": 5}',))
    db.commit()
    db.close()
    store = SQLiteSessionStore(path)
    with pytest.raises(InputError):
        store.load("s")
    with pytest.raises(InputError):
        store.update("s", lambda st: st)
    store.close()


def test_the_embedded_guard_keeps_session_state_across_restarts(tmp_path: Path) -> None:
    policy = ringfence.policy_from_text(POLICY)
    guard = ringfence.open_guard(policy, data_dir=tmp_path, persistent_sessions=True)
    with guard.context(session="s-1"):
        fetch = guard.action("fetch", {"url": "https://x.example/"})
    decision = guard.check(fetch)
    guard.record_outcome(fetch, decision, started_ns=0, result={"text": "page"})
    guard.close()

    guard = ringfence.open_guard(policy, data_dir=tmp_path, persistent_sessions=True)  # a restart
    assert "untrusted" in guard.session_labels("s-1")
    with guard.context(session="s-1"):
        send = guard.action("send", {"to": "a@corp.example"})
    assert guard.check(send).effect is Effect.DENY  # the restart did not wash the session
    guard.close()


def test_the_embedded_guard_denies_when_its_session_row_is_corrupt(tmp_path: Path) -> None:
    policy = ringfence.policy_from_text(POLICY)
    guard = ringfence.open_guard(policy, data_dir=tmp_path, persistent_sessions=True)
    guard.label_session("s-1", ("untrusted",))
    guard.close()
    db = sqlite3.connect(tmp_path / "sessions.sqlite")
    db.execute("UPDATE sessions SET data = x'00ff'")
    db.commit()
    db.close()
    guard = ringfence.open_guard(policy, data_dir=tmp_path, persistent_sessions=True)
    with guard.context(session="s-1"):
        send = guard.action("send", {"to": "a@corp.example"})
    decision = guard.check(send)
    assert decision.effect is Effect.DENY and decision.rules == ("ringfence:internal",)
    guard.close()


def test_an_unusable_path_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open session store"):
        SQLiteSessionStore(blocker / "s.sqlite")

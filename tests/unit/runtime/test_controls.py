"""Controls: kill switch, rate limits, budgets, breakers and loop limit, through ``check``.

Every limit is exercised on its deny path (which limit, which value, the reason's words)
at least as much as on its allow path.  No timings are asserted.
"""

from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringfence.core.action import Action
from ringfence.core.audit.encoding import decode
from ringfence.core.decision import Decision, Effect
from ringfence.core.killswitch import Kill, KillScope
from ringfence.core.limits import LimitSet
from ringfence.core.policy.load import policy_from_text
from ringfence.errors import AuditError, InputError
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.controls import Controls
from ringfence.runtime.ports import Cell
from ringfence.runtime.sessions import Sessions
from ringfence.stores.controls import MemoryControlStore, SQLiteControlStore
from ringfence.stores.memory import MemoryAuditStore

S = 10**9
T0 = 1_700_000_000 * S


def limits_of(text: str) -> LimitSet:
    head = "version: 1\nrules: [{id: a, effect: allow}]\n"
    return policy_from_text(head + textwrap.dedent(text)).spec.limit_set


def act(tool: str = "t", **fields: Any) -> Action:
    fields.setdefault("agent", "bot")
    return Action(kind="tool_call", tool=tool, args=fields.pop("args", {}), **fields)


@pytest.fixture
def make() -> Iterator[Any]:
    made: list[Controls] = []

    def build(text: str = "", **options: Any) -> Controls:
        options.setdefault("watch_seconds", None)
        options.setdefault("clock", lambda: T0)
        c = Controls(limits_of(text), **options)
        made.append(c)
        return c

    yield build
    for c in made:
        c.close()


def audit_log(signing_key: Any, store: MemoryAuditStore | None = None) -> AuditLog:
    return AuditLog(
        store or MemoryAuditStore(), signing_key, checkpoint_every=10_000, checkpoint_seconds=3600
    )


def control_records(log: AuditLog) -> list[dict[str, Any]]:
    return [r for r in (decode(d) for _, d in log.store.records()) if r["type"] == "control"]


# -- kill switch -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "stopped", "free"),
    [
        ("agent", "bot", act(agent="bot"), act(agent="other")),
        ("tool", "send", act("send"), act("read")),
        ("session", "s1", act(session="s1"), act(session="s2")),
        ("user", "bob", act(user="bob"), act(user="alice")),
        ("tool", "github__*", act("github__push"), act("slack__post")),
        ("agent", "planner", act(agent="helper", delegation=("planner",)), act(agent="helper")),
    ],
)
def test_a_kill_stops_its_scope_and_nothing_else(
    make: Any, kind: str, value: str, stopped: Action, free: Action
) -> None:
    c = make()
    assert c.check(stopped, T0) is None
    kill = c.kill(KillScope.of(kind, value), "incident 42", "alice")
    rule, reason = c.check(stopped, T0)
    assert rule == "ringfence:kill"
    assert f"kill switch on {kind}={value}: incident 42" in reason
    assert kill.id in reason and "by alice" in reason
    assert c.check(free, T0) is None


def test_kill_everything_and_unkill(make: Any) -> None:
    c = make()
    c.kill(KillScope.of("all"), "", "ops")
    assert c.check(act("anything", agent="anyone"), T0) == (
        "ringfence:kill",
        f"kill switch on everything: no reason given (kill {c.kills()[0].id} by ops)",
    )
    event = c.unkill(KillScope.of("all"), "resolved", "ops")
    assert event is not None and event.op == "unkill"
    assert c.check(act(), T0) is None
    assert c.unkill(KillScope.of("all")) is None  # nothing left to lift


def test_killing_twice_returns_the_kill_in_force(make: Any) -> None:
    c = make()
    first = c.kill(KillScope.of("tool", "x"), "one", "a")
    again = c.kill(KillScope.of("tool", "x"), "two", "b")
    assert again == first and len(c.kills()) == 1


def test_killed_answers_for_ids(make: Any) -> None:
    c = make()
    c.kill(KillScope.of("user", "bob"), "r", "a")
    assert c.killed(user="bob") is not None
    assert c.killed(user="alice", agent="x", tool="y") is None


def test_a_kill_made_elsewhere_is_seen_on_the_next_check(make: Any) -> None:
    store = MemoryControlStore()
    here, there = make(store=store), make(store=store)
    assert here.check(act(), T0) is None
    there.kill(KillScope.of("agent", "bot"), "r", "a")
    assert here.check(act(), T0)[0] == "ringfence:kill"  # type: ignore[index]
    there.unkill(KillScope.of("agent", "bot"))
    assert here.check(act(), T0) is None


def test_on_kill_hooks_fire_once_here_and_elsewhere(make: Any) -> None:
    store = MemoryControlStore()
    here, there = make(store=store), make(store=store)
    seen_here: list[Kill] = []
    seen_there: list[Kill] = []
    here.on_kill(seen_here.append)
    there.on_kill(seen_there.append)
    kill = here.kill(KillScope.of("session", "s1"), "stop", "alice")
    assert seen_here == [kill]
    there.check(act(), T0)
    there.check(act(), T0)
    assert seen_there == [kill]
    here.unkill(KillScope.of("session", "s1"))
    there.check(act(), T0)
    assert len(seen_there) == 1  # an unkill is not a kill


def test_a_failing_hook_is_logged_not_raised(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    c = make()
    calls: list[str] = []

    def bad(kill: Kill) -> None:
        raise RuntimeError("hook broke")

    c.on_kill(bad)
    c.on_kill(lambda k: calls.append(k.id))
    with caplog.at_level(logging.ERROR):
        kill = c.kill(KillScope.of("tool", "x"), "r", "a")
    assert calls == [kill.id]
    assert "on_kill hook failed" in caplog.text
    assert c.check(act("x"), T0) is not None


def test_the_watcher_brings_kills_made_elsewhere_to_hooks(make: Any) -> None:
    store = MemoryControlStore()
    watched = make(store=store, watch_seconds=0.01)
    fired = threading.Event()
    watched.on_kill(lambda k: fired.set())
    make(store=store).kill(KillScope.of("agent", "x"), "r", "a")
    assert fired.wait(5)  # no check was made in the watched Controls


def test_kills_and_unkills_are_audited_here_and_where_they_are_seen(
    make: Any, signing_key: Any
) -> None:
    store = MemoryControlStore()
    log_here, log_there = audit_log(signing_key), audit_log(signing_key)
    here = make(store=store, audit=log_here)
    there = make(store=store, audit=log_there)
    kill = here.kill(KillScope.of("tool", "send"), "leak", "alice")
    here.unkill(KillScope.of("tool", "send"), "fixed", "bob")
    there.check(act(), T0)
    mine, seen = control_records(log_here), control_records(log_there)
    assert [(r["op"], r["observed"]) for r in mine] == [("kill", False), ("unkill", False)]
    assert [(r["op"], r["observed"]) for r in seen] == [("kill", True), ("unkill", True)]
    first = mine[0]
    assert (first["scope"], first["value"], first["kill_id"], first["by"], first["reason"]) == (
        "tool",
        "send",
        kill.id,
        "alice",
        "leak",
    )
    assert (mine[1]["by"], mine[1]["reason"], mine[1]["kill_id"]) == ("bob", "fixed", kill.id)
    assert log_here.verify().ok
    log_here.close()
    log_there.close()


def test_a_kill_stands_when_the_audit_log_fails(make: Any, signing_key: Any) -> None:
    failing = MemoryAuditStore()
    log = audit_log(signing_key, failing)
    c = make(audit=log)
    failing.fail_writes = True
    with pytest.raises(AuditError, match="is in force, but the audit log could not record it"):
        c.kill(KillScope.of("agent", "bot"), "r", "a")
    assert c.check(act(), T0)[0] == "ringfence:kill"  # type: ignore[index]
    failing.fail_writes = False
    log.close()


def test_kills_survive_a_restart(tmp_path: Path) -> None:
    first = Controls(store=SQLiteControlStore(tmp_path), owns_store=True, watch_seconds=None)
    first.kill(KillScope.of("agent", "bot"), "r", "a")
    first.close()
    second = Controls(store=SQLiteControlStore(tmp_path), owns_store=True, watch_seconds=None)
    assert second.check(act(), T0)[0] == "ringfence:kill"  # type: ignore[index]
    second.close()


# -- rate limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per", "fields", "same", "other", "who"),
    [
        ("agent", {"agent": "a1"}, {"agent": "a1", "session": "x"}, {"agent": "a2"}, "agent=a1"),
        ("session", {"session": "s1"}, {"session": "s1"}, {"session": "s2"}, "session=s1"),
        ("user", {"user": "u1"}, {"user": "u1", "agent": "z"}, {"user": "u2"}, "user=u1"),
        ("global", {}, {"agent": "anyone"}, None, "all callers"),
    ],
)
def test_rate_limit_per_scope(
    make: Any,
    per: str,
    fields: dict[str, str],
    same: dict[str, str],
    other: dict[str, str] | None,
    who: str,
) -> None:
    c = make(f"limits: {{rate: [{{id: r1, per: {per}, limit: 2, window: 60s}}]}}")
    assert c.check(act(**fields), T0) is None
    assert c.check(act(**same), T0) is None
    assert c.check(act(**fields), T0) == (
        "ringfence:rate",
        f"rate limit r1 ({who}): 2 per 60s exceeded",
    )
    assert c.check(act(**same), T0) is not None
    if other is not None:
        assert c.check(act(**other), T0) is None


def test_rate_limit_per_tool_names_the_tool(make: Any) -> None:
    c = make("limits: {rate: [{id: email, per: tool, tool: send_email, limit: 1, window: 60s}]}")
    assert c.check(act("send_email"), T0) is None
    assert c.check(act("send_email"), T0) == (
        "ringfence:rate",
        "rate limit email (tool=send_email): 1 per 60s exceeded",
    )
    for _ in range(5):
        assert c.check(act("read_file"), T0) is None  # not in the limit's scope


def test_rate_limit_refills_over_time(make: Any) -> None:
    c = make("limits: {rate: [{id: r, per: agent, limit: 2, window: 10s}]}", lease_ns=1)
    assert [c.check(act(), T0) is None for _ in range(3)] == [True, True, False]
    assert c.check(act(), T0 + 4 * S) is not None  # 0.8 of a token
    assert c.check(act(), T0 + 5 * S) is None  # one token back
    assert c.check(act(), T0 + 5 * S) is not None


def test_burst_is_the_capacity(make: Any) -> None:
    c = make("limits: {rate: [{id: r, limit: 1, window: 1s, burst: 3}]}")
    assert [c.check(act(), T0) is None for _ in range(4)] == [True, True, True, False]


def test_a_per_session_limit_does_not_apply_outside_a_session(make: Any) -> None:
    c = make("limits: {rate: [{id: r, per: session, limit: 1, window: 60s}]}")
    for _ in range(3):
        assert c.check(act(), T0) is None


def test_agent_and_user_scopes_select_callers(make: Any) -> None:
    c = make(
        'limits: {rate: [{id: r, per: agent, agent: "bot-*", user: bob, limit: 1, window: 60s}]}'
    )
    assert c.check(act(agent="bot-1", user="bob"), T0) is None
    assert c.check(act(agent="bot-1", user="bob"), T0) is not None
    for _ in range(3):
        assert c.check(act(agent="bot-1", user="alice"), T0) is None
        assert c.check(act(agent="human", user="bob"), T0) is None
        assert c.check(act(agent="bot-1"), T0) is None  # no user: a user scope never matches


def test_a_refused_call_costs_no_tokens_of_other_limits(make: Any) -> None:
    c = make(
        """
        limits:
          rate:
            - {id: wide, per: agent, limit: 3, window: 60s}
            - {id: narrow, per: tool, tool: send, limit: 1, window: 60s}
        """
    )
    assert c.check(act("send"), T0) is None  # wide 2 left, narrow 0 left
    for _ in range(5):
        assert c.check(act("send"), T0)[1].startswith("rate limit narrow")  # type: ignore[index]
    assert c.check(act("read"), T0) is None
    assert c.check(act("read"), T0) is None
    assert c.check(act("read"), T0)[1].startswith("rate limit wide")  # type: ignore[index]


def test_two_controls_on_one_store_share_the_bucket(tmp_path: Path, make: Any) -> None:
    store = SQLiteControlStore(tmp_path)
    text = "limits: {rate: [{id: r, per: agent, limit: 40, window: 1h}]}"
    a, b = make(text, store=store), make(text, store=store)
    allowed = sum(c.check(act(), T0) is None for _ in range(60) for c in (a, b))
    assert allowed <= 40
    a.close()
    b.close()
    assert allowed >= 40 - 2 * 16  # leases cost fairness, never correctness
    store.close()


def test_closing_gives_unspent_tokens_back(tmp_path: Path) -> None:
    text = "limits: {rate: [{id: r, per: agent, limit: 320, window: 1h}]}"
    store = SQLiteControlStore(tmp_path)
    a = Controls(limits_of(text), store=store, watch_seconds=None, clock=lambda: T0)
    assert a.check(act(), T0) is None  # leases 20, spends 1
    a.close()
    b = Controls(limits_of(text), store=store, watch_seconds=None, clock=lambda: T0)
    allowed = sum(b.check(act(), T0) is None for _ in range(400))
    assert allowed == 319
    b.close()
    store.close()


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_threads_hammering_one_limit_never_over_allow(
    tmp_path: Path, store_kind: str, make: Any
) -> None:
    store = MemoryControlStore() if store_kind == "memory" else SQLiteControlStore(tmp_path)
    text = "limits: {rate: [{id: r, per: tool, limit: 500, window: 1h}]}"
    controls = [make(text, store=store) for _ in range(2)]
    allowed = [0] * 8
    barrier = threading.Barrier(8)

    def hammer(i: int) -> None:
        c = controls[i % 2]
        barrier.wait()
        for _ in range(150):
            if c.check(act(), T0) is None:
                allowed[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) <= 500
    assert sum(allowed) >= 500 - 2 * 32  # at most one lease per Controls left unspent


# -- budgets -----------------------------------------------------------------------------------


def test_call_budget_per_session_is_exact(make: Any) -> None:
    c = make("limits: {budgets: [{id: b, per: session, calls: 3}]}")
    results = [c.check(act(session="s1"), T0) for _ in range(5)]
    assert results[:3] == [None, None, None]
    assert results[3] == ("ringfence:budget", "budget b (session=s1): all 3 calls used")
    assert c.check(act(session="s2"), T0) is None


def test_a_windowed_budget_starts_afresh(make: Any) -> None:
    c = make("limits: {budgets: [{id: b, per: agent, calls: 1, window: 1h}]}", lease_ns=1)
    day = 3600 * S
    start = (T0 // day) * day
    assert c.check(act(), start) is None
    assert c.check(act(), start + 10) == (
        "ringfence:budget",
        "budget b (agent=bot): all 1 calls used per 1h",
    )
    assert c.check(act(), start + day) is None


def test_tokens_and_cost_reported_after_the_fact(make: Any) -> None:
    c = make("limits: {budgets: [{id: spend, per: session, tokens: 1000, cost: 0.50}]}")
    assert c.report_usage(session="s1", tokens=600, cost=0.10) == []
    assert c.check(act(session="s1"), T0) is None
    assert c.report_usage(session="s1", tokens=500) == ["spend"]
    assert c.check(act(session="s1"), T0) == (
        "ringfence:budget",
        "budget spend (session=s1): tokens 1100 of 1000 used",
    )
    assert c.check(act(session="s2"), T0) is None
    c.report_usage(session="s2", cost=0.5)
    assert c.check(act(session="s2"), T0) == (
        "ringfence:budget",
        "budget spend (session=s2): cost 0.5 of 0.5 used",
    )


def test_a_used_up_budget_is_seen_by_every_controls_on_the_store(make: Any) -> None:
    store = MemoryControlStore()
    text = "limits: {budgets: [{id: b, per: agent, tokens: 10}]}"
    a, b = make(text, store=store), make(text, store=store)
    a.report_usage(agent="bot", tokens=10)
    assert b.check(act(), T0)[0] == "ringfence:budget"  # type: ignore[index]


def test_usage_for_ids_a_budget_does_not_count_is_ignored(make: Any) -> None:
    c = make("limits: {budgets: [{id: b, per: session, agent: bot, tokens: 10}]}")
    assert c.report_usage(agent="bot", tokens=100) == []  # no session given
    assert c.report_usage(session="s", agent="other", tokens=100) == []
    assert c.report_usage(session="s", tokens=100) == []  # agent unknown: not this budget's
    assert c.check(act(session="s"), T0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": -1}, "tokens must be"),
        ({"tokens": True}, "tokens must be"),
        ({"cost": -0.5}, "cost must be"),
        ({"cost": float("nan")}, "cost must be"),
        ({"cost": "1"}, "cost must be a number"),
    ],
)
def test_bad_usage_reports_are_refused(make: Any, kwargs: dict[str, Any], message: str) -> None:
    c = make("limits: {budgets: [{id: b, per: session, tokens: 10, cost: 1}]}")
    with pytest.raises(InputError, match=message):
        c.report_usage(session="s", **kwargs)


# -- breakers ----------------------------------------------------------------------------------

BREAKER = """
limits:
  breakers:
    - {id: up, tool: "up__*", min_calls: 3, failure_rate: 0.5, window: 60s, open_for: 10s}
"""


def fail_n(c: Controls, n: int, tool: str = "up__a", at: int = T0) -> None:
    for _ in range(n):
        assert c.check(act(tool), at) is None
        c.record(act(tool), False, 1000, at)


def test_breaker_opens_denies_probes_and_closes(make: Any) -> None:
    c = make(BREAKER)
    fail_n(c, 3)
    rule, reason = c.check(act("up__a"), T0 + S)
    assert rule == "ringfence:breaker"
    assert reason == (
        "circuit breaker up (tool=up__a) is open: 3 of 3 calls failed or were slow; "
        "probing again in 9s"
    )
    assert c.check(act("up__other"), T0 + S) is not None  # one breaker for the upstream
    assert c.check(act("down__x"), T0 + S) is None
    assert c.check(act("up__a"), T0 + 10 * S) is None  # the probe
    assert "half-open" in c.check(act("up__a"), T0 + 10 * S)[1]  # type: ignore[index]
    c.record(act("up__a"), True, 1000, T0 + 11 * S)
    assert c.check(act("up__a"), T0 + 11 * S) is None
    fail_n(c, 2, at=T0 + 12 * S)  # the window starts empty after closing
    assert c.check(act("up__a"), T0 + 12 * S) is None


def test_a_failed_probe_opens_the_breaker_again(make: Any) -> None:
    c = make(BREAKER)
    fail_n(c, 3)
    assert c.check(act("up__a"), T0 + 10 * S) is None
    c.record(act("up__a"), False, 1000, T0 + 10 * S)
    rule, reason = c.check(act("up__a"), T0 + 11 * S)
    assert rule == "ringfence:breaker" and "probe failed" in reason


def test_successes_keep_the_breaker_closed(make: Any) -> None:
    c = make(BREAKER)
    for ok in (False, True, True, True, False):
        assert c.check(act("up__a"), T0) is None
        c.record(act("up__a"), ok, 1000, T0)
    assert c.check(act("up__a"), T0) is None


def test_slow_calls_open_a_per_tool_breaker(make: Any) -> None:
    c = make(
        "limits: {breakers: [{id: slow, tool: '*', per: tool, slow: 2s, min_calls: 2, "
        "failure_rate: 1}]}"
    )
    for _ in range(2):
        c.check(act("x"), T0)
        c.record(act("x"), True, 3 * S, T0)
    assert c.check(act("x"), T0)[0] == "ringfence:breaker"  # type: ignore[index]
    assert c.check(act("y"), T0) is None  # per tool


def test_an_open_breaker_is_seen_by_every_controls_on_the_store(make: Any) -> None:
    store = MemoryControlStore()
    a, b = make(BREAKER, store=store), make(BREAKER, store=store)
    fail_n(a, 3)
    assert b.check(act("up__a"), T0)[0] == "ringfence:breaker"  # type: ignore[index]
    assert b.check(act("up__a"), T0 + 10 * S) is None  # b's probe
    assert a.check(act("up__a"), T0 + 10 * S)[0] == "ringfence:breaker"  # type: ignore[index]
    b.record(act("up__a"), True, 10, T0 + 10 * S)
    assert a.check(act("up__a"), T0 + 10 * S) is None


# -- loop limit --------------------------------------------------------------------------------


def test_loop_limit_reads_the_sessions_repeats(make: Any) -> None:
    c = make("limits: {loop: {max_repeats: 2}}")
    sessions = Sessions()
    same = act("fetch", session="s1", args={"url": "https://x"})
    results = []
    for _ in range(4):
        prepared = sessions.prepare(same)
        hit = c.check(prepared, T0)
        results.append(hit)
        if hit is None:
            sessions.allowed(prepared, Decision(Effect.ALLOW, ("a",), (), "v"))
    assert results[:2] == [None, None]
    assert results[2] == (
        "ringfence:loop",
        "loop limit: this exact fetch call was already allowed 2 times among the session's "
        "recent calls (max_repeats 2)",
    )
    other = sessions.prepare(act("fetch", session="s1", args={"url": "https://y"}))
    assert c.check(other, T0) is None


# -- failures ----------------------------------------------------------------------------------


def test_a_corrupt_cell_denies(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryControlStore()
    c = make("limits: {rate: [{id: r, per: agent, limit: 5, window: 60s}]}", store=store)
    key = c._plans.get("tool_call", "t").meters[0].prefix + "bot"  # type: ignore[union-attr]
    store.update(key, lambda d: Cell(b"\xff not msgpack"))
    with caplog.at_level(logging.ERROR):
        rule, reason = c.check(act(), T0)  # type: ignore[misc]
    assert rule == "ringfence:internal"
    assert reason.startswith("limits and kill switch unavailable: ")
    assert "controls failed while checking" in caplog.text


def test_a_failing_store_denies_and_recording_never_raises(make: Any) -> None:
    class Broken(MemoryControlStore):
        def update(self, key: str, change: Any) -> None:
            raise OSError("disk gone")

    c = make(BREAKER + "  rate: [{id: r, limit: 5, window: 60s}]\n", store=Broken())
    assert c.check(act("up__a"), T0)[0] == "ringfence:internal"  # type: ignore[index]
    for _ in range(5):
        c.record(act("up__a"), False, 10, T0)  # logged, not raised

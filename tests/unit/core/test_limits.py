"""The pure parts of limits: token bucket arithmetic, leases, breakers, windows, kill sets,
and the ``limits:`` section of a policy (errors name file, line and field)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.core.killswitch import ALL, Kill, KillScope, KillSet
from ringfence.core.limits import (
    CLOSED,
    Breaker,
    BreakerSpec,
    Bucket,
    BucketSpec,
    Budget,
    Usage,
    Window,
    breaker_admit,
    breaker_result,
    full_at_ns,
    lease,
    next_token_ns,
    put_back,
    refilled,
    take,
)
from ringfence.core.policy.load import policy_from_text
from ringfence.errors import InputError, PolicyError

S = 10**9
T0 = 1_700_000_000 * S


# -- token bucket ------------------------------------------------------------------------------


def test_a_new_bucket_is_full_and_empties_after_capacity_takes() -> None:
    spec = BucketSpec(capacity=3, refill=3, window_ns=60 * S)
    state = None
    granted = []
    for _ in range(5):
        state, ok = take(spec, state, T0)
        granted.append(ok)
    assert granted == [True, True, True, False, False]


def test_refill_is_exact_and_proportional() -> None:
    spec = BucketSpec(capacity=10, refill=10, window_ns=60 * S)
    state = Bucket(0, T0)
    assert take(spec, state, T0 + 5 * S)[1] is False  # 5 s = 0.83 of a token
    assert take(spec, state, T0 + 6 * S)[1] is True  # 6 s = exactly one token
    assert refilled(spec, state, T0 + 600 * S).level == spec.full  # capped at capacity


def test_a_clock_that_goes_back_adds_nothing() -> None:
    spec = BucketSpec(capacity=5, refill=5, window_ns=S)
    state = Bucket(0, T0)
    assert refilled(spec, state, T0 - 10 * S) == state
    assert take(spec, state, T0 - 10 * S)[1] is False


def test_an_empty_bucket_stays_empty_without_refill() -> None:
    spec = BucketSpec(capacity=2, refill=0, window_ns=1000)
    state = Bucket(0, T0)
    assert take(spec, state, T0 + 10**6 * S)[1] is False
    assert next_token_ns(spec, state) is None
    assert full_at_ns(spec, state) is None


def test_next_token_and_full_times() -> None:
    spec = BucketSpec(capacity=2, refill=1, window_ns=S)
    state = Bucket(0, T0)
    assert next_token_ns(spec, state) == T0 + S
    assert full_at_ns(spec, state) == T0 + 2 * S
    assert next_token_ns(spec, Bucket(spec.full, T0)) == T0


def test_lease_takes_a_sixteenth_at_least_one_and_at_most_the_cap() -> None:
    spec = BucketSpec(capacity=1600, refill=1600, window_ns=S)
    assert lease(spec, None, T0)[1] == 100
    small = BucketSpec(capacity=3, refill=3, window_ns=S)
    assert lease(small, None, T0)[1] == 1
    big = BucketSpec(capacity=10**6, refill=10**6, window_ns=S)
    assert lease(big, None, T0)[1] == 4096
    empty = Bucket(0, T0)
    assert lease(small, empty, T0)[1] == 0


def test_giving_back_never_fills_past_capacity() -> None:
    spec = BucketSpec(capacity=4, refill=4, window_ns=S)
    assert put_back(spec, None, T0, 10).level == spec.full
    state = Bucket(spec.token, T0)
    assert put_back(spec, state, T0, 2).level == 3 * spec.token


_ops = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * S),  # time step (ns)
        st.sampled_from(["take", "lease", "give_back"]),
        st.integers(min_value=0, max_value=50),  # give-back amount (bounded by outstanding)
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(min_value=1, max_value=500),
    refill=st.integers(min_value=0, max_value=500),
    window_s=st.integers(min_value=1, max_value=120),
    ops=_ops,
)
def test_never_more_than_capacity_plus_refill_times_elapsed(
    capacity: int, refill: int, window_s: int, ops: list[tuple[int, str, int]]
) -> None:
    spec = BucketSpec(capacity, refill, window_s * S)
    state: Bucket | None = None
    now = T0
    handed_out = 0  # tokens that left the bucket and were not given back
    outstanding = 0  # leased and not yet spent or given back
    for step, op, amount in ops:
        now += step
        if op == "take":
            state, ok = take(spec, state, now)
            handed_out += ok
        elif op == "lease":
            state, got = lease(spec, state, now)
            handed_out += got
            outstanding += got
        else:
            back = min(amount, outstanding)
            state, _ = lease(spec, state, now, give_back=back, most=0)
            outstanding -= back
            handed_out -= back
        elapsed = now - T0
        assert handed_out * window_s * S <= capacity * window_s * S + refill * elapsed
        assert 0 <= state.level <= spec.full


# -- budgets -----------------------------------------------------------------------------------


def test_budget_exhaustion_names_the_measure() -> None:
    b = Budget("b", "session", tokens=100, cost_micros=2_500_000)
    assert b.exhausted(Usage(99, 0)) is None
    assert b.exhausted(Usage(100, 0)) == "tokens 100 of 100"
    assert b.exhausted(Usage(0, 2_500_000)) == "cost 2.5 of 2.5"


def test_budget_windows_are_aligned() -> None:
    b = Budget("b", "agent", calls=1, window_ns=86400 * S)
    index, end = b.window(T0)
    assert index == T0 // (86400 * S) and end == (index + 1) * 86400 * S
    assert Budget("b", "agent", calls=1).window(T0) == (0, None)


# -- circuit breaker ---------------------------------------------------------------------------

SPEC = BreakerSpec("up", "global", 0.5, min_calls=4, window_ns=10 * S, open_ns=5 * S, probes=1)


def test_window_opens_only_after_min_calls_at_the_failure_rate() -> None:
    w = Window(SPEC.window_ns)
    for failed in (True, True, True):
        w.add(T0, failed)
    assert w.trips(SPEC, T0) is None  # 3 calls < min_calls
    w.add(T0, False)
    assert w.trips(SPEC, T0) == "3 of 4 calls failed or were slow"


def test_window_forgets_old_calls() -> None:
    w = Window(SPEC.window_ns)
    for _ in range(10):
        w.add(T0, True)
    assert w.counts(T0 + 11 * S) == (0, 0)
    w.add(T0 + 11 * S, False)
    assert w.counts(T0 + 11 * S) == (1, 0)


def test_slow_calls_count_as_failures() -> None:
    slow = BreakerSpec("s", "tool", 0.5, 1, S, S, slow_ns=2 * S)
    assert slow.failed(True, 3 * S) and not slow.failed(True, S) and slow.failed(False, 0)


def test_breaker_cycle_closed_open_half_open_closed() -> None:
    state = breaker_result(SPEC, CLOSED, T0, True, "4 of 4 calls failed")
    assert state.phase == "open" and state.why == "4 of 4 calls failed"
    assert breaker_admit(SPEC, state, T0 + S) == (state, False)  # denies fast while open
    probe, ok = breaker_admit(SPEC, state, T0 + 5 * S)
    assert ok and probe.phase == "half_open" and probe.probes == 1
    assert breaker_admit(SPEC, probe, T0 + 5 * S)[1] is False  # only one probe at a time
    assert breaker_result(SPEC, probe, T0 + 6 * S, False, None) == CLOSED


def test_a_failed_probe_opens_again() -> None:
    probe = Breaker("half_open", T0, 1, "x")
    again = breaker_result(SPEC, probe, T0 + S, True, None)
    assert again.phase == "open" and again.since_ns == T0 + S
    assert breaker_admit(SPEC, again, T0 + 2 * S)[1] is False


def test_a_lost_probe_is_replaced_after_open_for() -> None:
    probe = Breaker("half_open", T0, 1, "x")
    assert breaker_admit(SPEC, probe, T0 + S)[1] is False
    replaced, ok = breaker_admit(SPEC, probe, T0 + 5 * S)
    assert ok and replaced.since_ns == T0 + 5 * S


def test_an_open_breaker_ignores_late_outcomes() -> None:
    opened = Breaker("open", T0, 0, "x")
    assert breaker_result(SPEC, opened, T0 + S, False, None) == opened


# -- kill sets ---------------------------------------------------------------------------------


def _kill(kind: str, value: str | None = None) -> Kill:
    return Kill(KillScope.of(kind, value), f"k-{kind}", "r", "me", T0)


def test_kill_scopes_match_their_field_only() -> None:
    ks = KillSet((_kill("tool", "send_email"),))
    assert ks.hit("a", "send_email", None, None) is not None
    assert ks.hit("a", "read", None, None) is None
    ks = KillSet((_kill("session", "s1"), _kill("user", "bob")))
    assert ks.hit("a", "t", "s1", None) is not None
    assert ks.hit("a", "t", "s2", "bob") is not None
    assert ks.hit("a", "t", "s2", "alice") is None
    assert ks.hit("a", "t", None, None) is None


def test_an_agent_kill_reaches_its_delegates() -> None:
    ks = KillSet((_kill("agent", "planner"),))
    assert ks.hit("planner", "t", None, None) is not None
    assert ks.hit("helper", "t", None, None, ("planner",)) is not None
    assert ks.hit("helper", "t", None, None, ("other",)) is None


def test_glob_kills_and_kill_all() -> None:
    ks = KillSet((_kill("tool", "github__*"),))
    assert ks.hit("a", "github__create_issue", None, None) is not None
    assert ks.hit("a", "slack__post", None, None) is None
    everything = KillSet((_kill("all"),))
    assert everything.hit("anyone", "anything", None, None) is not None
    assert not KillSet()


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("tenant", "x", "unknown kill scope"),
        ("agent", "", "needs a name"),
        ("agent", None, "needs a name"),
        ("tool", "*", "use the 'all' scope"),
        ("all", "x", "takes no value"),
        ("user", "a\nb", "needs a name"),
    ],
)
def test_bad_kill_scopes_are_refused(kind: str, value: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        KillScope.of(kind, value)


def test_kill_scope_text() -> None:
    assert str(KillScope.of("all")) == "everything" and KillScope.of("all").value == ALL
    assert str(KillScope.of("tool", "x")) == "tool=x"


# -- the limits: section -----------------------------------------------------------------------

HEAD = "version: 1\nrules: [{id: a, effect: allow}]\n"


def limits(text: str) -> object:
    return policy_from_text(HEAD + textwrap.dedent(text), "p.yaml").spec.limit_set


def error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        limits(text)
    return info.value


def test_full_section_parses() -> None:
    ls = limits(
        """
        limits:
          rate:
            - {id: r, per: tool, tool: send_email, limit: 10, window: 60s, burst: 20}
          budgets:
            - {id: b, per: agent, calls: 5, tokens: 1000, cost: 2.50, window: 1d}
          breakers:
            - {id: up, tool: "up__*", per: tool, failure_rate: 0.25, slow: 2s, open_for: 10s}
          loop: {max_repeats: 3}
        """
    )
    rate = ls.rates[0]  # type: ignore[attr-defined]
    assert (rate.limit, rate.window_ns, rate.burst, rate.select.tools) == (
        10,
        60 * S,
        20,
        ("send_email",),
    )
    assert rate.describe() == "10 per 60s, bursts of 20"
    budget = ls.budgets[0]  # type: ignore[attr-defined]
    assert (budget.calls, budget.tokens, budget.cost_micros, budget.window_ns) == (
        5,
        1000,
        2_500_000,
        86400 * S,
    )
    breaker = ls.breakers[0]  # type: ignore[attr-defined]
    assert (breaker.per, breaker.failure_rate, breaker.slow_ns, breaker.open_ns) == (
        "tool",
        0.25,
        2 * S,
        10 * S,
    )
    assert breaker.min_calls == 10 and breaker.probes == 1  # defaults
    assert ls.loop.max_repeats == 3  # type: ignore[attr-defined]


def test_no_section_means_no_limits() -> None:
    assert not limits("")


def test_limits_change_the_policy_version() -> None:
    a = policy_from_text(HEAD)
    b = policy_from_text(HEAD + "limits: {loop: {max_repeats: 3}}\n")
    assert a.version != b.version


@pytest.mark.parametrize(
    ("text", "code", "line", "field", "message"),
    [
        ("limits: []", "policy.type", 3, "limits", "expected a mapping"),
        ("limits: {rates: []}", "policy.unknown_key", 3, "limits.rates", "unknown key"),
        (
            "limits:\n  rate:\n    - {per: tool, limit: 1, window: 1s}",
            "policy.missing_key",
            5,
            "limits.rate[0]",
            "needs 'id'",
        ),
        (
            "limits:\n  rate:\n    - {id: r, per: tenant, limit: 1, window: 1s}",
            "policy.type",
            5,
            "limits.rate[0].per",
            "'per' is one of",
        ),
        (
            "limits:\n  rate:\n    - {id: r, limit: 0, window: 1s}",
            "policy.type",
            5,
            "limits.rate[0].limit",
            "whole number",
        ),
        (
            "limits:\n  rate:\n    - {id: r, limit: 1, window: soon}",
            "policy.type",
            5,
            "limits.rate[0].window",
            "expected a duration",
        ),
        (
            "limits:\n  rate:\n    - {id: r, limit: 1}",
            "policy.missing_key",
            5,
            "limits.rate[0]",
            "needs 'window'",
        ),
        (
            "limits:\n  rate:\n    - {id: r, limit: 1, window: 1s}\n"
            "    - {id: r, limit: 2, window: 1s}",
            "policy.duplicate_limit",
            6,
            "limits.rate[1].id",
            "already used",
        ),
        (
            "limits:\n  rate:\n    - {id: r, limit: 1, window: 1s, tool: [1]}",
            "policy.type",
            5,
            "limits.rate[0].tool[0]",
            "not a name",
        ),
        (
            "limits:\n  budgets:\n    - {id: b}",
            "policy.missing_key",
            5,
            "limits.budgets[0]",
            "calls, tokens or cost",
        ),
        (
            "limits:\n  budgets:\n    - {id: b, per: tool, calls: 1}",
            "policy.type",
            5,
            "limits.budgets[0].per",
            "'per' is one of",
        ),
        (
            "limits:\n  budgets:\n    - {id: b, cost: 0.0000001}",
            "policy.type",
            5,
            "limits.budgets[0].cost",
            "at most 6 decimals",
        ),
        (
            "limits:\n  budgets:\n    - {id: b, cost: -1}",
            "policy.type",
            5,
            "limits.budgets[0].cost",
            "positive",
        ),
        (
            "limits:\n  budgets:\n    - {id: b, calls: 1, tool: x}",
            "policy.unknown_key",
            5,
            "limits.budgets[0].tool",
            "unknown key",
        ),
        (
            "limits:\n  breakers:\n    - {id: k}",
            "policy.missing_key",
            5,
            "limits.breakers[0]",
            "needs 'tool'",
        ),
        (
            "limits:\n  breakers:\n    - {id: k, tool: t, failure_rate: 1.5}",
            "policy.type",
            5,
            "limits.breakers[0].failure_rate",
            "(0, 1]",
        ),
        (
            "limits:\n  breakers:\n    - {id: k, tool: t, open_for: 400d}",
            "policy.type",
            5,
            "limits.breakers[0].open_for",
            "at most 366d",
        ),
        (
            "limits:\n  loop: {max_repeats: true}",
            "policy.type",
            4,
            "limits.loop.max_repeats",
            "whole number",
        ),
        (
            "limits:\n  loop: {}",
            "policy.missing_key",
            4,
            "limits.loop",
            "needs 'max_repeats'",
        ),
    ],
)
def test_section_errors_name_file_line_and_field(
    text: str, code: str, line: int, field: str, message: str
) -> None:
    exc = error(text)
    assert (exc.code, exc.source, exc.line, exc.field) == (code, "p.yaml", line, field)
    assert message in exc.reason


def test_loop_may_be_given_once_across_files(tmp_path: object) -> None:
    from pathlib import Path

    from ringfence.core.policy.load import load_policy

    folder = Path(str(tmp_path))
    (folder / "a.yaml").write_text(HEAD + "limits: {loop: {max_repeats: 3}}\n")
    (folder / "b.yaml").write_text(
        "version: 1\nrules: [{id: b, effect: allow}]\nlimits: {loop: {max_repeats: 4}}\n"
    )
    with pytest.raises(PolicyError, match="more than one file"):
        load_policy(folder)

"""Per-decision cost of the kill switch and the limits, beside the core decision.

    .venv/bin/python bench/controls.py [--quick] [--json bench/results/controls.json]

``Controls.check`` over the embedded SQLite controls store (a temporary folder), timed with
the same harness as the core decision (``harness.measure``: each call timed alone, timer
overhead subtracted, GC off while sampling).  Nothing trips unless the case says so:

- ``kill switch only``: no limits; the store's generation word is read, nothing is killed;
- ``kill switch, a kill in force elsewhere``: one agent is killed, the checked one is not;
- ``+ 1 rate limit`` / ``+ 4 rate limits`` (per agent, session, tool, user): buckets of
  10^9 per second, so every lease is full-size (4,096 tokens) and each 4,096th call per bucket
  goes to the store — that renewal is in the mean and the high percentiles;
- ``everything``: 4 rate limits, a call budget, a token budget, a breaker and the loop limit;
- ``near the limit``: a bucket of 10 per hour per agent, i.e. fewer than 16 tokens, so every
  call leases one token from SQLite (what a low limit costs while it still allows);
- ``tripped``: the bucket is empty (answered from the process's memory of it);
- ``Guard.check`` without and with the kill switch (decision + durable audit record),
  once the Guard takes ``controls=``.

The core decision is ``Policy.evaluate`` on the workload of ``ours.py`` (1,000 rules, the
``match`` probe), measured in the same run.  Every case's answers are checked first.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ringfence  # noqa: E402
from harness import measure  # noqa: E402
from ours import policy_text  # noqa: E402
from ringfence.core.action import Action  # noqa: E402
from ringfence.core.killswitch import KillScope  # noqa: E402
from ringfence.runtime.controls import open_controls  # noqa: E402
from ringfence.runtime.sessions import Sessions  # noqa: E402
from workload import probes  # noqa: E402

HEAD = "version: 1\nrules: [{id: a, effect: allow}]\n"
FOUR = """
limits:
  rate:
    - {id: per-agent, per: agent, limit: 1000000000, window: 1s}
    - {id: per-session, per: session, limit: 1000000000, window: 1s}
    - {id: per-tool, per: tool, limit: 1000000000, window: 1s}
    - {id: per-user, per: user, limit: 1000000000, window: 1s}
"""
CASES: list[tuple[str, str, bool]] = [
    ("kill switch only", "", False),
    ("kill switch, a kill in force elsewhere", "", True),
    (
        "+ 1 rate limit (per tool)",
        "limits: {rate: [{id: t, per: tool, limit: 1000000000, window: 1s}]}",
        False,
    ),
    ("+ 4 rate limits (agent, session, tool, user)", FOUR, False),
    (
        "everything (4 rates, 2 budgets, breaker, loop)",
        FOUR
        + """
  budgets:
    - {id: calls, per: session, calls: 1000000000}
    - {id: spend, per: agent, tokens: 1000000000, cost: 1000}
  breakers:
    - {id: up, tool: "*", min_calls: 10}
  loop: {max_repeats: 1000000000}
""",
        False,
    ),
]
NEAR = "limits: {rate: [{id: low, per: agent, limit: 10, window: 1h}]}"


def _action(sessions: Sessions) -> Action:
    action = Action(
        kind="tool_call",
        tool="send_email",
        args={"to": "bob@example.com"},
        agent="bot",
        user="alice",
        session="s1",
    )
    return sessions.prepare(action)


def core_decision(samples: int) -> dict[str, float]:
    """Policy.evaluate at 1,000 rules, the match probe (as in ours.py)."""
    policy = ringfence.policy_from_text(policy_text(1000))
    probe = next(p for p in probes(1000) if p.name == "match")
    action = Action(kind="tool_call", tool=probe.tool, args=probe.args)
    assert policy.evaluate(action).effect.value == probe.expected
    return measure(lambda: policy.evaluate(action, "d-1"), n=samples)


def controls_cases(samples: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    sessions = Sessions()
    action = _action(sessions)
    clock = time.time_ns
    for name, text, kill_elsewhere in CASES:
        with tempfile.TemporaryDirectory() as folder:
            limits = ringfence.policy_from_text(HEAD + text).spec.limit_set
            controls = open_controls(folder, limits)
            if kill_elsewhere:
                controls.kill(KillScope.of("agent", "someone-else"), "bench", "bench")
            for _ in range(100):
                assert controls.check(action, clock()) is None, name
            check = controls.check
            out[name] = measure(lambda c=check: c(action, clock()), n=samples)
            controls.close()
    with tempfile.TemporaryDirectory() as folder:
        limits = ringfence.policy_from_text(HEAD + NEAR).spec.limit_set
        controls = open_controls(folder, limits, lease_ns=1)
        agents = iter(range(10**9))

        def near() -> object:
            # a fresh agent each call: its bucket holds 10 tokens, so one is leased per call
            a = Action(kind="tool_call", tool="t", agent=f"a{next(agents)}")
            return controls.check(a, clock())

        assert near() is None
        out["near the limit (< 16 tokens: one store write per call)"] = measure(
            near, n=max(samples // 10, 1000), warmup=200
        )
        tripped = Action(kind="tool_call", tool="t", agent="tripped")
        while controls.check(tripped, clock()) is None:
            pass
        assert controls.check(tripped, clock()) is not None
        controls.close()
    with tempfile.TemporaryDirectory() as folder:
        limits = ringfence.policy_from_text(HEAD + NEAR).spec.limit_set
        controls = open_controls(folder, limits)
        tripped = Action(kind="tool_call", tool="t", agent="tripped")
        while controls.check(tripped, clock()) is None:
            pass
        out["tripped: rate limit denies"] = measure(
            lambda: controls.check(tripped, clock()), n=samples
        )
        controls.close()
    return out


def guarded(samples: int) -> dict[str, dict[str, float]]:
    """Guard.check (decision + durable audit record) without and with controls (kill switch
    only, nothing killed) — once the Guard takes ``controls=``; empty before."""
    import inspect

    from ringfence.runtime.guard import Guard

    if "controls" not in inspect.signature(Guard).parameters:
        return {}
    policy = ringfence.policy_from_text(policy_text(2))
    out = {}
    for name, options in (
        ("Guard.check, no controls", {"controls": None}),
        ("Guard.check, kill switch", {}),
    ):
        with tempfile.TemporaryDirectory() as folder:
            guard = ringfence.open_guard(policy, data_dir=folder, **options)
            action = guard.action("tool_0", {"amount": 5, "path": "/data/report.csv"})
            assert guard.check(action).effect.value == "allow"
            out[name] = measure(lambda g=guard, a=action: g.check(a), n=samples)
            guard.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "controls.json")
    args = parser.parse_args()
    samples = 5_000 if args.quick else 50_000
    core = core_decision(samples)
    cases = controls_cases(samples)
    cases.update(guarded(samples))
    lines = [
        f"controls benchmark — {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
        f"Python {platform.python_version()}, {samples} samples",
        "",
        f"{'case':<58} {'p50 µs':>8} {'p99 µs':>8} {'mean µs':>8}",
        f"{'core decision (Policy.evaluate, 1,000 rules, match)':<58} "
        f"{core['p50_us']:>8.2f} {core['p99_us']:>8.2f} {core['mean_us']:>8.2f}",
    ]
    for name, m in cases.items():
        lines.append(f"{name:<58} {m['p50_us']:>8.2f} {m['p99_us']:>8.2f} {m['mean_us']:>8.2f}")
    text = "\n".join(lines)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"core_decision": core, "controls": cases}, indent=2))
    args.json.with_suffix(".txt").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""FakeSandbox, the Sandbox port's fake: scripted egress reports, given only where the real
sandbox would run an egress proxy (a network allowlist, in the bwrap tier), and recorded by
run_guarded like the real ones.  Where no proxy would run, nothing scripted leaks through."""

from __future__ import annotations

import pytest

from ringfence.errors import SandboxUnavailable
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.sandbox import (
    Egress,
    EgressRecord,
    EgressReport,
    SandboxExecutor,
    SandboxProfile,
    Tier,
    run_guarded,
)
from ringfence.runtime.sandbox.egress import parse_host_rule
from ringfence.testing.sandbox import FakeRun, FakeSandbox

from ._support import GuardFactory, records_of

NET = Egress((parse_host_rule("pypi.org"), parse_host_rule("*.example.com")))
FETCH = SandboxProfile(name="fetch", network=NET)
OFFLINE = SandboxProfile(name="offline")
ALLOWED = EgressRecord(
    "CONNECT", "pypi.org:443", True, 200, "allowed by pypi.org", "pypi.org", "151.101.0.223"
)
REFUSED = EgressRecord("CONNECT", "evil.test:443", False, 403, "evil.test is not allowed")
POLICY = """\
version: 1
tools:
  fetch:
    args: {type: object, properties: {url: {type: string}}}
rules:
  - {id: fetch.sandboxed, effect: allow, tool: fetch, sandbox: fetch}
"""


def test_a_scripted_report_is_the_results_egress() -> None:
    report = EgressReport((ALLOWED, REFUSED), dropped=2)
    fake = FakeSandbox(egress=report)
    result = fake.run(FETCH, argv=["pip", "download", "x"])
    assert result.egress == report
    assert result.egress is not None and result.egress.refused == (REFUSED,)
    assert result.summary()["egress"] == report.summary()
    assert fake.runs[0].network == NET


def test_a_script_function_sees_the_run_and_its_allowlist() -> None:
    seen: list[FakeRun] = []

    def proxy(run: FakeRun) -> EgressReport:
        seen.append(run)
        assert run.network is not None
        records = []
        for host in ("pypi.org", "api.example.com", "evil.test"):
            rule = run.network.match(host, 443)
            ok = rule is not None
            why = f"allowed by {rule}" if ok else f"{host} is not allowed"
            records.append(
                EgressRecord("CONNECT", f"{host}:443", ok, 200 if ok else 403, why, str(rule))
            )
        return EgressReport(tuple(records))

    fake = FakeSandbox(egress=proxy)
    result = fake.run(FETCH, code="fetch()")
    assert seen == fake.runs and seen[0].code == "fetch()"
    assert result.egress is not None
    assert [c.allowed for c in result.egress.connections] == [True, True, False]
    assert [c.target for c in result.egress.refused] == ["evil.test:443"]


def test_an_allowlist_without_a_script_reports_no_connections() -> None:
    assert FakeSandbox().run(FETCH, argv=["true"]).egress == EgressReport()


def test_no_allowlist_means_no_report_whatever_is_scripted() -> None:
    called: list[FakeRun] = []

    def proxy(run: FakeRun) -> EgressReport:
        called.append(run)
        return EgressReport((ALLOWED,))

    assert FakeSandbox(egress=EgressReport((ALLOWED,))).run(OFFLINE, argv=["x"]).egress is None
    assert FakeSandbox(egress=proxy).run(OFFLINE, argv=["x"]).egress is None
    assert called == []  # no proxy would run: the script is not asked
    assert "egress" not in FakeSandbox().run(OFFLINE, argv=["x"]).summary()


def test_a_fallback_to_the_process_tier_has_no_network_and_no_report() -> None:
    weak = SandboxProfile(name="weak", network=NET, allow_weaker=True)
    fake = FakeSandbox(unavailable=frozenset({Tier.BWRAP}), egress=EgressReport((ALLOWED,)))
    result = fake.run(weak, argv=["curl", "https://pypi.org"])
    assert result.tier_used is Tier.PROCESS
    assert result.egress is None


def test_an_allowlist_on_the_process_tier_is_refused_like_the_real_one() -> None:
    fake = FakeSandbox(egress=EgressReport((ALLOWED,)))
    profile = SandboxProfile(name="p", tier=Tier.PROCESS, network=NET)
    with pytest.raises(SandboxUnavailable, match="network"):
        fake.run(profile, argv=["true"])
    assert fake.runs == []


def test_an_unavailable_tier_still_fails_closed_with_egress_scripted() -> None:
    fake = FakeSandbox(unavailable=frozenset({Tier.BWRAP}), egress=EgressReport((ALLOWED,)))
    with pytest.raises(SandboxUnavailable):
        fake.run(FETCH, argv=["true"])
    assert fake.runs == []


def test_run_guarded_records_scripted_egress(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(POLICY)
    fake = FakeSandbox(egress=EgressReport((ALLOWED, REFUSED)))
    executor = SandboxExecutor(fake, {"fetch": FETCH})
    action = guard.action("fetch", {"url": "https://pypi.org"})
    result = run_guarded(guard, action, guard.check(action), executor, argv=["fetch"])
    assert result.egress is not None
    (outcome,) = records_of(memory_log, "outcome")
    recorded = outcome["content"]["sandbox"]["egress"]
    assert [c["allowed"] for c in recorded["connections"]] == [True, False]
    assert recorded["connections"][1]["reason"] == "evil.test is not allowed"
    assert recorded["dropped"] == 0


def test_run_guarded_records_no_egress_when_no_proxy_would_run(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(POLICY)
    fake = FakeSandbox(egress=EgressReport((ALLOWED,)))
    executor = SandboxExecutor(fake, {"fetch": OFFLINE})
    action = guard.action("fetch", {"url": "https://pypi.org"})
    run_guarded(guard, action, guard.check(action), executor, argv=["fetch"])
    (outcome,) = records_of(memory_log, "outcome")
    assert "egress" not in outcome["content"]["sandbox"]

"""Sandbox profiles, tier selection (fail closed, logged weaker tier), availability detection,
the ``sandbox:`` obligation, and run_guarded's records.  No timings; no sandbox is required
except where a test says it probes the machine."""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from pathlib import Path

import pytest

import ringfence
from ringfence.core.action import Action
from ringfence.core.decision import Decision, Effect, Obligations
from ringfence.errors import (
    ConfigError,
    DeniedError,
    PolicyError,
    SandboxError,
    SandboxUnavailable,
)
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.sandbox import (
    SANDBOX_RULE,
    Availability,
    LocalSandbox,
    SandboxExecutor,
    SandboxLimits,
    SandboxProfile,
    Tier,
    load_profiles,
    profiles_from_text,
    run_guarded,
    seccomp,
)
from ringfence.runtime.sandbox import local as local_mod
from ringfence.testing.sandbox import FakeSandbox

from ._support import GuardFactory, records_of

FULL = """\
sandbox:
  profiles:
    ci:
      tier: bwrap
      allow_weaker: true
      network: none
      read_only: [/usr, /etc]
      hide: [/etc/shadow]
      python: /usr/bin/python3
      env: {PYTHONDONTWRITEBYTECODE: "1"}
      limits:
        cpu_seconds: 5
        memory_bytes: 256MiB
        processes: 32
        file_size_bytes: 4096
        open_files: 32
        disk_bytes: 8MiB
        wall_seconds: 2.5
        output_bytes: 1KiB
    plain: {}
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        profiles_from_text(text, source="sb.yaml")
    return info.value


def _profile(body: str) -> str:
    return "sandbox:\n  profiles:\n    p:\n" + "".join(
        f"      {line}\n" for line in body.split("\n")
    )


# -- profiles ------------------------------------------------------------------------------


def test_full_profile_loads() -> None:
    profiles = profiles_from_text(FULL, source="sb.yaml")
    ci = profiles["ci"]
    assert ci.tier is Tier.BWRAP
    assert ci.allow_weaker is True
    assert ci.read_only == ("/usr", "/etc")
    assert ci.hide == ("/etc/shadow",)
    assert ci.env == (("PYTHONDONTWRITEBYTECODE", "1"),)
    assert ci.limits == SandboxLimits(
        cpu_seconds=5,
        memory_bytes=256 << 20,
        processes=32,
        file_size_bytes=4096,
        open_files=32,
        disk_bytes=8 << 20,
        wall_seconds=2.5,
        output_bytes=1024,
    )
    assert ci.source == "sb.yaml:3"


def test_empty_profile_gets_the_strict_defaults() -> None:
    plain = profiles_from_text(FULL, source="sb.yaml")["plain"]
    assert plain.tier is Tier.BWRAP
    assert plain.allow_weaker is False
    assert plain.network is None
    assert plain.workdir is None
    assert "/etc/shadow" in plain.hide
    assert plain.limits == SandboxLimits()


def test_section_may_live_in_a_larger_file() -> None:
    text = "policy: p.yaml\nservers: {}\n" + FULL
    assert set(profiles_from_text(text)) == {"ci", "plain"}


def test_relative_workdir_starts_at_the_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "sb.yaml"
    path.write_text(_profile("workdir: repo"))
    assert load_profiles(path)["p"].workdir == str(tmp_path.resolve() / "repo")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_profiles(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("colour: red", 4, "sandbox.profiles.p.colour", "unknown key"),
        ("tier: docker", 4, "sandbox.profiles.p.tier", "bwrap, process"),
        ("allow_weaker: yes please", 4, "sandbox.profiles.p.allow_weaker", "true or false"),
        ("network: full", 4, "sandbox.profiles.p.network", "'none'"),
        ("read_only: [usr]", 4, "sandbox.profiles.p.read_only[0]", "absolute"),
        ("read_only: [/]", 4, "sandbox.profiles.p.read_only[0]", "every host file"),
        ("read_only: [/usr/../root]", 4, "sandbox.profiles.p.read_only[0]", "'..'"),
        ("read_only: /usr", 4, "sandbox.profiles.p.read_only", "list of paths"),
        ("env: {HOME: /root}", 4, "sandbox.profiles.p.env.HOME", "work directory"),
        ("env: {1X: a}", 4, "sandbox.profiles.p.env.1X", "not an environment"),
        ("env: {X: 1}", 4, "sandbox.profiles.p.env.X", "expected a string"),
        ("python: ''", 4, "sandbox.profiles.p.python", "interpreter"),
        ("limits: {cpu_seconds: 0}", 4, "sandbox.profiles.p.limits.cpu_seconds", "between"),
        ("limits: {processes: 1.5}", 4, "sandbox.profiles.p.limits.processes", "number"),
        ("limits: {processes: true}", 4, "sandbox.profiles.p.limits.processes", "number"),
        ("limits: {memory_bytes: 1MB}", 4, "sandbox.profiles.p.limits.memory_bytes", "size"),
        ("limits: {memory_bytes: 1KiB}", 4, "sandbox.profiles.p.limits.memory_bytes", "between"),
        ("limits: {forks: 3}", 4, "sandbox.profiles.p.limits.forks", "unknown key"),
        ("limits:\n  cpu_seconds: 1\n  wall_seconds: x", 6, "limits.wall_seconds", "number"),
    ],
)
def test_profile_errors_name_file_line_and_field(
    body: str, line: int, field: str, message: str
) -> None:
    exc = _error(_profile(body))
    assert exc.source == "sb.yaml"
    assert exc.line == line
    assert exc.field is not None and exc.field.endswith(field)
    assert message in exc.reason


def test_a_bare_host_list_gets_a_hint() -> None:
    exc = _error(_profile("network: [pypi.org]"))
    assert exc.code == "config.sandbox.network"
    assert exc.field == "sandbox.profiles.p.network"
    assert "allow:" in exc.reason


@pytest.mark.parametrize("name", ["none", "Host", "disabled"])
def test_no_sandbox_words_cannot_name_a_profile(name: str) -> None:
    exc = _error(f"sandbox:\n  profiles:\n    {name}: {{}}\n")
    assert "no sandbox" in exc.reason
    assert exc.line == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("other: 1\n", "no 'sandbox:' section"),
        ("sandbox:\n  profiles: {}\n", "at least one profile"),
        ("sandbox:\n  profiles: []\n", "expected a mapping"),
        ("sandbox:\n  defaults: {}\n", "unknown key"),
        ("sandbox:\n  profiles:\n    'bad name': {}\n", "not a profile name"),
    ],
)
def test_file_level_errors(text: str, message: str) -> None:
    assert message in _error(text).reason


def test_yaml_errors_are_config_errors_with_a_line() -> None:
    exc = _error("sandbox:\n  profiles:\n    a: {}\n    a: {}\n")
    assert exc.code == "config.yaml"
    assert exc.line == 4


# -- tier selection: fail closed, weaker tier logged ------------------------------------------


def _sandbox(monkeypatch: pytest.MonkeyPatch, *available: Tier) -> LocalSandbox:
    def probe(self: LocalSandbox, tier: Tier) -> Availability:
        ok = tier in available
        return Availability(tier, ok, "ok" if ok else f"{tier} missing in this test")

    monkeypatch.setattr(LocalSandbox, "_probe", probe)
    return LocalSandbox()


def test_unavailable_tier_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    box = _sandbox(monkeypatch, Tier.PROCESS)
    profile = SandboxProfile(name="strict", tier=Tier.BWRAP)
    with pytest.raises(SandboxUnavailable) as info:
        box.tier_for(profile)
    assert info.value.code == "sandbox.unavailable"
    assert "'strict'" in info.value.message
    assert "bwrap missing in this test" in info.value.message
    assert "does not allow a weaker tier" in info.value.message
    with pytest.raises(SandboxUnavailable):
        box.run(profile, argv=["true"])


def test_weaker_tier_is_used_only_when_allowed_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    box = _sandbox(monkeypatch, Tier.PROCESS)
    profile = SandboxProfile(name="lenient", tier=Tier.BWRAP, allow_weaker=True)
    with caplog.at_level(logging.WARNING, logger="ringfence.sandbox"):
        assert box.tier_for(profile) is Tier.PROCESS
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "'lenient'" in text and "WEAKER process" in text and "bwrap" in text


def test_weaker_tier_also_unavailable_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    box = _sandbox(monkeypatch)
    profile = SandboxProfile(name="lenient", tier=Tier.BWRAP, allow_weaker=True)
    with pytest.raises(SandboxUnavailable, match="neither the bwrap tier"):
        box.tier_for(profile)


def test_process_tier_has_nothing_weaker(monkeypatch: pytest.MonkeyPatch) -> None:
    box = _sandbox(monkeypatch, Tier.BWRAP)
    profile = SandboxProfile(name="p", tier=Tier.PROCESS, allow_weaker=True)
    with pytest.raises(SandboxUnavailable, match="process tier"):
        box.tier_for(profile)


def test_available_tier_is_used_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    box = _sandbox(monkeypatch, Tier.BWRAP, Tier.PROCESS)
    with caplog.at_level(logging.WARNING):
        assert box.tier_for(SandboxProfile(name="p", allow_weaker=True)) is Tier.BWRAP
    assert not caplog.records


def test_bad_requests_are_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    box = _sandbox(monkeypatch)  # nothing available: input errors must come first
    profile = SandboxProfile(name="p")
    for kwargs in ({}, {"argv": ["true"], "code": "1"}, {"argv": []}, {"code": "a\0b"}):
        with pytest.raises(SandboxError) as info:
            box.run(profile, **kwargs)  # type: ignore[arg-type]
        assert info.value.code == "sandbox.input"
    for env in ({"HOME": "/root"}, {"A=B": "x"}, {"X": "a\0"}):
        with pytest.raises(SandboxError, match=r"environment|work directory"):
            box.run(profile, argv=["true"], env=env)


# -- availability detection -----------------------------------------------------------------


def test_missing_bwrap_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod.shutil, "which", lambda name: None)
    found = LocalSandbox().availability(Tier.BWRAP)
    assert not found.available
    assert "bubblewrap" in found.detail


def test_bwrap_that_cannot_make_namespaces_is_detected() -> None:
    folder = tempfile.mkdtemp()
    try:
        os.chmod(folder, 0o755)  # the probe may run as nobody
        fake = Path(folder, "bwrap")
        fake.write_text(
            "#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"
        )
        fake.chmod(0o755)
        found = LocalSandbox(bwrap=str(fake)).availability(Tier.BWRAP)
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    assert not found.available
    assert "failed" in found.detail


def test_missing_landlock_disables_the_process_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod.landlock, "abi", lambda: 0)
    found = LocalSandbox().availability(Tier.PROCESS)
    assert not found.available
    assert "Landlock" in found.detail


def test_unknown_architecture_disables_both_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod.seccomp, "filter_arch", lambda machine=None: None)
    box = LocalSandbox()
    for tier in Tier:
        found = box.availability(tier)
        assert not found.available
        assert "seccomp" in found.detail


def test_probes_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Tier] = []

    def probe(self: LocalSandbox, tier: Tier) -> Availability:
        calls.append(tier)
        return Availability(tier, False, "no")

    monkeypatch.setattr(LocalSandbox, "_probe", probe)
    box = LocalSandbox()
    box.availability(Tier.BWRAP)
    box.availability(Tier.BWRAP)
    assert calls == [Tier.BWRAP]


# -- the seccomp program --------------------------------------------------------------------


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_program_checks_the_architecture_first(machine: str) -> None:
    code = seccomp.build_filter(no_sockets=True, pin_process_group=True, machine=machine)
    assert len(code) % 8 == 0 and len(code) // 8 < 256
    first = struct.unpack("=HBBI", code[:8])
    assert first == (0x20, 0, 0, 4)  # load seccomp_data.arch
    last = struct.unpack("=HBBI", code[-8:])
    assert last == (0x06, 0, 0, 0x7FFF0000)  # everything not refused is allowed


def test_seccomp_variants_differ() -> None:
    process = seccomp.build_filter(no_sockets=True, pin_process_group=True, machine="x86_64")
    bwrap = seccomp.build_filter(no_sockets=False, pin_process_group=False, machine="x86_64")
    assert process != bwrap


def test_seccomp_unknown_architecture() -> None:
    assert seccomp.filter_arch("riscv64") is None
    with pytest.raises(seccomp.SeccompUnsupported):
        seccomp.build_filter(no_sockets=True, pin_process_group=True, machine="riscv64")


# -- the policy obligation ------------------------------------------------------------------

POLICY = """\
version: 1
name: code
tools:
  run_python:
    args:
      type: object
      properties: {code: {type: string}}
      additionalProperties: false
rules:
  - id: code.sandboxed
    effect: allow
    tool: run_python
    sandbox: ci
  - id: code.also
    effect: allow
    tool: run_python
    sandbox: other
"""


def _action(**context: str) -> Action:
    return Action(kind="tool_call", tool="run_python", args={"code": "1"}, context=dict(context))


def test_rule_sandbox_becomes_an_obligation() -> None:
    policy = ringfence.policy_from_text(POLICY)
    decision = policy.evaluate(_action())
    assert decision.allowed
    # Two allow rules name profiles: the first in file order decides.
    assert decision.obligations.sandbox == "ci"
    assert decision.obligations
    assert Obligations(sandbox="x")
    assert not Obligations()


def test_single_rule_obligation() -> None:
    text = POLICY.split("  - id: code.also", maxsplit=1)[0]
    decision = ringfence.policy_from_text(text).evaluate(_action())
    assert decision.obligations == Obligations(sandbox="ci")


@pytest.mark.parametrize(
    ("value", "message"), [("none", "not a sandbox profile"), ("'a b'", "not a valid name")]
)
def test_rule_sandbox_must_name_a_profile(value: str, message: str) -> None:
    text = POLICY.replace("sandbox: ci", f"sandbox: {value}")
    with pytest.raises(PolicyError) as info:
        ringfence.policy_from_text(text)
    assert message in info.value.reason
    assert info.value.field == "rules[0].sandbox"


# -- the executor ---------------------------------------------------------------------------

PROFILES = {
    "ci": SandboxProfile(name="ci"),
    "weak": SandboxProfile(name="weak", allow_weaker=True),
    "other": SandboxProfile(name="other", tier=Tier.PROCESS),
}


def _decision(sandbox: str | None = None, effect: Effect = Effect.ALLOW) -> Decision:
    return Decision(
        effect=effect,
        rules=("r",),
        reasons=("because",),
        policy_version="v",
        decision_id="d-0",
        obligations=Obligations(sandbox=sandbox),
    )


def test_profile_precedence_policy_then_caller_then_default() -> None:
    ex = SandboxExecutor(FakeSandbox(), PROFILES, default="other")
    assert ex.profile_for(_action(sandbox="weak"), _decision("ci")).name == "ci"
    assert ex.profile_for(_action(sandbox="weak"), _decision()).name == "weak"
    assert ex.profile_for(_action(), _decision()).name == "other"
    strict = SandboxExecutor(FakeSandbox(), PROFILES, default="other", caller_may_name=False)
    assert strict.profile_for(_action(sandbox="weak"), _decision()).name == "other"


def test_no_or_unknown_profile_is_an_error() -> None:
    ex = SandboxExecutor(FakeSandbox(), PROFILES)
    with pytest.raises(SandboxError) as info:
        ex.profile_for(_action(), _decision())
    assert info.value.code == "sandbox.no_profile"
    with pytest.raises(SandboxError) as info:
        ex.profile_for(_action(sandbox="host-ish"), _decision())
    assert info.value.code == "sandbox.unknown_profile"
    assert "named by the caller" in info.value.message


def test_default_must_be_defined() -> None:
    with pytest.raises(ConfigError, match="default sandbox profile 'nope'"):
        SandboxExecutor(FakeSandbox(), PROFILES, default="nope")


def test_check_policy_names_the_rule_with_an_unknown_profile() -> None:
    policy = ringfence.policy_from_text(POLICY.replace("sandbox: other", "sandbox: typo"))
    ex = SandboxExecutor(FakeSandbox(), PROFILES)
    with pytest.raises(ConfigError) as info:
        ex.check_policy(policy)
    assert info.value.field == "rules[1].sandbox"
    assert info.value.line == 14  # the rule's first line
    assert "'typo'" in info.value.reason
    SandboxExecutor(FakeSandbox(), PROFILES).check_policy(ringfence.policy_from_text(POLICY))


def test_refusal_reason_for_a_guard() -> None:
    ex = SandboxExecutor(FakeSandbox(unavailable=frozenset({Tier.BWRAP})), PROFILES)
    reason = ex.refusal(_action(), _decision("ci"))
    assert reason is not None and reason.startswith("sandbox.unavailable: ")
    assert ex.refusal(_action(), _decision("weak")) is None
    assert ex.refusal(_action(), _decision()) is not None  # no profile at all


def test_executor_runs_only_allowed_decisions() -> None:
    fake = FakeSandbox()
    ex = SandboxExecutor(fake, PROFILES)
    with pytest.raises(DeniedError):
        ex.run(_action(), _decision("ci", Effect.REQUIRE_APPROVAL), argv=["true"])
    ex.run(_action(), _decision("ci"), argv=["true"], env={"A": "b"})
    assert [(r.profile, r.argv, r.env) for r in fake.runs] == [("ci", ("true",), {"A": "b"})]


# -- run_guarded ----------------------------------------------------------------------------

GUARD_POLICY = POLICY.split("  - id: code.also", maxsplit=1)[0]


def test_run_guarded_records_the_tier_used(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(GUARD_POLICY)
    fake = FakeSandbox(unavailable=frozenset({Tier.BWRAP}), answer=lambda run: (0, b"hi\n", b""))
    profiles = {"ci": SandboxProfile(name="ci", allow_weaker=True)}
    action = guard.action("run_python", {"code": "print('hi')"})
    decision = guard.check(action)
    result = run_guarded(guard, action, decision, SandboxExecutor(fake, profiles), code="1")
    assert result.stdout == b"hi\n"
    assert result.tier_used is Tier.PROCESS
    (outcome,) = records_of(memory_log, "outcome")
    assert outcome["status"] == "ok"
    assert outcome["content"]["sandbox"]["tier"] == "process"
    assert outcome["content"]["sandbox"]["profile"] == "ci"
    (recorded,) = records_of(memory_log, "decision")
    assert recorded["obligations"]["sandbox"] == "ci"


def test_run_guarded_denies_when_the_sandbox_is_unavailable(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(GUARD_POLICY)
    fake = FakeSandbox(unavailable=frozenset({Tier.BWRAP}))
    ex = SandboxExecutor(fake, {"ci": SandboxProfile(name="ci")})
    action = guard.action("run_python", {"code": "1"})
    decision = guard.check(action)
    assert decision.allowed
    with pytest.raises(DeniedError) as info:
        run_guarded(guard, action, decision, ex, code="1")
    denial = info.value.decision
    assert denial.effect is Effect.DENY
    assert denial.rules == (SANDBOX_RULE,)
    assert denial.reasons[0].startswith("sandbox.unavailable: ")
    assert fake.runs == []
    decisions = records_of(memory_log, "decision")
    assert [d["effect"] for d in decisions] == ["allow", "deny"]
    assert decisions[1]["rules"] == [SANDBOX_RULE]
    assert records_of(memory_log, "outcome") == []


def test_run_guarded_does_not_run_a_denied_action(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(GUARD_POLICY)
    fake = FakeSandbox()
    action = guard.action("other_tool", {})
    decision = guard.check(action)
    with pytest.raises(DeniedError):
        run_guarded(guard, action, decision, SandboxExecutor(fake, PROFILES), argv=["true"])
    assert fake.runs == []


def test_run_guarded_records_a_sandbox_failure(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(GUARD_POLICY)

    def explode(run: object) -> tuple[int, bytes, bytes]:
        raise SandboxError("bwrap could not be set up")

    ex = SandboxExecutor(FakeSandbox(answer=explode), PROFILES)
    action = guard.action("run_python", {"code": "1"})
    with pytest.raises(SandboxError):
        run_guarded(guard, action, guard.check(action), ex, code="1")
    (outcome,) = records_of(memory_log, "outcome")
    assert outcome["status"] == "error"
    assert "bwrap could not be set up" in outcome["error"]


def test_public_names_are_pinned() -> None:
    from ringfence.runtime import sandbox

    assert sandbox.__all__ == sorted(sandbox.__all__, key=lambda n: (not n.isupper(), n))
    assert set(sandbox.__all__) == {
        "SANDBOX_RULE",
        "Availability",
        "Egress",
        "EgressRecord",
        "EgressReport",
        "HostRule",
        "LocalSandbox",
        "SandboxExecutor",
        "SandboxLimits",
        "SandboxProfile",
        "SandboxResult",
        "Tier",
        "load_profiles",
        "profiles_from_text",
        "run_guarded",
    }


def test_workdir_must_exist_in_the_process_tier() -> None:
    if not LocalSandbox().availability(Tier.PROCESS).available:
        pytest.skip("the process tier is not available here")
    profile = SandboxProfile(name="p", tier=Tier.PROCESS, workdir="/nonexistent/ringfence")
    with pytest.raises(SandboxError, match="does not exist"):
        LocalSandbox().run(profile, argv=["true"])

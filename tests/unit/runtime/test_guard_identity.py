"""The Guard with a Verifier: every check verifies the credential; refusals are recorded.

Each deny is checked three ways: the decision (effect, rule, coded reason), nothing ran, and
the audit record (rule, reason, and who it names).  Then claims in policies, the wrapper's
outcome records, and rotation and revocation in the middle of a running workflow.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nacl.signing import SigningKey

from ringfence import Action, DeniedError, Effect
from ringfence.core.identity.token import encode, parse
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard import IDENTITY_RULE
from ringfence.stores.identity import MemoryIdentityRegistry, SQLiteIdentityRegistry

from ._identity import World, world
from ._support import GuardFactory, records_of

POLICY = """
version: 1
tools:
  read_file:
    args: {type: object, properties: {path: {type: string}}, required: [path]}
    resources: {path: path}
  send_email:
    args: {type: object, properties: {to: {type: string}}, required: [to]}
    resources: {to: recipient}
rules:
  - {id: read, effect: allow, tool: read_file}
  - id: mail-for-alice
    effect: allow
    tool: send_email
    when: [{field: credential.user, eq: alice}, {field: credential.budgets.max_cost, le: 10}]
  - id: small-spenders-only
    effect: deny
    tool: send_email
    cel: "has(credential.budgets.max_cost) && credential.budgets.max_cost > 5"
  - {id: not-too-deep, effect: deny, when: [{field: credential.depth, gt: 1}]}
"""
MAIL = ("send_*", "read_*")
MAIL_SCOPE = ("path:/workspace/**", "recipient:*@example.com")


@pytest.fixture
def w() -> World:
    return world()


@pytest.fixture
def guard(make_guard: GuardFactory, w: World) -> Any:
    return make_guard(POLICY, verifier=w.verifier)


def read(path: str = "/workspace/a.txt") -> Action:
    return Action(kind="tool_call", tool="read_file", args={"path": path}, agent="claimed")


def last_decision(log: AuditLog) -> dict[str, Any]:
    return records_of(log, "decision")[-1]


def assert_identity_deny(guard: Any, log: AuditLog, credential: str | None, code: str) -> None:
    decision = guard.check(read(), credential)
    assert decision.effect is Effect.DENY
    assert decision.rules == (IDENTITY_RULE,)
    assert decision.reasons[0].startswith(f"{code}: "), decision.reasons
    record = last_decision(log)
    assert record["rules"] == [IDENTITY_RULE]
    assert record["reasons"] == list(decision.reasons)
    assert record["effect"] == "deny"
    assert record["decision_id"] == decision.decision_id


class TestAllowed:
    def test_root_identity_is_recorded(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        decision = guard.check(read(), w.root())
        assert decision.effect is Effect.ALLOW
        record = last_decision(memory_log)
        assert record["agent"] == w.agent("planner")  # not the "claimed" agent
        assert record["delegation"] == []
        assert record["user"] == "alice"

    def test_delegation_chain_is_recorded(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        chain = w.authority.delegate(w.root(), "researcher", tools=("read_file",))
        assert guard.check(read(), chain).allowed
        record = last_decision(memory_log)
        assert record["agent"] == w.agent("researcher")
        assert record["delegation"] == [w.agent("planner")]

    def test_credential_from_the_context(self, guard: Any, w: World) -> None:
        with guard.context(credential=w.root()):
            assert guard.check(read()).allowed
        assert not guard.check(read()).allowed

    def test_the_token_is_not_in_the_context_repr(self, guard: Any, w: World) -> None:
        token = w.root()
        with guard.context(credential=token) as ctx:
            assert token not in repr(ctx)


class TestRefused:
    def test_missing(self, guard: Any, memory_log: AuditLog) -> None:
        assert_identity_deny(guard, memory_log, None, "credential.missing")
        assert last_decision(memory_log)["agent"] == "claimed"  # unverified: as presented

    def test_forged(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        claims = parse(w.root()).claims
        forged = encode(claims, SigningKey.generate(), parse(w.root()).kid)
        assert_identity_deny(guard, memory_log, forged, "credential.bad_signature")

    def test_expired(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        w.clock.advance(-3600)
        old = w.root(ttl_s=60)
        assert_identity_deny(guard, memory_log, old, "credential.expired")

    def test_not_yet_valid(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        w.clock.advance(3600)
        assert_identity_deny(guard, memory_log, w.root(), "credential.not_yet_valid")

    def test_wrong_audience(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        other = w.root(audience=("payments",))
        assert_identity_deny(guard, memory_log, other, "credential.wrong_audience")

    def test_tampered_claim(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        head, _, sig = w.root().split(".")
        wider = msgspec.structs.replace(parse(w.root()).claims, tools=("*",))
        body = encode(wider, SigningKey.generate(), "x")
        tampered = f"{head}.{body.split('.')[1]}.{sig}"
        assert_identity_deny(guard, memory_log, tampered, "credential.bad_signature")

    def test_replayed_after_revocation(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        token = w.root()
        assert guard.check(read(), token).allowed
        w.authority.revoke_credential(token, "leaked")
        assert_identity_deny(guard, memory_log, token, "credential.revoked")

    def test_revoked_agent(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        token = w.root()
        assert guard.check(read(), token).allowed
        w.authority.revoke_agent("planner")
        assert_identity_deny(guard, memory_log, token, "credential.agent_revoked")

    def test_widened_delegation(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        root = w.root(tools=("read_file",))
        planner_key = SigningKey(w.registry.private_key(w.authority.agent("planner").kid))
        forged = _forge_child(w, root, planner_key, tools=("read_file", "send_email"))
        assert_identity_deny(guard, memory_log, forged, "delegation.scope_widened")

    def test_unknown_parent(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        alone = w.authority.delegate(w.root(), "researcher").split("~")[1]
        assert_identity_deny(guard, memory_log, alone, "delegation.unknown_parent")

    def test_swapped_parent(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        a, b = w.root(), w.root(tools=("*",), resources=("*:**",))
        child = w.authority.delegate(a, "researcher").split("~")[1]
        assert_identity_deny(guard, memory_log, f"{b}~{child}", "delegation.parent_mismatch")

    def test_tool_outside_scope(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        action = Action(kind="tool_call", tool="send_email", args={"to": "x@example.com"})
        decision = guard.check(action, w.root())
        assert decision.reasons[0].startswith("credential.tool_not_in_scope: ")
        record = last_decision(memory_log)
        assert record["rules"] == [IDENTITY_RULE]
        assert record["agent"] == w.agent("planner")  # verified, then refused on scope

    def test_resource_outside_scope(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        decision = guard.check(read("/etc/passwd"), w.root())
        assert decision.reasons[0].startswith("credential.resource_not_in_scope: ")
        assert last_decision(memory_log)["resources"] == [{"type": "path", "value": "/etc/passwd"}]

    def test_budget(self, guard: Any, w: World, memory_log: AuditLog) -> None:
        token = w.root(budgets={"max_calls": 2})
        assert guard.check(read(), token).allowed
        assert guard.check(read(), token).allowed
        assert_identity_deny(guard, memory_log, token, "credential.budget_exhausted")

    def test_verifier_crash_is_a_deny(
        self, guard: Any, w: World, memory_log: AuditLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def boom(*a: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(w.verifier, "verify", boom)
        assert_identity_deny(guard, memory_log, w.root(), "credential.error")

    def test_nothing_runs(self, guard: Any) -> None:
        ran: list[str] = []

        @guard.protect
        def read_file(path: str) -> str:
            ran.append(path)
            return "data"

        with pytest.raises(DeniedError) as info:
            read_file("/workspace/a")
        assert info.value.decision.rules == (IDENTITY_RULE,)
        assert ran == []


def _forge_child(w: World, chain: str, key: Any, **over: Any) -> str:
    from ringfence.core.identity.token import confirmation, digest, thumbprint

    parent_text = chain.rsplit("~", 1)[-1]
    parent = parse(parent_text).claims
    public = next(
        k.public for k in w.registry.state().keys if k.kid == w.authority.agent("researcher").kid
    )
    claims = msgspec.structs.replace(
        parent,
        iss=parent.sub,
        sub=w.agent("researcher"),
        jti="forged-child-1",
        cnf=confirmation(public),
        delegable=parent.delegable - 1,
        depth=parent.depth + 1,
        parent=digest(parent_text),
        **over,
    )
    return f"{chain}~{encode(claims, key, thumbprint(bytes(key.verify_key)))}"


class TestClaimsInPolicy:
    def mail(self) -> Action:
        return Action(kind="tool_call", tool="send_email", args={"to": "bob@example.com"})

    def test_declarative_condition(self, guard: Any, w: World) -> None:
        alice = w.root(tools=MAIL, resources=MAIL_SCOPE, budgets={"max_cost": 2})
        assert guard.check(self.mail(), alice).rules == ("mail-for-alice",)
        bob = w.root(tools=MAIL, resources=MAIL_SCOPE, budgets={"max_cost": 2}, user="bob")
        assert guard.check(self.mail(), bob).effect is Effect.DENY

    def test_missing_claim_does_not_allow(self, guard: Any, w: World) -> None:
        no_budget = w.root(tools=MAIL, resources=MAIL_SCOPE)
        decision = guard.check(self.mail(), no_budget)
        assert decision.effect is Effect.DENY
        assert any("max_cost" in e for e in decision.errors)

    def test_cel_condition(self, guard: Any, w: World) -> None:
        big = w.root(tools=MAIL, resources=MAIL_SCOPE, budgets={"max_cost": 8})
        assert guard.check(self.mail(), big).rules == ("small-spenders-only",)

    def test_depth_condition(self, guard: Any, w: World) -> None:
        chain = w.authority.delegate(w.root(), "researcher")
        assert guard.check(read(), chain).allowed
        deeper = w.authority.delegate(chain, "fetcher")
        assert guard.check(read(), deeper).rules == ("not-too-deep",)

    def test_without_a_verifier_claims_are_dropped(self, make_guard: GuardFactory) -> None:
        plain = make_guard(POLICY)
        forged = msgspec.structs.replace(
            self.mail(), credential={"user": "alice", "budgets": {"max_cost": 1}, "depth": 0}
        )
        assert plain.check(forged).effect is Effect.DENY
        assert plain.policy.evaluate(forged).allowed  # the policy alone would have allowed


def test_outcome_records_name_the_verified_agent(
    guard: Any, w: World, memory_log: AuditLog
) -> None:
    @guard.protect
    def read_file(path: str) -> str:
        return "data"

    chain = w.authority.delegate(w.root(), "researcher")
    with guard.context(agent="someone-else", credential=chain):
        assert read_file("/workspace/a") == "data"
    outcome = records_of(memory_log, "outcome")[-1]
    assert outcome["agent"] == w.agent("researcher")
    assert last_decision(memory_log)["delegation"] == [w.agent("planner")]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_rotation_mid_workflow_fails_no_call(
    make_guard: GuardFactory, tmp_path: Path, store: str
) -> None:
    """Threads make guarded calls, each with credentials issued before and after rotations,
    while the key ring is rotated again and again: not one call is refused."""
    registry = (
        MemoryIdentityRegistry() if store == "memory" else SQLiteIdentityRegistry(tmp_path / "id")
    )
    w = world(registry)
    guard = make_guard(POLICY, verifier=w.verifier)
    calls = [0]
    lock = threading.Lock()

    @guard.protect
    def read_file(path: str) -> str:
        with lock:
            calls[0] += 1
        return path

    failures: list[BaseException] = []
    tokens = [w.root()]  # new credentials are appended as rotation goes on
    stop = threading.Event()

    def worker(n: int) -> None:
        try:
            i = 0
            while not stop.is_set() or i < 20:
                token = tokens[(n + i) % len(tokens)]
                with guard.context(credential=token):
                    read_file(f"/workspace/{n}/{i}")
                i += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()

    def calls_grow_by(n: int) -> None:  # interleave: let the workers run between rotations
        target = calls[0] + n
        deadline = time.monotonic() + 30
        while calls[0] < target and time.monotonic() < deadline and not failures:
            time.sleep(0.001)

    kids = set()
    calls_grow_by(10)
    for _ in range(5):
        kids.add(w.authority.rotate().kid)
        calls_grow_by(10)  # in-flight credentials signed by the retired key keep working
        tokens.append(w.root())
        calls_grow_by(10)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    assert len({parse(t).kid for t in tokens}) == 6  # every credential from a different key
    assert len(kids) == 5 and calls[0] >= 80
    if store == "sqlite":
        registry.close()  # type: ignore[union-attr]


def test_revocation_mid_workflow_takes_effect_on_the_next_call(
    guard: Any, w: World, memory_log: AuditLog
) -> None:
    @guard.protect
    def read_file(path: str) -> str:
        return path

    token = w.root()
    with guard.context(credential=token):
        for _ in range(3):
            read_file("/workspace/x")
        w.authority.revoke_credential(token)
        with pytest.raises(DeniedError) as info:
            read_file("/workspace/x")
    assert info.value.decision.reasons[0].startswith("credential.revoked: ")
    assert [r["effect"] for r in records_of(memory_log, "decision")] == ["allow"] * 3 + ["deny"]


def test_audit_only_mode_still_stops_unverified_calls(make_guard: GuardFactory, w: World) -> None:
    """The dry-run mode runs what the policy denies, but not what nobody verifiably asked for."""
    from ringfence import Enforcement

    guard = make_guard(POLICY, verifier=w.verifier, enforcement=Enforcement.UNSAFE_AUDIT_ONLY)
    ran: list[str] = []

    @guard.protect
    def read_file(path: str) -> str:
        ran.append(path)
        return path

    with pytest.raises(DeniedError):
        read_file("/workspace/a")
    with guard.context(credential=w.root()), pytest.raises(DeniedError):
        read_file("/etc/passwd")  # out of the credential's scope: refused even here
    assert ran == []


def test_open_guard_takes_a_verifier(tmp_path: Path) -> None:
    import ringfence

    registry = SQLiteIdentityRegistry(tmp_path / "identity")
    w = world(registry)
    w.clock.now = time.time_ns()  # open_guard's clock is the real one
    guard = ringfence.open_guard(
        ringfence.policy_from_text(POLICY), data_dir=tmp_path / "rf", verifier=w.verifier
    )

    @guard.protect
    def read_file(path: str) -> str:
        return path

    token = w.authority.issue("planner", tools=("read_file",), resources=("path:/workspace/**",))
    with guard.context(credential=token):
        assert read_file("/workspace/a") == "/workspace/a"
    guard.close()
    registry.close()
    log = ringfence.open_audit_log(tmp_path / "rf")
    assert log.verify().ok
    log.close()


def test_max_calls_is_one_budget_across_processes_sharing_the_controls_store(
    make_guard: GuardFactory, w: World, tmp_path: Path
) -> None:
    """Two Guards with their own verifiers and their own controls over one store (as two
    processes have) spend from the same max_calls budgets, the delegating parent's too."""
    from ringfence.runtime.controls import open_controls
    from ringfence.runtime.identity import Verifier

    shared = tmp_path / "controls"
    guards = []
    for _ in range(2):
        controls = open_controls(tmp_path, store_dir=shared, watch_seconds=None)
        guards.append(make_guard(POLICY, verifier=Verifier(w.registry), controls=controls))
    try:
        token = w.root(budgets={"max_calls": 5})
        allowed = [g.check(read(), token).allowed for _ in range(4) for g in guards]
        assert allowed.count(True) == 5
        assert allowed[:5] == [True] * 5  # nothing refused before the budget was spent
        for g in guards:
            assert g.check(read(), token).reasons[0].startswith("credential.budget_exhausted")

        parent = w.root(budgets={"max_calls": 3})
        child = w.authority.delegate(parent, "researcher", budgets={"max_calls": 3})
        assert guards[0].check(read(), parent).allowed
        assert [g.check(read(), child).allowed for g in guards] == [True, True]
        # The parent's three calls are spent (one by itself, two through its child).
        for g in guards:
            assert not g.check(read(), child).allowed
            assert not g.check(read(), parent).allowed
    finally:
        for g in guards:
            g.close()


def test_a_failing_budget_store_is_a_deny(
    make_guard: GuardFactory, w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ringfence.runtime.controls import open_controls

    controls = open_controls(tmp_path, watch_seconds=None)
    guard = make_guard(POLICY, verifier=w.verifier, controls=controls)
    try:
        token = w.root(budgets={"max_calls": 5})

        def broken(*_: object) -> None:
            raise OSError("disk I/O error")

        monkeypatch.setattr(controls, "spend_credential", broken)
        decision = guard.check(read(), token)
        assert not decision.allowed
        assert decision.reasons[0].startswith("credential.error")
        assert guard.check(read(), w.root()).allowed  # no budget: nothing to spend
    finally:
        guard.close()

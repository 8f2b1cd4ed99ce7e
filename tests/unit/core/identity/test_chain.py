"""Chains: a root and its delegations verified link by link; every refusal has its code.

Deny paths first and in detail: forged, expired, not yet valid, wrong audience, tampered,
and every way a delegation could try to be broader than its parent.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ringfence.core.identity.chain import (
    Revoked,
    TrustedKey,
    narrowing_problem,
    revocation_problem,
)
from ringfence.core.identity.token import jwk
from ringfence.errors import IdentityError

from ._support import (
    FETCHER,
    KEYS,
    MALLORY,
    OTHER_RING,
    PLANNER,
    RESEARCHER,
    RING,
    T0,
    agent,
    child,
    claims_of,
    forge,
    kid,
    pub,
    resign,
    root,
    verify,
)


def denied(text: str, code: str, **kw: Any) -> str:
    with pytest.raises(IdentityError) as info:
        verify(text, **kw)
    assert info.value.code == code, info.value.message
    return info.value.message


class TestRoot:
    def test_valid(self) -> None:
        chain = verify(root())
        assert chain.agents == (agent("planner"),)
        assert chain.kids == (kid(RING),)
        assert chain.leaf.user == "alice"
        assert (chain.not_before_s, chain.not_after_s) == (T0, T0 + 900)

    def test_missing(self) -> None:
        denied("", "credential.missing")

    def test_forged_with_an_unknown_key(self) -> None:
        denied(root(ring_key=MALLORY), "credential.unknown_key")

    def test_forged_with_the_ring_key_id(self) -> None:
        """Signed by another key but claiming the ring key's id."""
        from ringfence.core.identity.token import encode

        forged = encode(claims_of(root()), MALLORY, kid(RING))
        denied(forged, "credential.bad_signature")

    @pytest.mark.parametrize(
        ("claim", "value"),
        [("tools", ["*"]), ("exp", T0 + 10**6), ("sub", agent("admin")), ("user", "root")],
    )
    def test_tampered_claim(self, claim: str, value: object) -> None:
        head, payload, sig = root().split(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=="))
        data[claim] = value
        payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        denied(f"{head}.{payload}.{sig}", "credential.bad_signature")

    def test_expired(self) -> None:
        denied(root(), "credential.expired", now_s=T0 + 900)
        verify(root(), now_s=T0 + 899)

    def test_not_yet_valid(self) -> None:
        denied(root(), "credential.not_yet_valid", now_s=T0 - 1)

    def test_leeway(self) -> None:
        verify(root(), now_s=T0 + 904, leeway_s=5)
        denied(root(), "credential.expired", now_s=T0 + 905, leeway_s=5)
        verify(root(), now_s=T0 - 5, leeway_s=5)

    def test_wrong_audience(self) -> None:
        denied(root(), "credential.wrong_audience", audience="payments")
        verify(root(), audience="billing")

    def test_wrong_issuer(self) -> None:
        denied(resign(root(), RING, iss="spiffe://evil.example"), "credential.wrong_issuer")

    def test_agent_of_another_trust_domain(self) -> None:
        other = resign(root(), RING, sub="spiffe://evil.example/agent/planner")
        denied(other, "credential.wrong_trust_domain")

    def test_lifetime_too_long(self) -> None:
        denied(root(ttl_s=7200), "credential.lifetime_too_long", max_ttl_s=3600)

    def test_exp_before_nbf(self) -> None:
        denied(resign(root(), RING, exp=T0 - 1), "credential.malformed")

    def test_retired_key_still_verifies_what_it_signed(self) -> None:
        keys = {kid(RING): TrustedKey(pub(RING), retired_s=T0 + 5)}
        verify(root(), keys=keys)
        denied(root(now_s=T0 + 6, ttl_s=100), "credential.key_retired", keys=keys)

    def test_other_ring(self) -> None:
        keys = {kid(OTHER_RING): TrustedKey(pub(OTHER_RING))}
        denied(root(), "credential.unknown_key", keys=keys)

    def test_library_limits_are_refusals(self) -> None:
        denied("~".join([root()] * 9), "delegation.too_deep")
        denied("x" * 80_000, "credential.malformed")


class TestDelegation:
    def test_valid_chain(self) -> None:
        text = child(root(), tools=("read_file",), resources=("path:/workspace/src/**",))
        chain = verify(text)
        assert chain.agents == (agent("planner"), agent("researcher"))
        assert chain.kids == (kid(RING), kid(PLANNER))
        assert chain.leaf.depth == 1 and chain.leaf.delegable == 1
        assert chain.leaf.user == "alice"

    def test_two_levels(self) -> None:
        text = child(
            child(root()),
            parent_key=RESEARCHER,
            agent=agent("fetcher"),
            agent_public=pub(FETCHER),
            jti="grandchild-1",
            tools=("read_file",),
        )
        assert verify(text).agents[-1] == agent("fetcher")

    def test_chain_window_is_the_narrowest(self) -> None:
        chain = verify(child(root(), ttl_s=100))
        assert chain.not_after_s == T0 + 10 + 100
        assert chain.not_before_s == T0 + 10
        denied(child(root(), ttl_s=100), "credential.not_yet_valid", now_s=T0 + 5)

    # -- escalation attempts: each is refused by the verifier, whoever signed it ------------

    def test_wider_tools(self) -> None:
        msg = denied(
            forge(root(), PLANNER, tools=("read_*", "delete_*")), "delegation.scope_widened"
        )
        assert "delete_*" in msg

    def test_wider_tool_glob(self) -> None:
        denied(forge(root(), PLANNER, tools=("*",)), "delegation.scope_widened")

    def test_wider_resources(self) -> None:
        denied(forge(root(), PLANNER, resources=("path:/**",)), "delegation.scope_widened")

    def test_resource_of_a_new_type(self) -> None:
        forged = forge(root(), PLANNER, resources=("path:/workspace/x", "recipient:*"))
        denied(forged, "delegation.scope_widened")

    def test_wider_roles(self) -> None:
        denied(forge(root(), PLANNER, roles=("analyst", "admin")), "delegation.scope_widened")

    def test_bigger_budget(self) -> None:
        forged = forge(root(), PLANNER, budgets={"max_calls": 101, "max_cost": 5.0})
        denied(forged, "delegation.budget_widened")

    def test_dropped_budget(self) -> None:
        """A budget the parent has and the child leaves out would be unlimited."""
        denied(forge(root(), PLANNER, budgets={"max_calls": 1}), "delegation.budget_widened")

    def test_longer_expiry(self) -> None:
        denied(forge(root(), PLANNER, exp=T0 + 901), "delegation.expiry_extended")

    def test_wider_audience(self) -> None:
        forged = forge(root(), PLANNER, aud=("ringfence", "payments"))
        denied(forged, "delegation.audience_widened")

    def test_other_user(self) -> None:
        denied(forge(root(), PLANNER, user="bob"), "delegation.user_changed")
        denied(forge(root(), PLANNER, user=None), "delegation.user_changed")

    def test_more_delegation_than_left(self) -> None:
        denied(forge(root(), PLANNER, delegable=2), "delegation.too_deep")

    def test_too_deep(self) -> None:
        last = child(
            child(root()),
            parent_key=RESEARCHER,
            agent=agent("fetcher"),
            agent_public=pub(FETCHER),
            jti="grandchild-1",
        )
        assert claims_of(last).delegable == 0
        denied(forge(last, FETCHER), "delegation.too_deep")

    def test_verifier_depth_limit(self) -> None:
        denied(child(root()), "delegation.too_deep", max_links=1)

    def test_wrong_depth(self) -> None:
        denied(forge(root(), PLANNER, depth=3), "credential.malformed")

    def test_signed_by_someone_else(self) -> None:
        """The child is not signed by the key its parent binds."""
        denied(forge(root(), MALLORY), "delegation.bad_signature")

    def test_signed_by_the_ring_instead_of_the_parent(self) -> None:
        denied(forge(root(), RING), "delegation.bad_signature")

    def test_wrong_issuer(self) -> None:
        denied(forge(root(), PLANNER, iss=agent("someone")), "delegation.wrong_issuer")

    def test_swapped_parent(self) -> None:
        """A child made under one parent, presented under another (same agent, same key)."""
        original = root()
        other_root = root(jti="root-0002", tools=("*",), resources=("*:**",))
        kid_token = child(original).rsplit("~", 1)[1]
        denied(f"{other_root}~{kid_token}", "delegation.parent_mismatch")

    def test_unknown_parent(self) -> None:
        """A delegated credential presented without its parent (the competitor says 'valid')."""
        alone = child(root()).rsplit("~", 1)[1]
        msg = denied(alone, "delegation.unknown_parent")
        assert "researcher" in msg

    def test_unknown_parent_in_the_middle(self) -> None:
        full = child(
            child(root()),
            parent_key=RESEARCHER,
            agent=agent("fetcher"),
            agent_public=pub(FETCHER),
            jti="grandchild-1",
        )
        r, _, g = full.split("~")
        denied(f"{r}~{g}", "delegation.parent_mismatch")

    def test_tampered_child(self) -> None:
        text = child(root(), tools=("read_file",))
        head, payload, sig = text.rsplit("~", 1)[1].split(".")
        data = json.loads(base64.urlsafe_b64decode(payload + "=="))
        data["tools"] = ["read_*", "search"]
        payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
        denied(f"{root()}~{head}.{payload}.{sig}", "delegation.bad_signature")

    def test_expired_parent_expires_the_chain(self) -> None:
        denied(child(root(ttl_s=30)), "credential.expired", now_s=T0 + 30)


class TestDelegateRefusesToWiden:
    @pytest.mark.parametrize(
        ("over", "code"),
        [
            ({"tools": ("write_file",)}, "delegation.scope_widened"),
            ({"resources": ("path:/etc/**",)}, "delegation.scope_widened"),
            ({"roles": ("admin",)}, "delegation.scope_widened"),
            ({"budgets": {"max_calls": 1000, "max_cost": 1}}, "delegation.budget_widened"),
            ({"audience": ("payments",)}, "delegation.audience_widened"),
            ({"delegable": 5}, "delegation.too_deep"),
            ({"parent_key": MALLORY}, "delegation.bad_signature"),
        ],
    )
    def test_refused(self, over: dict[str, Any], code: str) -> None:
        with pytest.raises(IdentityError) as info:
            child(root(), **over)
        assert info.value.code == code

    def test_ttl_is_capped_by_the_parent(self) -> None:
        assert claims_of(child(root(), ttl_s=10**6)).exp == T0 + 900

    def test_inherits(self) -> None:
        c = claims_of(child(root()))
        p = claims_of(root())
        assert (c.tools, c.resources, c.budgets, c.aud, c.user) == (
            p.tools,
            p.resources,
            p.budgets,
            p.aud,
            p.user,
        )


class TestRevocation:
    chain = verify(child(root()))

    @pytest.mark.parametrize(
        ("revoked", "code"),
        [
            (Revoked(credentials=frozenset({"root-0001"})), "credential.revoked"),
            (Revoked(credentials=frozenset({"child-0001"})), "credential.revoked"),
            (Revoked(agents=frozenset({agent("planner")})), "credential.agent_revoked"),
            (Revoked(keys=frozenset({kid(RING)})), "credential.key_revoked"),
            (Revoked(holders=frozenset({jwk(pub(PLANNER))["x"]})), "credential.key_revoked"),
            (Revoked(registered=frozenset({agent("planner")})), "credential.unknown_agent"),
        ],
    )
    def test_refused(self, revoked: Revoked, code: str) -> None:
        problem = revocation_problem(self.chain, revoked)
        assert problem is not None and problem.code == code

    def test_nothing_revoked(self) -> None:
        registered = frozenset({agent("planner"), agent("researcher")})
        assert revocation_problem(self.chain, Revoked(registered=registered)) is None
        assert revocation_problem(self.chain, Revoked(keys=frozenset({kid(MALLORY)}))) is None


def test_narrowing_problem_accepts_equal() -> None:
    parent = claims_of(root())
    same = claims_of(child(root()))
    assert narrowing_problem(parent, same) is None
    assert KEYS  # the fixture key ring is the RING key

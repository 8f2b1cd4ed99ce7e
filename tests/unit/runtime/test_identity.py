"""The Verifier and the Authority: caching, revocation, rotation, budgets, failures."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from ringfence.core.action import Resource
from ringfence.core.identity.issue import root_credential
from ringfence.core.identity.records import RING, Revocation
from ringfence.core.identity.token import parse
from ringfence.errors import ConfigError, IdentityError
from ringfence.runtime.authority import Authority
from ringfence.runtime.identity import Verifier
from ringfence.stores.identity import MemoryIdentityRegistry

from ._identity import TD, World, world


@pytest.fixture
def w() -> World:
    return world()


def refused(w: World, credential: str | None, code: str) -> IdentityError:
    with pytest.raises(IdentityError) as info:
        w.verifier.verify(credential, w.clock())
    assert info.value.code == code, info.value.message
    return info.value


class TestVerify:
    def test_root(self, w: World) -> None:
        v = w.verifier.verify(w.root(), w.clock())
        assert v.agent == w.agent("planner")
        assert v.delegation == ()
        assert v.user == "alice"
        assert v.view["sub"] == w.agent("planner")
        assert v.view["kid"] == w.authority.jwks()["keys"][0]["kid"]

    def test_delegated(self, w: World) -> None:
        chain = w.authority.delegate(w.root(), "researcher", tools=("read_file",))
        v = w.verifier.verify(chain, w.clock())
        assert v.agent == w.agent("researcher")
        assert v.delegation == (w.agent("planner"),)

    def test_cache_hit_is_the_same_verification(self, w: World) -> None:
        token = w.root()
        assert w.verifier.verify(token, w.clock()) is w.verifier.verify(token, w.clock())
        # an equal string object hits too (the cache is keyed by the text)
        assert w.verifier.verify("".join(token), w.clock()) is w.verifier.verify(token, w.clock())

    @pytest.mark.parametrize("credential", [None, ""])
    def test_missing(self, w: World, credential: str | None) -> None:
        refused(w, credential, "credential.missing")

    def test_not_a_string(self, w: World) -> None:
        refused(w, b"abc", "credential.malformed")  # type: ignore[arg-type]

    def test_expires_while_cached(self, w: World) -> None:
        token = w.root(ttl_s=60)
        w.verifier.verify(token, w.clock())
        w.clock.advance(60 + w.verifier.leeway_s)
        refused(w, token, "credential.expired")
        refused(w, token, "credential.expired")  # and again, uncached

    def test_wrong_audience(self, w: World) -> None:
        other = Verifier(w.registry, audience="payments")
        with pytest.raises(IdentityError) as info:
            other.verify(w.root(), w.clock())
        assert info.value.code == "credential.wrong_audience"

    def test_another_registrys_credential(self, w: World) -> None:
        elsewhere = Authority(MemoryIdentityRegistry(), trust_domain=TD, clock=w.clock)
        elsewhere.create_agent("planner")
        refused(w, elsewhere.issue("planner", tools=("x",)), "credential.unknown_key")

    def test_unregistered_agent(self, w: World) -> None:
        """Signed by the ring, but for an agent the registry does not know."""
        ring = w.authority.jwks()["keys"][0]["kid"]
        token = root_credential(
            ring_key=SigningKey(w.registry.private_key(ring)),
            trust_domain=TD,
            agent=w.agent("ghost"),
            agent_public=bytes(SigningKey.generate().verify_key),
            jti="ghost-credential",
            now_s=w.clock() // 10**9,
            ttl_s=60,
            tools=("x",),
        )
        refused(w, token, "credential.unknown_agent")
        lenient = Verifier(w.registry, require_registered=False)
        assert lenient.verify(token, w.clock()).agent == w.agent("ghost")

    def test_library_failure_is_a_deny(self, w: World, monkeypatch: pytest.MonkeyPatch) -> None:
        import ringfence.runtime.identity as mod

        def boom(*a: object, **k: object) -> None:
            raise MemoryError("libsodium said no")

        monkeypatch.setattr(mod, "verify_chain", boom)
        refused(w, w.root(), "credential.error")


class TestRevocation:
    def test_credential_revoked_while_cached(self, w: World) -> None:
        token = w.root()
        w.verifier.verify(token, w.clock())
        w.authority.revoke_credential(token, "leaked")
        refused(w, token, "credential.revoked")
        assert w.root() != token
        w.verifier.verify(w.root(), w.clock())  # a new one is fine

    def test_by_jti(self, w: World) -> None:
        token = w.root()
        w.authority.revoke_credential(parse(token).claims.jti)
        refused(w, token, "credential.revoked")

    def test_agent_revoked_denies_its_delegations(self, w: World) -> None:
        chain = w.authority.delegate(w.root(), "researcher")
        w.verifier.verify(chain, w.clock())
        w.authority.revoke_agent("planner")
        refused(w, chain, "credential.agent_revoked")

    def test_ring_key_revoked(self, w: World) -> None:
        token = w.root()
        w.verifier.verify(token, w.clock())
        w.authority.revoke_key(parse(token).kid)
        refused(w, token, "credential.key_revoked")

    def test_agent_key_revoked(self, w: World) -> None:
        """Revoking the planner's key refuses what it signed and what binds it."""
        root = w.root()
        chain = w.authority.delegate(root, "researcher")
        w.verifier.verify(chain, w.clock())
        w.authority.revoke_key(w.authority.agent("planner").kid)
        refused(w, chain, "credential.key_revoked")
        refused(w, root, "credential.key_revoked")

    def test_revoking_twice_keeps_the_first(self, w: World) -> None:
        w.authority.revoke_agent("fetcher", "first")
        w.authority.revoke_agent("fetcher", "second")
        reasons = [r.reason for r in w.registry.state().revocations]
        assert reasons == ["first"]

    def test_unknown_things(self, w: World) -> None:
        with pytest.raises(IdentityError) as info:
            w.authority.revoke_agent("nobody")
        assert info.value.code == "identity.not_found"
        with pytest.raises(IdentityError) as info:
            w.authority.revoke_key("nope")
        assert info.value.code == "identity.not_found"
        with pytest.raises(IdentityError) as info:
            w.registry.revoke(Revocation("session", "s-1", 0))
        assert info.value.code == "identity.invalid"


class TestRotation:
    def test_old_key_verifies_until_its_credentials_expire(self, w: World) -> None:
        before = w.root()
        w.verifier.verify(before, w.clock())
        old_kid = parse(before).kid
        new = w.authority.rotate()
        after = w.root()
        assert parse(after).kid == new.kid != old_kid
        w.verifier.verify(before, w.clock())  # cached and revalidated
        w.verifier.forget()
        w.verifier.verify(before, w.clock())  # uncached: the retired key still verifies
        w.verifier.verify(after, w.clock())
        kids = [k["kid"] for k in w.authority.jwks()["keys"]]
        assert kids == [old_kid, new.kid]

    def test_retired_keys_leave_the_jwks(self, w: World) -> None:
        old = w.authority.jwks()["keys"][0]["kid"]
        w.authority.rotate()
        w.clock.advance(w.authority.max_ttl_s + 1)
        assert old not in [k["kid"] for k in w.authority.jwks()["keys"]]

    def test_agent_key_rotation(self, w: World) -> None:
        root = w.root()
        chain = w.authority.delegate(root, "researcher")
        w.authority.rotate_agent("planner")
        w.verifier.forget()
        w.verifier.verify(chain, w.clock())  # signed by the old key, which `root` binds
        # the old key is retired, not revoked: delegating from the old root still works
        w.verifier.verify(w.authority.delegate(root, "researcher"), w.clock())
        fresh = w.root()
        assert parse(fresh).claims.cnf != parse(root).claims.cnf  # binds the new key
        w.verifier.verify(w.authority.delegate(fresh, "researcher"), w.clock())

    def test_a_revoked_ring_key_is_replaced(self, w: World) -> None:
        w.authority.revoke_key(w.authority.jwks()["keys"][0]["kid"])
        again = Authority(w.registry, clock=w.clock)  # finds no usable key and makes one
        w.verifier.verify(again.issue("planner", tools=("x",)), w.clock())


class TestBudgets:
    def test_max_calls_counts_every_link(self, w: World) -> None:
        root = w.root(budgets={"max_calls": 3})
        a = w.authority.delegate(root, "researcher", budgets={"max_calls": 2})
        b = w.authority.delegate(root, "fetcher", budgets={"max_calls": 2})
        va, vb = w.verifier.verify(a, w.clock()), w.verifier.verify(b, w.clock())
        res = (Resource("path", "/workspace/x"),)
        assert w.verifier.admit(va, "read_file", res) is None
        assert w.verifier.admit(va, "read_file", res) is None
        exhausted = w.verifier.admit(va, "read_file", res)
        assert exhausted is not None and exhausted.code == "credential.budget_exhausted"
        assert w.verifier.admit(vb, "read_file", res) is None  # root: 3 of 3
        problem = w.verifier.admit(vb, "read_file", res)  # b has 1 left, root none
        assert problem is not None and "root" not in problem.message
        assert parse(root).claims.jti in problem.message

    def test_counts_survive_the_cache(self, w: World) -> None:
        token = w.root(budgets={"max_calls": 1})
        v = w.verifier.verify(token, w.clock())
        assert w.verifier.admit(v, "read_file", ()) is None
        w.verifier.forget()
        v = w.verifier.verify(token, w.clock())
        problem = w.verifier.admit(v, "read_file", ())
        assert problem is not None and problem.code == "credential.budget_exhausted"

    def test_scope(self, w: World) -> None:
        v = w.verifier.verify(w.root(), w.clock())
        tool = w.verifier.admit(v, "delete_file", ())
        assert tool is not None and tool.code == "credential.tool_not_in_scope"
        res = w.verifier.admit(v, "read_file", (Resource("path", "/etc/passwd"),))
        assert res is not None and res.code == "credential.resource_not_in_scope"


class TestAuthority:
    def test_new_registry_needs_a_trust_domain(self) -> None:
        with pytest.raises(ConfigError):
            Authority(MemoryIdentityRegistry())
        with pytest.raises(ConfigError):
            Authority(MemoryIdentityRegistry(), trust_domain="Not Valid")

    def test_trust_domain_is_fixed(self, w: World) -> None:
        with pytest.raises(ConfigError):
            Authority(w.registry, trust_domain="other.example")
        assert Authority(w.registry).trust_domain == TD

    def test_agents(self, w: World) -> None:
        with pytest.raises(IdentityError) as info:
            w.authority.create_agent("planner")
        assert info.value.code == "identity.exists"
        with pytest.raises(IdentityError) as info:
            w.authority.create_agent("../x")
        assert info.value.code == "identity.invalid_id"
        with pytest.raises(IdentityError):
            w.authority.create_agent("spiffe://other.example/agent/x")
        assert w.authority.agent(w.agent("planner")).id == w.agent("planner")

    def test_issue_limits(self, w: World) -> None:
        for ttl in (0, w.authority.max_ttl_s + 1):
            with pytest.raises(IdentityError):
                w.root(ttl_s=ttl)
        with pytest.raises(IdentityError) as info:
            w.root(tools=("bad[",))
        assert info.value.code == "credential.malformed"

    def test_one_active_ring_key(self, w: World) -> None:
        w.authority.rotate()
        w.authority.rotate()
        active = [k for k in w.registry.state().keys if k.owner == RING and k.retired_ns is None]
        assert len(active) == 1

    def test_verifier_needs_a_bound_registry(self) -> None:
        with pytest.raises(ConfigError):
            Verifier(MemoryIdentityRegistry())
        with pytest.raises(ConfigError):
            Verifier(MemoryIdentityRegistry(TD), max_links=0)

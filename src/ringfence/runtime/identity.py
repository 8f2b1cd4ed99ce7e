"""Credential verification for the Guard: every check verifies, most checks hit a cache.

A :class:`Verifier` accepts credentials for one audience in the trust domain of one
:class:`~ringfence.runtime.ports.IdentityRegistry`.  ``verify(credential, now_ns)`` returns a
:class:`VerifiedCredential` or raises :class:`~ringfence.errors.IdentityError` with a coded
reason (``credential.expired``, ``delegation.scope_widened``, …).

The first time a credential is seen, every link of its chain is verified (signatures, parent
digests, narrowing, time, audience) and checked against the registry's revocations; the
result is cached under the credential's text (a dict lookup is an exact match, and Python
caches a string's hash, so a cached check costs no SHA-256).  A cached check re-reads the
registry's generation number (a shared memory word for the SQLite registry), re-checks
revocations only if it moved, and compares the time with the chain's validity window.  Any
exception from a library while verifying is a deny (``credential.error``), never an allow.

Budgets: ``max_calls`` is counted per credential of the chain (a sub-agent's calls count
against its parents' budgets too) — across every process sharing a controls store when the
Guard has controls (``open_guard`` always does), else in this process; other budgets are for
policies to read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import msgspec

from ringfence.core.action import Action, Resource
from ringfence.core.identity.chain import (
    MAX_LINKS,
    Chain,
    Revoked,
    TrustedKey,
    revocation_problem,
    verify_chain,
)
from ringfence.core.identity.claims import policy_view, trust_domain_id
from ringfence.core.identity.records import RING, RegistryState
from ringfence.core.identity.scopes import Scope
from ringfence.core.identity.token import jwk
from ringfence.errors import ConfigError, IdentityError
from ringfence.runtime.ports import IdentityRegistry

Spend = Callable[[tuple[tuple[str, int | float], ...], int, int], str | None]
"""``spend(call_limits, until_ns, now_ns)``: take one call from every ``(jti, limit)`` budget
(all or none); the jti of a used-up one, or None."""

__all__ = ["Spend", "VerifiedCredential", "Verifier"]

log = logging.getLogger("ringfence.identity")
_NS = 1_000_000_000
_replace = msgspec.structs.replace


class VerifiedCredential:
    """A verified chain and what it means for an action: who, for whom, and what it admits."""

    __slots__ = (
        "agent",
        "call_limits",
        "chain",
        "delegation",
        "generation",
        "not_after_ns",
        "not_before_ns",
        "roles",
        "scope",
        "user",
        "view",
    )

    def __init__(self, chain: Chain, generation: int) -> None:
        leaf = chain.leaf
        agents = chain.agents
        self.chain = chain
        self.agent = agents[-1]
        self.delegation = agents[:-1]
        self.user = leaf.user
        self.roles = leaf.roles
        self.view = policy_view(leaf, chain.kids[0])
        # The ids of the credentials this one was delegated from, root first: decision
        # records keep them beside the leaf's ``jti`` (ringfence.core.audit.record).
        self.view["parents"] = tuple(link.claims.jti for link in chain.links[:-1])
        self.scope = Scope.of(leaf.tools, leaf.resources)
        self.not_before_ns = chain.not_before_s * _NS
        self.not_after_ns = chain.not_after_s * _NS
        self.generation = generation
        limits = []
        for link in chain.links:
            limit = link.claims.budgets.get("max_calls")
            if limit is not None:
                limits.append((link.claims.jti, limit))
        self.call_limits: tuple[tuple[str, int | float], ...] = tuple(limits)

    def identify(self, action: Action) -> Action:
        """``action`` as this credential's: agent, user, roles, delegation and claims."""
        return _replace(
            action,
            agent=self.agent,
            user=self.user,
            roles=self.roles,
            delegation=self.delegation,
            credential=self.view,
        )

    def outside_scope(
        self, tool: str | None, resources: tuple[Resource, ...]
    ) -> IdentityError | None:
        """Why an action on ``tool`` (None: any) touching ``resources`` is outside this
        credential's scope, or None."""
        if tool is not None and not self.scope.admits_tool(tool):
            return IdentityError(
                f"tool {tool!r} is not in the credential's scope",
                code="credential.tool_not_in_scope",
            )
        outside = self.scope.resource_outside(resources)
        if outside is not None:
            return IdentityError(
                f"resource {outside} is not in the credential's scope",
                code="credential.resource_not_in_scope",
            )
        return None


class _Snapshot:
    """What the verifier knows of the registry at one generation."""

    __slots__ = ("generation", "keys", "revoked")

    def __init__(self, state: RegistryState, require_registered: bool) -> None:
        self.generation = state.generation
        self.keys = {
            k.kid: TrustedKey(k.public, None if k.retired_ns is None else k.retired_ns // _NS)
            for k in state.keys
            if k.owner == RING
        }
        by_kind: dict[str, set[str]] = {"agent": set(), "key": set(), "credential": set()}
        for r in state.revocations:
            by_kind.setdefault(r.kind, set()).add(r.id)
        self.revoked = Revoked(
            keys=frozenset(by_kind["key"]),
            holders=frozenset(
                jwk(k.public, kid=False)["x"] for k in state.keys if k.kid in by_kind["key"]
            ),
            agents=frozenset(by_kind["agent"]),
            credentials=frozenset(by_kind["credential"]),
            registered=frozenset(a.id for a in state.agents) if require_registered else None,
        )


class Verifier:
    """Verifies presented credentials for ``audience``; see the module docstring."""

    def __init__(
        self,
        registry: IdentityRegistry,
        *,
        audience: str = "ringfence",
        leeway_s: int = 5,
        max_links: int = 4,
        max_ttl_s: int = 86_400,
        cache_size: int = 4096,
        require_registered: bool = True,
    ) -> None:
        if not 1 <= max_links <= MAX_LINKS:
            raise ConfigError(f"max_links must be 1..{MAX_LINKS}, not {max_links}")
        self.registry = registry
        self.audience = audience
        self.leeway_s = leeway_s
        self.max_links = max_links
        self.max_ttl_s = max_ttl_s
        self._cache_size = cache_size
        self._require_registered = require_registered
        self._cache: dict[str, VerifiedCredential] = {}
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}  # max_calls spent, per credential id
        self._spent_until: dict[str, int] = {}  # when each counted credential expires (ns)
        state = registry.state()
        if state.trust_domain is None:
            raise ConfigError("the identity registry has no trust domain yet (create an agent)")
        trust_domain_id(state.trust_domain)  # validates it
        self.trust_domain = state.trust_domain
        self._snap = _Snapshot(state, require_registered)

    def _refresh(self) -> _Snapshot:
        with self._lock:
            state = self.registry.state()
            if state.generation != self._snap.generation:
                self._snap = _Snapshot(state, self._require_registered)
            return self._snap

    def verify(self, credential: str | None, now_ns: int) -> VerifiedCredential:
        """The verified credential, or IdentityError with a coded reason."""
        snap = self._snap
        if self.registry.generation() != snap.generation:
            snap = self._refresh()
        entry = self._cache.get(credential) if type(credential) is str else None
        if entry is None:
            return self._first(credential, now_ns, snap)
        if entry.generation != snap.generation:
            self._recheck(entry, snap, credential)  # type: ignore[arg-type]
        if not entry.not_before_ns <= now_ns < entry.not_after_ns:
            self._cache.pop(credential, None)  # type: ignore[arg-type]
            if now_ns >= entry.not_after_ns:
                raise IdentityError("the credential has expired", code="credential.expired")
            raise IdentityError("the credential is not valid yet", code="credential.not_yet_valid")
        return entry

    def _first(self, credential: str | None, now_ns: int, snap: _Snapshot) -> VerifiedCredential:
        if not credential:
            raise IdentityError("no credential was presented", code="credential.missing")
        if type(credential) is not str:
            raise IdentityError("a credential is a string", code="credential.malformed")
        try:
            chain = verify_chain(
                credential,
                keys=snap.keys,
                trust_domain=self.trust_domain,
                audience=self.audience,
                now_s=now_ns // _NS,
                leeway_s=self.leeway_s,
                max_ttl_s=self.max_ttl_s,
                max_links=self.max_links,
            )
        except IdentityError:
            raise
        except Exception as exc:  # a library limit or failure is a deny, never an allow
            log.warning("credential verification failed: %s: %s", type(exc).__name__, exc)
            raise IdentityError(
                f"verification failed ({type(exc).__name__})", code="credential.error"
            ) from None
        problem = revocation_problem(chain, snap.revoked)
        if problem is not None:
            raise problem
        entry = VerifiedCredential(chain, snap.generation)
        if len(self._cache) >= self._cache_size:
            self._prune(now_ns)
        self._cache[credential] = entry
        return entry

    def _recheck(self, entry: VerifiedCredential, snap: _Snapshot, credential: str) -> None:
        """A cached chain after the registry changed: revocations and the root key again."""
        root_kid = entry.chain.kids[0]
        problem = revocation_problem(entry.chain, snap.revoked)
        if problem is None and root_kid not in snap.keys:
            problem = IdentityError(
                f"key {root_kid!r} is no longer trusted", code="credential.unknown_key"
            )
        if problem is not None:
            self._cache.pop(credential, None)
            raise problem
        entry.generation = snap.generation

    def _prune(self, now_ns: int) -> None:
        with self._lock:
            expired = [k for k, v in self._cache.items() if v.not_after_ns <= now_ns]
            for k in expired:
                self._cache.pop(k, None)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            # Counts outlive cache entries (a budget must not reset when the cache is
            # cleared); they are dropped once their credential has expired.
            for jti in [j for j, t in self._spent_until.items() if t <= now_ns]:
                del self._spent_until[jti]
                self._calls.pop(jti, None)

    def admit(
        self,
        verified: VerifiedCredential,
        tool: str,
        resources: tuple[Resource, ...],
        *,
        spend: Spend | None = None,
        now_ns: int = 0,
    ) -> IdentityError | None:
        """Why an action is outside ``verified``'s scope or budget, or None (then a call is
        counted against every ``max_calls`` budget of the chain).

        ``spend`` counts the calls in a store every process shares (the Guard passes its
        controls' :meth:`~ringfence.runtime.controls.Controls.spend_credential`): it takes one
        call from each ``(jti, limit)`` budget, or none, and returns the jti of a budget that
        is used up.  Without it, calls are counted in this process only.
        """
        problem = verified.outside_scope(tool, resources)
        if problem is not None or not verified.call_limits:
            return problem
        if spend is not None:
            used_up = spend(verified.call_limits, verified.not_after_ns, now_ns)
            if used_up is None:
                return None
            limit = dict(verified.call_limits).get(used_up)
            return IdentityError(
                f"budget max_calls ({limit}) of credential {used_up} is used up",
                code="credential.budget_exhausted",
            )
        with self._lock:
            calls = self._calls
            for jti, limit in verified.call_limits:
                if calls.get(jti, 0) + 1 > limit:
                    return IdentityError(
                        f"budget max_calls ({limit}) of credential {jti} is used up",
                        code="credential.budget_exhausted",
                    )
            for jti, _ in verified.call_limits:
                calls[jti] = calls.get(jti, 0) + 1
                until = self._spent_until.get(jti, 0)
                self._spent_until[jti] = max(until, verified.not_after_ns)
        return None

    def forget(self, credentials: Iterable[str] = ()) -> None:
        """Drop cached verifications (all when none are named); the next check verifies again."""
        with self._lock:
            names = list(credentials)
            if not names:
                self._cache.clear()
            for c in names:
                self._cache.pop(c, None)

"""The trust domain's issuing side: agents, the key ring, credentials, rotation, revocation.

An :class:`Authority` works over an :class:`~ringfence.runtime.ports.IdentityRegistry`:

* ``create_agent(name)`` registers ``spiffe://<trust domain>/agent/<name>`` with a new
  Ed25519 key pair (the private key stays in the registry's key store);
* ``issue(agent, tools=..., ...)`` signs a short-lived root credential with the ring's
  active key; ``delegate(chain, agent, ...)`` extends a chain with a narrower credential for
  a sub-agent, signed with the parent agent's key;
* ``rotate()`` adds a new ring key that signs from now on and retires the old one, which
  keeps verifying the credentials it signed until they expire (so a rotation never fails an
  in-flight call); ``rotate_agent(agent)`` does the same for an agent's own key;
* ``revoke_agent`` / ``revoke_key`` / ``revoke_credential`` take effect on the next check of
  every Verifier on the registry;
* ``jwks()`` is the JSON Web Key Set of the ring's public keys, for other services.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from nacl.signing import SigningKey

from ringfence.core.identity.claims import agent_id, id_problem, trust_domain_id
from ringfence.core.identity.issue import delegate, root_credential
from ringfence.core.identity.records import (
    RING,
    AgentRecord,
    KeyRecord,
    RegistryState,
    Revocation,
)
from ringfence.core.identity.token import CHAIN_SEPARATOR, jwk, parse, public_key_of, thumbprint
from ringfence.errors import ConfigError, IdentityError
from ringfence.runtime.ports import Clock, IdentityRegistry

__all__ = ["Authority"]

_NS = 1_000_000_000


def _new_id() -> str:
    return secrets.token_urlsafe(16)


class Authority:
    """Creates agents and issues, delegates, rotates and revokes; see the module docstring."""

    def __init__(
        self,
        registry: IdentityRegistry,
        *,
        trust_domain: str | None = None,
        clock: Clock = time.time_ns,
        max_ttl_s: int = 86_400,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self.max_ttl_s = max_ttl_s
        bound = registry.state().trust_domain
        if bound is None:
            if trust_domain is None:
                raise ConfigError(
                    "the identity registry is new: name its trust domain (--trust-domain)",
                    code="config.trust_domain",
                )
            try:
                trust_domain_id(trust_domain)
            except ValueError as exc:
                raise ConfigError(str(exc), code="config.trust_domain") from None
            bound = registry.initialise(trust_domain)
        elif trust_domain is not None and trust_domain != bound:
            raise ConfigError(
                f"the identity registry belongs to trust domain {bound!r}, not {trust_domain!r}",
                code="config.trust_domain",
            )
        self.trust_domain = bound
        if self._active_ring_key() is None:
            self.rotate()

    # -- agents and keys -------------------------------------------------------------------

    def _now_s(self) -> int:
        return self._clock() // _NS

    def _active_ring_key(self, state: RegistryState | None = None) -> KeyRecord | None:
        state = state or self.registry.state()
        revoked = {r.id for r in state.revocations if r.kind == "key"}
        active = [
            k
            for k in state.keys
            if k.owner == RING and k.retired_ns is None and k.kid not in revoked
        ]
        return active[-1] if active else None

    def agent(self, agent: str, state: RegistryState | None = None) -> AgentRecord:
        """The registered agent ``agent`` (an id, or a name in this trust domain)."""
        wanted = agent if agent.startswith("spiffe://") else self.agent_id(agent)
        for record in (state or self.registry.state()).agents:
            if record.id == wanted:
                return record
        raise IdentityError(f"no agent {wanted}", code="identity.not_found")

    def _agent_key(self, agent: str, state: RegistryState) -> tuple[AgentRecord, bytes]:
        record = self.agent(agent, state)
        return record, next(k.public for k in state.keys if k.kid == record.kid)

    def agent_id(self, name: str) -> str:
        """The id of agent ``name`` in this trust domain."""
        try:
            return agent_id(self.trust_domain, name)
        except ValueError as exc:
            raise IdentityError(str(exc), code="identity.invalid_id") from None

    def create_agent(self, name: str) -> AgentRecord:
        """Register agent ``name`` (or a full id in this trust domain) with a new key pair."""
        ident = name if name.startswith("spiffe://") else self.agent_id(name)
        problem = id_problem(ident)
        if problem or not ident.startswith(trust_domain_id(self.trust_domain) + "/"):
            raise IdentityError(
                problem or f"{ident} is not in {self.trust_domain}", code="identity.invalid_id"
            )
        key = SigningKey.generate()
        public = bytes(key.verify_key)
        now = self._clock()
        record = AgentRecord(ident, thumbprint(public), now)
        self.registry.add_agent(record, KeyRecord(record.kid, ident, public, now), bytes(key))
        return record

    def rotate(self) -> KeyRecord:
        """A new ring key signs from now on; the old one verifies what it signed until expiry."""
        old = self._active_ring_key()
        return self._add_key(RING, None if old is None else old.kid)

    def rotate_agent(self, agent: str) -> KeyRecord:
        """A new key pair for ``agent``; credentials binding the old key stay valid."""
        record = self.agent(agent)
        return self._add_key(record.id, record.kid)

    def _add_key(self, owner: str, retire: str | None) -> KeyRecord:
        key = SigningKey.generate()
        public = bytes(key.verify_key)
        now = self._clock()
        record = KeyRecord(thumbprint(public), owner, public, now)
        self.registry.add_key(record, bytes(key), retire=retire, at_ns=now)
        return record

    # -- credentials -----------------------------------------------------------------------

    def issue(
        self,
        agent: str,
        *,
        tools: tuple[str, ...],
        resources: tuple[str, ...] = (),
        roles: tuple[str, ...] = (),
        budgets: Mapping[str, int | float] | None = None,
        audience: tuple[str, ...] = ("ringfence",),
        user: str | None = None,
        ttl_s: int = 900,
        delegable: int = 0,
    ) -> str:
        """A root credential for ``agent``, signed by the ring's active key."""
        if not 0 < ttl_s <= self.max_ttl_s:
            raise IdentityError(f"ttl must be 1..{self.max_ttl_s} seconds", code="identity.invalid")
        state = self.registry.state()
        record, public = self._agent_key(agent, state)
        ring = self._active_ring_key(state)
        if ring is None:
            raise IdentityError("the key ring has no active key", code="identity.no_key")
        return root_credential(
            ring_key=SigningKey(self.registry.private_key(ring.kid)),
            trust_domain=self.trust_domain,
            agent=record.id,
            agent_public=public,
            jti=_new_id(),
            now_s=self._now_s(),
            ttl_s=ttl_s,
            tools=tuple(tools),
            resources=tuple(resources),
            roles=tuple(roles),
            budgets=budgets,
            audience=tuple(audience),
            user=user,
            delegable=delegable,
        )

    def delegate(self, chain: str, agent: str, **narrower: Any) -> str:
        """``chain`` extended by a credential for ``agent``, signed with the key the parent
        credential binds (held in this registry).  Keywords as for
        :func:`ringfence.core.identity.issue.delegate` (tools, resources, roles, budgets,
        audience, ttl_s, delegable); IdentityError if it would be broader than its parent."""
        parent = parse(chain.rsplit(CHAIN_SEPARATOR, 1)[-1]).claims
        parent_kid = thumbprint(public_key_of(parent.cnf))
        record, public = self._agent_key(agent, self.registry.state())
        return delegate(
            chain,
            parent_key=SigningKey(self.registry.private_key(parent_kid)),
            agent=record.id,
            agent_public=public,
            jti=_new_id(),
            now_s=self._now_s(),
            **narrower,
        )

    # -- revocation and publication --------------------------------------------------------

    def _revoke(self, kind: str, ident: str, reason: str) -> Revocation:
        revocation = Revocation(kind, ident, self._clock(), reason)
        self.registry.revoke(revocation)
        return revocation

    def revoke_agent(self, agent: str, reason: str = "") -> Revocation:
        """Revoke an agent: every chain it appears in is refused from the next check on."""
        return self._revoke("agent", self.agent(agent).id, reason)

    def revoke_key(self, kid: str, reason: str = "") -> Revocation:
        """Revoke a ring or agent key: what it signed or binds is refused from now on."""
        if not any(k.kid == kid for k in self.registry.state().keys):
            raise IdentityError(f"no key {kid!r}", code="identity.not_found")
        return self._revoke("key", kid, reason)

    def revoke_credential(self, credential: str, reason: str = "") -> Revocation:
        """Revoke a credential by its id (``jti``), or the last one of a presented chain."""
        jti = credential
        if "." in credential:
            jti = parse(credential.rsplit(CHAIN_SEPARATOR, 1)[-1]).claims.jti
        return self._revoke("credential", jti, reason)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The ring's public keys that still verify something (RFC 7517 JWK Set)."""
        state = self.registry.state()
        revoked = {r.id for r in state.revocations if r.kind == "key"}
        horizon = self._clock() - self.max_ttl_s * _NS
        return {
            "keys": [
                jwk(k.public)
                for k in state.keys
                if k.owner == RING
                and k.kid not in revoked
                and (k.retired_ns is None or k.retired_ns > horizon)
            ]
        }

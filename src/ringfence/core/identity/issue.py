"""Making credentials: a root credential for an agent, and a delegated one for a sub-agent.

:func:`root_credential` is what the trust domain's key ring signs; :func:`delegate` is what an
agent does with its own key to hand a narrower credential to a sub-agent — it refuses, with
the code a verifier would give, to make one that is broader than its parent.  Pure: keys,
the time and the credential id are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from nacl.signing import SigningKey

from ringfence.core.identity.chain import narrowing_problem
from ringfence.core.identity.claims import Claims, claims_problem, trust_domain_id
from ringfence.core.identity.token import (
    CHAIN_SEPARATOR,
    confirmation,
    digest,
    encode,
    parse,
    public_key_of,
    thumbprint,
)
from ringfence.errors import IdentityError

__all__ = ["delegate", "root_credential"]


def _checked(claims: Claims) -> Claims:
    problem = claims_problem(claims)
    if problem:
        raise IdentityError(problem, code="credential.malformed")
    return claims


def root_credential(
    *,
    ring_key: SigningKey,
    trust_domain: str,
    agent: str,
    agent_public: bytes,
    jti: str,
    now_s: int,
    ttl_s: int,
    tools: tuple[str, ...],
    resources: tuple[str, ...] = (),
    roles: tuple[str, ...] = (),
    budgets: Mapping[str, int | float] | None = None,
    audience: tuple[str, ...] = ("ringfence",),
    user: str | None = None,
    delegable: int = 0,
) -> str:
    """A root credential for ``agent`` (whose key is ``agent_public``), signed by ``ring_key``."""
    claims = _checked(
        Claims(
            iss=trust_domain_id(trust_domain),
            sub=agent,
            aud=tuple(audience),
            iat=now_s,
            nbf=now_s,
            exp=now_s + ttl_s,
            jti=jti,
            cnf=confirmation(agent_public),
            tools=tuple(tools),
            resources=tuple(resources),
            roles=tuple(roles),
            budgets=dict(budgets or {}),
            user=user,
            delegable=delegable,
        )
    )
    return encode(claims, ring_key, thumbprint(bytes(ring_key.verify_key)))


def delegate(
    chain: str,
    *,
    parent_key: SigningKey,
    agent: str,
    agent_public: bytes,
    jti: str,
    now_s: int,
    ttl_s: int | None = None,
    tools: tuple[str, ...] | None = None,
    resources: tuple[str, ...] | None = None,
    roles: tuple[str, ...] | None = None,
    budgets: Mapping[str, int | float] | None = None,
    audience: tuple[str, ...] | None = None,
    delegable: int | None = None,
) -> str:
    """``chain`` extended by a credential for ``agent``, signed with the parent's key.

    What is not given is inherited from the parent (the expiry is the parent's, or ``ttl_s``
    from now if that is sooner; ``delegable`` is one less).  IdentityError, with the code a
    verifier would give, if the result would be broader than the parent or if
    ``parent_key`` is not the key the parent credential binds.
    """
    parent_text = chain.rsplit(CHAIN_SEPARATOR, 1)[-1]
    parent = parse(parent_text).claims
    if bytes(parent_key.verify_key) != public_key_of(parent.cnf):
        raise IdentityError(
            "this key is not the one the parent credential binds", code="delegation.bad_signature"
        )
    exp = parent.exp if ttl_s is None else min(parent.exp, now_s + ttl_s)
    claims = _checked(
        Claims(
            iss=parent.sub,
            sub=agent,
            aud=parent.aud if audience is None else tuple(audience),
            iat=now_s,
            nbf=now_s,
            exp=exp,
            jti=jti,
            cnf=confirmation(agent_public),
            tools=parent.tools if tools is None else tuple(tools),
            resources=parent.resources if resources is None else tuple(resources),
            roles=parent.roles if roles is None else tuple(roles),
            budgets=dict(parent.budgets if budgets is None else budgets),
            user=parent.user,
            delegable=max(parent.delegable - 1, 0) if delegable is None else delegable,
            depth=parent.depth + 1,
            parent=digest(parent_text),
        )
    )
    problem = narrowing_problem(parent, claims)
    if problem is not None:
        raise problem
    token = encode(claims, parent_key, thumbprint(bytes(parent_key.verify_key)))
    return f"{chain}{CHAIN_SEPARATOR}{token}"

"""Delegation that only narrows, and verification of a whole chain up to a trusted root.

A chain is a root credential, signed by one of the trust domain's keys, followed by zero or
more delegated credentials, each signed by the key its parent binds (``cnf``) and naming its
parent by digest.  :func:`narrowing_problem` says why a child is broader than its parent;
:func:`verify_chain` checks every link — signature, issuer, parent digest, narrowing, time,
audience — and :func:`revocation_problem` checks a verified chain against revocations (kept
apart so a cached chain can be re-checked without verifying signatures again).

Every failure is an :class:`~ringfence.errors.IdentityError` with a stable code; the codes are
listed in docs/identity.md.  Pure: keys, revocations and the time are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nacl.signing import VerifyKey

from ringfence.core.identity.claims import Claims, claims_problem
from ringfence.core.identity.scopes import resources_cover, tools_cover
from ringfence.core.identity.token import (
    CHAIN_SEPARATOR,
    MAX_TOKEN_BYTES,
    Link,
    digest,
    parse,
    public_key_of,
    thumbprint,
)
from ringfence.errors import IdentityError

__all__ = [
    "MAX_LINKS",
    "Chain",
    "Revoked",
    "TrustedKey",
    "narrowing_problem",
    "revocation_problem",
    "verify_chain",
]

MAX_LINKS = 8


@dataclass(frozen=True)
class TrustedKey:
    """A trust-domain signing key a verifier accepts; ``retired_s`` is when it stopped
    signing (seconds), None while it is the active key."""

    public: bytes
    retired_s: int | None = None


@dataclass(frozen=True)
class Revoked:
    """What has been revoked, and (if not None) which agents are registered at all."""

    keys: frozenset[str] = frozenset()
    holders: frozenset[str] = frozenset()  # the ``x`` of each revoked key known to the registry
    agents: frozenset[str] = frozenset()
    credentials: frozenset[str] = frozenset()
    registered: frozenset[str] | None = None


@dataclass(frozen=True)
class Chain:
    """A verified chain: its links root first, the key id that signed each, and the window
    (seconds, leeway included) in which every link is valid."""

    links: tuple[Link, ...]
    kids: tuple[str, ...]
    not_before_s: int
    not_after_s: int

    @property
    def leaf(self) -> Claims:
        """The claims of the credential being presented (the last link)."""
        return self.links[-1].claims

    @property
    def agents(self) -> tuple[str, ...]:
        """The agent ids of the chain, root first; the last one is the acting agent."""
        return tuple(link.claims.sub for link in self.links)


def _fail(code: str, message: str) -> IdentityError:
    return IdentityError(message, code=code)


def narrowing_problem(parent: Claims, child: Claims) -> IdentityError | None:
    """Why ``child`` is not a valid narrowing of ``parent``, or None.

    Scopes (tools, resources, roles) must be subsets, every budget of the parent must be
    present and no larger, expiry no later, audiences a subset, the user the same, and the
    parent must still allow a level of delegation (``delegable``), which shrinks by one.
    """
    if parent.delegable < 1:
        return _fail("delegation.too_deep", f"{parent.sub} may not delegate further")
    if child.delegable > parent.delegable - 1:
        return _fail(
            "delegation.too_deep",
            f"delegable {child.delegable} exceeds what the parent leaves ({parent.delegable - 1})",
        )
    if child.depth != parent.depth + 1:
        return _fail("credential.malformed", "depth is not the parent's depth + 1")
    wider = tools_cover(parent.tools, child.tools)
    if wider is not None:
        return _fail("delegation.scope_widened", f"tool pattern {wider!r} is not in the parent's")
    wider = resources_cover(parent.resources, child.resources)
    if wider is not None:
        return _fail(
            "delegation.scope_widened", f"resource pattern {wider!r} is not in the parent's"
        )
    extra_roles = set(child.roles) - set(parent.roles)
    if extra_roles:
        return _fail(
            "delegation.scope_widened", f"roles {sorted(extra_roles)} are not the parent's"
        )
    for name, limit in parent.budgets.items():
        value = child.budgets.get(name)
        if value is None or value > limit:
            return _fail(
                "delegation.budget_widened",
                f"budget {name} {'is missing' if value is None else value} "
                f"(the parent's is {limit})",
            )
    if child.exp > parent.exp:
        return _fail("delegation.expiry_extended", "expires after its parent")
    extra = set(child.aud) - set(parent.aud)
    if extra:
        return _fail(
            "delegation.audience_widened", f"audiences {sorted(extra)} are not the parent's"
        )
    if child.user != parent.user:
        return _fail("delegation.user_changed", "acts for another user than its parent")
    return None


def _links(text: str) -> list[Link]:
    if not isinstance(text, str) or not text:
        raise _fail("credential.missing", "no credential was presented")
    if len(text) > MAX_LINKS * (MAX_TOKEN_BYTES + 1):
        raise _fail("credential.malformed", "credential is too long")
    parts = text.split(CHAIN_SEPARATOR)
    if len(parts) > MAX_LINKS:
        raise _fail("delegation.too_deep", f"a chain has at most {MAX_LINKS} links")
    return [parse(p) for p in parts]


def verify_chain(
    text: str,
    *,
    keys: Mapping[str, TrustedKey],
    trust_domain: str,
    audience: str,
    now_s: int,
    leeway_s: int = 0,
    max_ttl_s: int = 86_400,
    max_links: int = MAX_LINKS,
) -> Chain:
    """Verify every link of ``text`` (tokens joined by ``~``, root first) or raise."""
    links = _links(text)
    if len(links) > max_links:
        raise _fail("delegation.too_deep", f"this verifier accepts at most {max_links} links")
    root = links[0]
    if root.claims.parent is not None or root.claims.depth != 0:
        raise _fail(
            "delegation.unknown_parent",
            f"{root.claims.sub}'s credential is delegated but its parent is not presented",
        )
    trusted = keys.get(root.kid)
    if trusted is None:
        raise _fail("credential.unknown_key", f"key {root.kid!r} is not a trusted key")
    if not root.signed_by(VerifyKey(trusted.public)):
        raise _fail("credential.bad_signature", "the root credential's signature does not verify")
    if root.claims.iss != f"spiffe://{trust_domain}":
        raise _fail("credential.wrong_issuer", f"issued by {root.claims.iss!r}")
    if trusted.retired_s is not None and root.claims.iat > trusted.retired_s:
        raise _fail("credential.key_retired", f"key {root.kid!r} was retired before it signed")
    kids = [root.kid]
    prefix = f"spiffe://{trust_domain}/"
    for i, link in enumerate(links):
        claims = link.claims
        problem = claims_problem(claims)
        if problem:
            raise _fail("credential.malformed", problem)
        if not claims.sub.startswith(prefix):
            raise _fail("credential.wrong_trust_domain", f"{claims.sub} is not in {trust_domain}")
        if i == 0:
            continue
        parent = links[i - 1]
        if claims.parent != digest(parent.text):
            raise _fail(
                "delegation.parent_mismatch",
                f"{claims.sub}'s credential names another parent than the one presented",
            )
        signer = public_key_of(parent.claims.cnf)
        if link.kid != thumbprint(signer) or not link.signed_by(VerifyKey(signer)):
            raise _fail(
                "delegation.bad_signature",
                f"{claims.sub}'s credential is not signed by its parent {parent.claims.sub}",
            )
        if claims.iss != parent.claims.sub:
            raise _fail("delegation.wrong_issuer", f"issued by {claims.iss!r}, not its parent")
        narrower = narrowing_problem(parent.claims, claims)
        if narrower is not None:
            raise narrower
        kids.append(link.kid)
    for link in links:
        if link.claims.exp - link.claims.iat > max_ttl_s:
            raise _fail("credential.lifetime_too_long", f"valid for more than {max_ttl_s} s")
    not_before = max(link.claims.nbf for link in links) - leeway_s
    not_after = min(link.claims.exp for link in links) + leeway_s
    if now_s < not_before:
        raise _fail("credential.not_yet_valid", f"not valid before {not_before + leeway_s}")
    if now_s >= not_after:
        raise _fail("credential.expired", f"expired at {not_after - leeway_s}")
    if audience not in links[-1].claims.aud:
        raise _fail("credential.wrong_audience", f"not issued for {audience!r}")
    return Chain(tuple(links), tuple(kids), not_before, not_after)


def revocation_problem(chain: Chain, revoked: Revoked) -> IdentityError | None:
    """Why a verified chain is no longer acceptable (a revoked credential, agent or key, or
    an agent that is not registered), or None."""
    for link, kid in zip(chain.links, chain.kids, strict=True):
        claims = link.claims
        if claims.jti in revoked.credentials:
            return _fail("credential.revoked", f"credential {claims.jti} is revoked")
        if claims.sub in revoked.agents:
            return _fail("credential.agent_revoked", f"agent {claims.sub} is revoked")
        if kid in revoked.keys:
            return _fail("credential.key_revoked", f"key {kid}, which signed it, is revoked")
        if claims.cnf.jwk.x in revoked.holders:
            return _fail("credential.key_revoked", f"the key of {claims.sub} it binds is revoked")
        if revoked.registered is not None and claims.sub not in revoked.registered:
            return _fail("credential.unknown_agent", f"agent {claims.sub} is not registered")
    return None

"""Agent ids and the claims a credential carries.

An agent id is a SPIFFE id, ``spiffe://<trust domain>/agent/<name>``; the trust domain
itself, ``spiffe://<trust domain>``, is the issuer of root credentials.

A credential's claims (JWT claim names where a registered one exists, RFC 7519)::

    iss        issuer: the trust domain (a root credential) or the parent agent (delegated)
    sub        the agent this credential is for
    aud        audiences: the services that may accept it (a Verifier has one)
    iat nbf exp  issued at / not before / expires, in seconds since the epoch
    jti        the credential's id (revocable)
    cnf        {"jwk": {...}}: the agent's public key (RFC 7800); it signs delegated credentials
    user       the user the agent acts for, if any
    tools      tool name globs it may call
    resources  type:glob patterns of the resources it may touch
    roles      roles policies may match on
    budgets    {name: number}: limits (``max_calls`` is enforced by the Verifier)
    delegable  how many more levels of delegation may follow this credential
    depth      0 for a root credential, parent's depth + 1 for a delegated one
    parent     the digest of the parent credential (delegated credentials only)

Everything here is pure: times are passed in.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Annotated, Any

import msgspec

from ringfence.core.identity.scopes import MAX_PATTERNS, pattern_problem

__all__ = [
    "CREDENTIAL_FIELDS",
    "Claims",
    "Confirmation",
    "PublicJwk",
    "agent_id",
    "claims_problem",
    "id_problem",
    "policy_view",
    "trust_domain_id",
    "trust_domain_of",
]

MAX_DEPTH = 8
MAX_ID_LENGTH = 2048
_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")
_SEGMENT = r"[A-Za-z0-9._-]+"
_AGENT = re.compile(rf"^spiffe://([a-z0-9._-]{{1,255}})/agent/({_SEGMENT}(?:/{_SEGMENT})*)$")
_BUDGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

_Short = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_Patterns = Annotated[tuple[str, ...], msgspec.Meta(max_length=MAX_PATTERNS)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_DEPTH)]
_Time = Annotated[int, msgspec.Meta(ge=0, le=2**40)]


class PublicJwk(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An Ed25519 public key as a JWK (RFC 8037): ``kty`` OKP, ``crv`` Ed25519, ``x``."""

    kty: str
    crv: str
    x: str


class Confirmation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``cnf`` claim (RFC 7800): the key the credential's holder signs with."""

    jwk: PublicJwk


class Claims(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The claims of one credential (see the module docstring)."""

    iss: _Short
    sub: _Short
    aud: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=16)]
    iat: _Time
    nbf: _Time
    exp: _Time
    jti: Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
    cnf: Confirmation
    tools: _Patterns
    resources: _Patterns = ()
    roles: Annotated[tuple[str, ...], msgspec.Meta(max_length=32)] = ()
    budgets: dict[str, int | float] = msgspec.field(default_factory=dict)
    user: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    delegable: _Count = 0
    depth: _Count = 0
    parent: str | None = None


def trust_domain_id(trust_domain: str) -> str:
    """``spiffe://<trust domain>``: the issuer of the trust domain's root credentials."""
    if not _DOMAIN.match(trust_domain):
        raise ValueError(
            f"{trust_domain!r} is not a trust domain (lower-case letters, digits, '.', '-', '_')"
        )
    return f"spiffe://{trust_domain}"


def agent_id(trust_domain: str, name: str) -> str:
    """``spiffe://<trust domain>/agent/<name>``; ValueError if either part is not allowed."""
    text = f"{trust_domain_id(trust_domain)}/agent/{name}"
    problem = id_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def id_problem(text: str) -> str | None:
    """Why ``text`` is not an agent id, or None."""
    if len(text) > MAX_ID_LENGTH:
        return f"agent id longer than {MAX_ID_LENGTH} characters"
    m = _AGENT.match(text)
    if m is None:
        return (
            f"{text!r} is not an agent id (spiffe://<trust domain>/agent/<name>, the name made "
            "of letters, digits, '.', '-', '_' and '/')"
        )
    if any(seg in (".", "..") for seg in m.group(2).split("/")):
        return f"{text!r}: '.' and '..' are not allowed as path segments"
    return None


def trust_domain_of(agent: str) -> str:
    """The trust domain of an agent id (which must be valid)."""
    m = _AGENT.match(agent)
    if m is None:
        raise ValueError(f"{agent!r} is not an agent id")
    return m.group(1)


def claims_problem(c: Claims) -> str | None:
    """What is wrong with decoded claims beyond their types, or None (used at verification)."""
    problem = id_problem(c.sub)
    if problem:
        return f"sub: {problem}"
    if c.exp <= c.nbf or c.exp <= c.iat:
        return "exp is not after iat and nbf"
    if any(not a or len(a) > 256 for a in c.aud):
        return "aud: an audience is empty or too long"
    if any(not r or len(r) > 128 for r in c.roles):
        return "roles: a role is empty or too long"
    problem = _patterns_problem(c.tools, c.resources)
    if problem:
        return problem
    if len(c.budgets) > 32:
        return "budgets: more than 32 entries"
    for key, value in c.budgets.items():
        if not _BUDGET.match(key):
            return f"budgets: {key!r} is not a budget name"
        if isinstance(value, bool) or not math.isfinite(value) or value < 0:
            return f"budgets.{key}: must be a finite number >= 0"
    if (c.depth == 0) != (c.parent is None):
        return "depth and parent disagree (a root credential has neither)"
    if c.cnf.jwk.kty != "OKP" or c.cnf.jwk.crv != "Ed25519":
        return "cnf: only Ed25519 (OKP) keys are accepted"
    return None


@lru_cache(maxsize=1024)
def _patterns_problem(tools: tuple[str, ...], resources: tuple[str, ...]) -> str | None:
    for patterns, resource in ((tools, False), (resources, True)):
        for pattern in patterns:
            problem = pattern_problem(pattern, resource=resource)
            if problem:
                return problem
    return None


def policy_view(c: Claims, kid: str) -> dict[str, Any]:
    """The ``credential`` object policies see: the leaf credential's claims and the key id
    of the trust-domain key that signed the chain's root."""
    return {
        "iss": c.iss,
        "sub": c.sub,
        "aud": list(c.aud),
        "iat": c.iat,
        "nbf": c.nbf,
        "exp": c.exp,
        "jti": c.jti,
        "user": c.user,
        "tools": list(c.tools),
        "resources": list(c.resources),
        "roles": list(c.roles),
        "budgets": dict(c.budgets),
        "delegable": c.delegable,
        "depth": c.depth,
        "kid": kid,
    }


# The fields a policy condition may name as ``credential.<field>`` (``budgets`` takes a name).
CREDENTIAL_FIELDS = (
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "user",
    "tools",
    "resources",
    "roles",
    "budgets",
    "delegable",
    "depth",
    "kid",
)

"""Builders for identity tests: fixed keys, a fixed time, claims with overridable defaults."""

from __future__ import annotations

from typing import Any

import msgspec
from nacl.signing import SigningKey

from ringfence.core.identity.chain import Chain, TrustedKey, verify_chain
from ringfence.core.identity.claims import Claims
from ringfence.core.identity.issue import delegate, root_credential
from ringfence.core.identity.token import confirmation, digest, encode, thumbprint

T0 = 1_700_000_000
TD = "corp.example"
RING = SigningKey(bytes([1]) * 32)
OTHER_RING = SigningKey(bytes([2]) * 32)
PLANNER = SigningKey(bytes([3]) * 32)
RESEARCHER = SigningKey(bytes([4]) * 32)
FETCHER = SigningKey(bytes([5]) * 32)
MALLORY = SigningKey(bytes([6]) * 32)


def agent(name: str) -> str:
    return f"spiffe://{TD}/agent/{name}"


def pub(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def kid(key: SigningKey) -> str:
    return thumbprint(pub(key))


KEYS = {kid(RING): TrustedKey(pub(RING))}


def root(**over: Any) -> str:
    """A root credential for the planner: read tools in /workspace, delegable twice."""
    args: dict[str, Any] = {
        "ring_key": RING,
        "trust_domain": TD,
        "agent": agent("planner"),
        "agent_public": pub(PLANNER),
        "jti": "root-0001",
        "now_s": T0,
        "ttl_s": 900,
        "tools": ("read_*", "search"),
        "resources": ("path:/workspace/**", "host:api.example.com"),
        "roles": ("analyst",),
        "budgets": {"max_calls": 100, "max_cost": 5.0},
        "audience": ("ringfence", "billing"),
        "user": "alice",
        "delegable": 2,
    }
    args.update(over)
    return root_credential(**args)


def child(chain: str, **over: Any) -> str:
    """``chain`` delegated by the planner to the researcher (inheriting everything)."""
    args: dict[str, Any] = {
        "parent_key": PLANNER,
        "agent": agent("researcher"),
        "agent_public": pub(RESEARCHER),
        "jti": "child-0001",
        "now_s": T0 + 10,
    }
    args.update(over)
    return delegate(chain, **args)


def claims_of(token: str) -> Claims:
    from ringfence.core.identity.token import parse

    return parse(token.rsplit("~", 1)[-1]).claims


def forge(chain: str, key: SigningKey, **over: Any) -> str:
    """``chain`` plus a child signed by ``key`` with claims that skip the narrowing check:
    the last link's claims with ``over`` applied (and the right parent digest unless given)."""
    parent_text = chain.rsplit("~", 1)[-1]
    parent = claims_of(chain)
    base = msgspec.structs.replace(
        parent,
        iss=parent.sub,
        sub=agent("researcher"),
        jti="forged-0001",
        iat=T0 + 10,
        nbf=T0 + 10,
        cnf=confirmation(pub(RESEARCHER)),
        delegable=max(parent.delegable - 1, 0),
        depth=parent.depth + 1,
        parent=digest(parent_text),
    )
    return f"{chain}~{encode(msgspec.structs.replace(base, **over), key, kid(key))}"


def resign(token: str, key: SigningKey, **over: Any) -> str:
    """The last link of ``token`` re-signed by ``key`` with ``over`` applied to its claims."""
    head, _, last = token.rpartition("~")
    claims = msgspec.structs.replace(claims_of(last), **over)
    out = encode(claims, key, kid(key))
    return f"{head}~{out}" if head else out


def verify(text: str, *, now_s: int = T0 + 20, audience: str = "ringfence", **kw: Any) -> Chain:
    kw.setdefault("keys", KEYS)
    return verify_chain(text, trust_domain=TD, audience=audience, now_s=now_s, **kw)

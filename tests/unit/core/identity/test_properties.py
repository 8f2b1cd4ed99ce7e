"""Properties: no delegated credential is ever broader than its parent; the glob automata
agree with the policy engine's regexes; the strict parser accepts nothing PyJWT would not."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ringfence.core.action import Resource
from ringfence.core.identity.chain import narrowing_problem
from ringfence.core.identity.claims import Claims
from ringfence.core.identity.scopes import Scope, _covered, _Nfa, _tokens
from ringfence.core.identity.token import ALG, encode, jws, parse
from ringfence.core.policy.globs import name_regex, path_regex
from ringfence.errors import IdentityError

from ._support import PLANNER, RING, T0, claims_of, forge, kid, root, verify

# Small alphabets make collisions (and so interesting inclusions) likely.
GLOB_CHARS = "ab/*?"
glob = st.text(GLOB_CHARS, min_size=1, max_size=6)
SAMPLES = ["".join(p) for n in range(6) for p in itertools.product("ab/c", repeat=n)]


def matches_any(patterns: tuple[str, ...], value: str, path: bool) -> bool:
    regex = path_regex if path else name_regex
    return any(regex(p).match(value) is not None for p in patterns)


@given(pattern=glob, value=st.text("ab/c", max_size=7), path=st.booleans())
def test_automaton_agrees_with_the_policy_regexes(pattern: str, value: str, path: bool) -> None:
    nfa = _Nfa((_tokens(pattern, path),))
    states = nfa.start
    for ch in value:
        # the automaton's alphabet: the pattern's literals, "/", and None for anything else
        states = nfa.step(states, ch if ch in pattern or ch == "/" else None)
    expected = (path_regex if path else name_regex)(pattern).match(value) is not None
    assert nfa.accepts(states) is expected


@given(child=glob, parents=st.lists(glob, min_size=1, max_size=3), path=st.booleans())
def test_inclusion_is_sound(child: str, parents: list[str], path: bool) -> None:
    """If the check says covered, no string the child admits is refused by the parents."""
    key = tuple(sorted(set(parents)))
    if _covered(child, key, path):
        for value in SAMPLES:
            if matches_any((child,), value, path):
                assert matches_any(key, value, path), (child, key, value)


@given(pattern=glob, path=st.booleans())
def test_a_pattern_covers_itself_and_is_covered_by_everything(pattern: str, path: bool) -> None:
    assert _covered(pattern, (pattern,), path)
    assert _covered(pattern, ("**" if path else "*",), path)


names = st.lists(st.text("ab*?", min_size=1, max_size=4), min_size=1, max_size=3)
res_patterns = st.lists(
    st.tuples(st.sampled_from(["path", "host", "*"]), st.text("ab/*?", min_size=1, max_size=5)),
    max_size=3,
).map(lambda xs: tuple(f"{t}:{g}" for t, g in xs))
budgets = st.dictionaries(
    st.sampled_from(["max_calls", "max_cost"]), st.integers(min_value=0, max_value=5), max_size=2
)


@st.composite
def scopes(draw: Any) -> dict[str, Any]:
    return {
        "tools": tuple(draw(names)),
        "resources": draw(res_patterns),
        "budgets": draw(budgets),
        "exp": T0 + draw(st.integers(min_value=100, max_value=900)),
        "aud": tuple(
            draw(
                st.lists(
                    st.sampled_from(["ringfence", "b", "c"]), min_size=1, max_size=3, unique=True
                )
            )
        ),
        "roles": tuple(draw(st.lists(st.sampled_from(["r1", "r2"]), max_size=2, unique=True))),
        "user": draw(st.sampled_from(["alice", "bob", None])),
        "delegable": draw(st.integers(min_value=0, max_value=2)),
    }


def assert_no_broader(parent: Claims, child: Claims) -> None:
    ps, cs = Scope(parent.tools, parent.resources), Scope(child.tools, child.resources)
    for value in SAMPLES:
        if cs.admits_tool(value):
            assert ps.admits_tool(value), (parent.tools, child.tools, value)
        for rtype in ("path", "host", "url"):
            r = (Resource(rtype, value),)
            if cs.resource_outside(r) is None:
                assert ps.resource_outside(r) is None, (parent.resources, child.resources, r)
    for name, limit in parent.budgets.items():
        assert child.budgets[name] <= limit
    assert child.exp <= parent.exp
    assert set(child.aud) <= set(parent.aud)
    assert set(child.roles) <= set(parent.roles)
    assert child.user == parent.user
    assert child.delegable < parent.delegable


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(p=scopes(), c=scopes())
def test_no_delegated_credential_is_broader_than_its_parent(
    p: dict[str, Any], c: dict[str, Any]
) -> None:
    """Whatever a child claims, if the narrowing check passes it admits nothing the parent
    does not; and the verifier accepts a signed child exactly when the check passes."""
    parent_token = root(
        tools=p["tools"],
        resources=p["resources"],
        budgets=p["budgets"],
        ttl_s=p["exp"] - T0,
        audience=p["aud"],
        roles=p["roles"],
        user=p["user"],
        delegable=p["delegable"],
    )
    parent = claims_of(parent_token)
    chain = forge(
        parent_token,
        PLANNER,
        tools=c["tools"],
        resources=c["resources"],
        budgets=c["budgets"],
        exp=c["exp"],
        aud=c["aud"],
        roles=c["roles"],
        user=c["user"],
        delegable=c["delegable"],
    )
    child = claims_of(chain)
    problem = narrowing_problem(parent, child)
    audience = child.aud[0]
    try:
        verified = verify(chain, audience=audience)
    except IdentityError as exc:
        assert problem is not None and exc.code == problem.code
        return
    assert problem is None
    assert_no_broader(parent, verified.leaf)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/~ "


@settings(max_examples=400)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2000),
            st.sampled_from(ALPHABET),
            st.sampled_from(["replace", "insert", "delete"]),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_strict_parser_accepts_a_subset_of_pyjwt(edits: list[tuple[int, str, str]]) -> None:
    token = root()
    for pos, ch, how in edits:
        pos %= len(token)
        if how == "replace":
            token = token[:pos] + ch + token[pos + 1 :]
        elif how == "insert":
            token = token[:pos] + ch + token[pos:]
        else:
            token = token[:pos] + token[pos + 1 :]
    try:
        link = parse(token)
        ours = link.signed_by(RING.verify_key)
    except IdentityError:
        ours = False
    if not ours:
        return
    # We accepted it: PyJWT must accept it too, with the same header and claims.
    out = jws().decode_complete(token, RING.verify_key, algorithms=[ALG])
    assert out["header"]["kid"] == kid(RING)
    assert msgspec.json.decode(out["payload"], type=Claims) == link.claims


@given(claims=st.builds(dict, jti=st.text("abcdef0123", min_size=8, max_size=20)))
def test_every_token_we_make_pyjwt_verifies(claims: dict[str, str]) -> None:
    c = msgspec.structs.replace(claims_of(root()), jti=claims["jti"])
    token = encode(c, RING, kid(RING))
    payload = jws().decode_complete(token, RING.verify_key, algorithms=[ALG])["payload"]
    assert json.loads(payload)["jti"] == claims["jti"]
    assume(True)


@given(
    patterns=st.lists(st.text("ab/.*?-", min_size=1, max_size=6), min_size=1, max_size=3),
    value=st.text("ab/.c-\n", max_size=8),
    path=st.booleans(),
)
def test_scope_matching_agrees_with_the_policy_regexes(
    patterns: list[str], value: str, path: bool
) -> None:
    """Whether a glob is matched by ``re`` or (with several wildcards) by RE2, the answer is
    the policy engine's."""
    expected = matches_any(tuple(patterns), value, path)
    if path:
        scope = Scope((), tuple(f"path:{p}" for p in patterns))
        assert (scope.resource_outside((Resource("path", value),)) is None) is expected
    else:
        assert Scope(tuple(patterns), ()).admits_tool(value) is expected

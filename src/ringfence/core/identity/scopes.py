"""Credential scopes: tool and resource patterns, matching them, and deciding inclusion.

A credential names the tools it may call (name globs: ``*`` matches anything, ``?`` one
character, as in policy rules) and the resources it may touch (``type:glob`` with path globs:
``*`` and ``?`` stay within a segment, ``**`` crosses segments, ``**/`` also matches no
segment; a type of ``*`` stands for every type) — the globs of the policy engine
(:mod:`ringfence.core.policy.globs`), matched in time linear in the value (see _Matcher).

:func:`tools_cover` and :func:`resources_cover` decide whether every name or resource one
list of patterns admits is also admitted by another — the "child ⊆ parent" check of
delegation.  They are exact, not heuristic: both sides are turned into small automata over
the characters that occur in the patterns plus one stand-in for every other character, and
the product is explored; a pattern set too large to explore counts as *not* covered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ringfence.core.action import Resource
from ringfence.core.policy.globs import name_regex, path_regex

__all__ = [
    "MAX_PATTERNS",
    "MAX_PATTERN_LENGTH",
    "Scope",
    "pattern_problem",
    "resources_cover",
    "tools_cover",
]

MAX_PATTERNS = 64
MAX_PATTERN_LENGTH = 256
# Bounds on deciding one inclusion; past either the answer is "not covered" (fail closed).
# Hostile patterns (long chains of wildcards over many characters) would otherwise take
# minutes; these keep the worst case to a few milliseconds per pattern.
MAX_STATES = 2_000  # product states explored
MAX_WORK = 20_000  # automaton states stepped, summed over every step
_TYPE = re.compile(r"^(?:\*|[A-Za-z_][A-Za-z0-9_-]*)$")

# Tokens of a glob.  _ONE/_STAR stop at "/" in path globs; _ANY is "**"; _SEGS is "**/".
_LIT, _ONE, _STAR, _ANY, _SEGS = range(5)
Token = tuple[int, str]


def pattern_problem(pattern: str, *, resource: bool) -> str | None:
    """Why ``pattern`` cannot be a tool (``resource=False``) or resource pattern, or None."""
    if not isinstance(pattern, str) or not pattern:
        return "a scope pattern must be a non-empty string"
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"scope pattern longer than {MAX_PATTERN_LENGTH} characters"
    if not pattern.isprintable():
        return f"scope pattern {pattern!r} has control characters"
    if resource:
        rtype, sep, glob = pattern.partition(":")
        if not sep or not glob or not _TYPE.match(rtype):
            return f"{pattern!r} is not a resource pattern (write type:glob, e.g. path:/data/**)"
    elif "[" in pattern or "]" in pattern:
        return f"tool pattern {pattern!r}: character classes ([...]) are not allowed"
    return None


def _tokens(glob: str, path: bool) -> tuple[Token, ...]:
    """The glob as tokens, read exactly as :func:`path_regex` / :func:`name_regex` read it."""
    out: list[Token] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if path and glob.startswith("**", i):
                i += 2
                if glob.startswith("/", i):
                    out.append((_SEGS, ""))
                    i += 1
                else:
                    out.append((_ANY, ""))
                continue
            out.append((_STAR if path else _ANY, ""))
        elif c == "?":
            out.append((_ONE, "" if path else "any"))
        else:
            out.append((_LIT, c))
        i += 1
    return tuple(out)


class _Nfa:
    """A union of globs as one NFA.  States are (glob index, position) and, for ``**/``,
    (glob index, -1 - position): inside the ``.*`` part that must end with ``/``."""

    def __init__(self, globs: tuple[tuple[Token, ...], ...]) -> None:
        self.globs = globs
        self.start = self.closure({(g, 0) for g in range(len(globs))})

    def closure(self, states: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        todo = list(states)
        seen = set(states)
        while todo:
            g, pos = todo.pop()
            if pos < 0:
                continue
            toks = self.globs[g]
            if pos < len(toks) and toks[pos][0] in (_STAR, _ANY, _SEGS):
                nxt = [(g, pos + 1)]
                if toks[pos][0] == _SEGS:
                    nxt.append((g, -1 - pos))
                for s in nxt:
                    if s not in seen:
                        seen.add(s)
                        todo.append(s)
        return frozenset(seen)

    def step(
        self, states: frozenset[tuple[int, int]], sym: str | None
    ) -> frozenset[tuple[int, int]]:
        """States after reading ``sym`` (None: a character that is in no pattern, not "/")."""
        out: set[tuple[int, int]] = set()
        for g, pos in states:
            toks = self.globs[g]
            if pos < 0:  # inside "**/": any character stays, "/" may also finish it
                out.add((g, pos))
                if sym == "/":
                    out.add((g, -pos))
                continue
            if pos >= len(toks):
                continue
            kind, lit = toks[pos]
            if kind == _LIT:
                if sym == lit:
                    out.add((g, pos + 1))
            elif kind == _ONE:
                if lit == "any" or sym != "/":
                    out.add((g, pos + 1))
            elif kind == _STAR:
                if sym != "/":
                    out.add((g, pos))
            elif kind == _ANY:
                out.add((g, pos))
        return self.closure(out) if out else frozenset()

    def accepts(self, states: frozenset[tuple[int, int]]) -> bool:
        return any(pos == len(self.globs[g]) for g, pos in states)


@lru_cache(maxsize=4096)
def _covered(child: str, parents: tuple[str, ...], path: bool) -> bool:
    """Whether every string glob ``child`` matches is matched by some glob in ``parents``."""
    if child in parents or ("**" if path else "*") in parents:
        return True
    if not parents:
        return False
    if not any(c in child for c in "*?"):  # one literal string: just match it
        regex = path_regex if path else name_regex
        return any(regex(p).match(child) is not None for p in parents)
    kid = _Nfa((_tokens(child, path),))
    par = _Nfa(tuple(_tokens(p, path) for p in parents))
    literals = sorted({c for p in (child, *parents) for c in p} - set("*?/"))
    alphabet: list[str | None] = [*literals, "/", None]
    start = (kid.start, par.start)
    seen = {start}
    todo = [start]
    work = 0
    while todo:
        k, p = todo.pop()
        if kid.accepts(k) and not par.accepts(p):
            return False
        work += len(alphabet) * (len(k) + len(p))
        if work > MAX_WORK:
            return False  # too costly to decide: not provably narrower
        for sym in alphabet:
            k2 = kid.step(k, sym)
            if not k2:
                continue
            pair = (k2, par.step(p, sym))
            if pair not in seen:
                if len(seen) >= MAX_STATES:
                    return False  # too large to decide: not provably narrower
                seen.add(pair)
                todo.append(pair)
    return True


def tools_cover(parent: tuple[str, ...], child: tuple[str, ...]) -> str | None:
    """The first tool pattern of ``child`` not covered by ``parent``, or None if all are."""
    key = tuple(sorted(set(parent)))
    for pattern in child:
        if not _covered(pattern, key, False):
            return pattern
    return None


def resources_cover(parent: tuple[str, ...], child: tuple[str, ...]) -> str | None:
    """The first resource pattern of ``child`` not covered by ``parent``, or None."""
    by_type: dict[str, set[str]] = {}
    for pattern in parent:
        rtype, _, glob = pattern.partition(":")
        by_type.setdefault(rtype, set()).add(glob)
    wild = by_type.get("*", set())
    for pattern in child:
        rtype, _, glob = pattern.partition(":")
        globs = wild if rtype == "*" else wild | by_type.get(rtype, set())
        if not _covered(glob, tuple(sorted(globs)), True):
            return pattern
    return None


def _source(tokens: tuple[Token, ...], escape: Callable[[str], str]) -> str:
    """A regular expression (for ``fullmatch`` in dot-all mode) equivalent to the glob."""
    parts = []
    for kind, lit in tokens:
        if kind == _LIT:
            parts.append(lit if lit.isalnum() and lit.isascii() else escape(lit))
        elif kind == _ONE:
            parts.append("." if lit else "[^/]")
        elif kind == _STAR:
            parts.append("[^/]*")
        elif kind == _ANY:
            parts.append(".*")
        else:
            parts.append("(?:.*/)?")
    return "".join(parts)


class _Matcher:
    """Globs compiled for matching in time linear in the value.

    A glob with at most one wildcard that repeats becomes a Python regex (one quantifier
    cannot backtrack badly, and ``re`` is fast); the others go to RE2, which never
    backtracks but costs ≈ 3 µs a call from Python.  Patterns come from credentials that
    agents sign; values come from arguments: neither may make a check slow.
    """

    __slots__ = ("fast", "linear")

    def __init__(self, globs: list[str], path: bool) -> None:
        fast: list[str] = []
        linear: list[str] = []
        for glob in globs:
            tokens = _tokens(glob, path)
            repeats = sum(1 for kind, _ in tokens if kind in (_STAR, _ANY, _SEGS))
            if repeats <= 1:
                fast.append(_source(tokens, re.escape))
            else:
                linear.append(_source(tokens, lambda c: f"\\x{{{ord(c):x}}}"))
        self.fast = re.compile("(?s:" + "|".join(fast) + ")") if fast else None
        self.linear: Any = None
        if linear:
            from ringfence.core.policy.regex import compile_regex  # RE2

            self.linear = compile_regex("(?s:" + "|".join(linear) + ")")

    def matches(self, value: str) -> bool:
        if self.fast is not None and self.fast.fullmatch(value) is not None:
            return True
        return self.linear is not None and self.linear.fullmatch(value) is not None


class Scope:
    """Compiled tool and resource patterns: what one credential admits."""

    __slots__ = ("_all_types", "_resources", "_tools", "resources", "tools")

    def __init__(self, tools: tuple[str, ...], resources: tuple[str, ...]) -> None:
        self.tools = tools
        self.resources = resources
        self._tools = _Matcher(list(tools), path=False)
        by_type: dict[str, list[str]] = {}
        for pattern in resources:
            rtype, _, glob = pattern.partition(":")
            by_type.setdefault(rtype, []).append(glob)
        wild = by_type.pop("*", [])
        self._all_types = _Matcher(wild, path=True) if wild else None
        self._resources = {t: _Matcher(g + wild, path=True) for t, g in by_type.items()}

    @staticmethod
    @lru_cache(maxsize=1024)
    def of(tools: tuple[str, ...], resources: tuple[str, ...]) -> Scope:
        """The (shared, immutable) Scope of these patterns."""
        return Scope(tools, resources)

    def admits_tool(self, tool: str) -> bool:
        """Whether ``tool`` matches one of the tool patterns."""
        return self._tools.matches(tool)

    def resource_outside(self, resources: tuple[Resource, ...]) -> Resource | None:
        """The first of ``resources`` that no resource pattern admits, or None."""
        for r in resources:
            matcher = self._resources.get(r.type, self._all_types)
            if matcher is None or not matcher.matches(r.value):
                return r
        return None

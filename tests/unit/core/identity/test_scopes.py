"""Scopes: pattern syntax, matching actions, and the exact "child ⊆ parent" decision."""

from __future__ import annotations

import pytest

from ringfence.core.action import Resource
from ringfence.core.identity.scopes import (
    MAX_STATES,
    Scope,
    pattern_problem,
    resources_cover,
    tools_cover,
)


@pytest.mark.parametrize(
    ("pattern", "resource", "ok"),
    [
        ("read_file", False, True),
        ("db.*", False, True),
        ("read_?", False, True),
        ("read_[ab]", False, False),  # character classes would not be decidable the same way
        ("", False, False),
        ("x" * 257, False, False),
        ("bad\nname", False, False),
        ("path:/workspace/**", True, True),
        ("*:**", True, True),
        ("host:api.example.com", True, True),
        ("/workspace/**", True, False),
        ("path:", True, False),
        ("pa th:/x", True, False),
        ("p*:/x", True, False),
    ],
)
def test_pattern_problem(pattern: str, resource: bool, ok: bool) -> None:
    assert (pattern_problem(pattern, resource=resource) is None) is ok


class TestScope:
    scope = Scope(
        ("read_*", "search"),
        ("path:/workspace/**", "host:api.example.com", "url:https://api.example.com/*"),
    )

    @pytest.mark.parametrize(
        ("tool", "ok"),
        [("read_file", True), ("read_", True), ("search", True), ("searcher", False), ("x", False)],
    )
    def test_tools(self, tool: str, ok: bool) -> None:
        assert self.scope.admits_tool(tool) is ok

    def test_every_resource_must_fit(self) -> None:
        ok = (Resource("path", "/workspace/a/b"), Resource("host", "api.example.com"))
        assert self.scope.resource_outside(ok) is None
        assert self.scope.resource_outside(()) is None
        bad = Resource("path", "/etc/passwd")
        assert self.scope.resource_outside((*ok, bad)) == bad

    def test_a_type_without_patterns_is_outside(self) -> None:
        r = Resource("recipient", "eve@example.com")
        assert self.scope.resource_outside((r,)) == r

    def test_segment_globs(self) -> None:
        assert self.scope.resource_outside((Resource("url", "https://api.example.com/v1"),)) is None
        deep = Resource("url", "https://api.example.com/v1/x")
        assert self.scope.resource_outside((deep,)) == deep

    def test_type_wildcard(self) -> None:
        scope = Scope(("*",), ("*:**",))
        assert scope.resource_outside((Resource("anything", "at/all"),)) is None
        assert scope.admits_tool("any.tool")

    def test_no_tools_admits_nothing(self) -> None:
        assert not Scope((), ()).admits_tool("read_file")

    def test_shared_instances(self) -> None:
        assert Scope.of(("a",), ()) is Scope.of(("a",), ())


@pytest.mark.parametrize(
    ("parent", "child", "covered"),
    [
        (("read_*",), ("read_file",), True),
        (("read_*",), ("read_*",), True),
        (("read_*",), ("read_f*",), True),
        (("read_*",), ("read_?ile",), True),
        (("read_*",), ("re*",), False),
        (("read_*",), ("*",), False),
        (("read_file",), ("read_*",), False),
        (("*",), ("anything*",), True),
        (("a*", "b*"), ("a1", "b*x"), True),
        (("a*",), ("a1", "c"), False),
        (("?",), ("*",), False),
        (("*a*",), ("*aa*",), True),
        (("*aa*",), ("*a*",), False),
        ((), ("x",), False),
        (("x",), (), True),
    ],
)
def test_tools_cover(parent: tuple[str, ...], child: tuple[str, ...], covered: bool) -> None:
    assert (tools_cover(parent, child) is None) is covered


@pytest.mark.parametrize(
    ("parent", "child", "covered"),
    [
        (("path:/w/**",), ("path:/w/a/**",), True),
        (("path:/w/**",), ("path:/w/*",), True),
        (("path:/w/*",), ("path:/w/**",), False),  # ** crosses "/", * does not
        (("path:/w/*",), ("path:/w/a?",), True),
        (("path:/w/a?",), ("path:/w/*",), False),
        (("path:/w/**/x",), ("path:/w/x",), True),  # "**/" also matches no segment
        (("path:/w/**/x",), ("path:/w/a/b/x",), True),
        (("path:/w/*/x",), ("path:/w/**/x",), False),
        (("path:/w/**",), ("path:/**",), False),
        (("path:/w/**",), ("host:/w/x",), False),  # another type is not covered
        (("*:**",), ("host:x", "path:/a/**"), True),
        (("path:**",), ("*:**",), False),
        (("*:/w/**",), ("*:/w/a",), True),
        (("path:/a/*", "path:/b/*"), ("path:/a/x", "path:/b/*"), True),
        (("path:/a/*",), ("path:/a/x", "path:/c/x"), False),
        (("path:/w/*.txt",), ("path:/w/a*.txt",), True),
        (("path:/w/a*.txt",), ("path:/w/*.txt",), False),
    ],
)
def test_resources_cover(parent: tuple[str, ...], child: tuple[str, ...], covered: bool) -> None:
    assert (resources_cover(parent, child) is None) is covered


def test_uncovered_pattern_is_named() -> None:
    assert tools_cover(("read_*",), ("read_file", "write_file")) == "write_file"
    assert resources_cover(("path:/w/**",), ("path:/w/x", "path:/etc/*")) == "path:/etc/*"


def test_too_large_to_decide_is_not_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the product automaton is too large the answer is 'not covered' (fail closed)."""
    from ringfence.core.identity import scopes

    scopes._covered.cache_clear()
    monkeypatch.setattr(scopes, "MAX_STATES", 2)
    assert tools_cover(("*a*b*",), ("*ab*",)) == "*ab*"
    scopes._covered.cache_clear()
    assert MAX_STATES > 2


def test_too_costly_to_decide_is_not_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    from ringfence.core.identity import scopes

    scopes._covered.cache_clear()
    monkeypatch.setattr(scopes, "MAX_WORK", 10)
    assert resources_cover(("path:/w/*/src/**",), ("path:/w/*/src/**/*.py",)) is not None
    monkeypatch.undo()
    scopes._covered.cache_clear()
    assert resources_cover(("path:/w/*/src/**",), ("path:/w/*/src/**/*.py",)) is None


def test_hostile_patterns_are_refused() -> None:
    """Long chains of wildcards against many parents: refused (within the work bound)."""
    import string

    chars = string.ascii_letters + string.digits
    child = "*" + "*".join(chars) + "*"
    parents = tuple(f"*{c}*{d}*" for c in chars[:8] for d in chars[:8])
    assert tools_cover(parents, (child,)) == child


def test_matching_time_does_not_explode() -> None:
    """A glob with many wildcards against a long value: RE2, linear (``re`` would backtrack
    for hours on this one)."""
    scope = Scope(("*a*a*a*a*a*a*a*b",), ("path:**a**a**a**a**a**b",))
    value = "a" * 200_000
    assert not scope.admits_tool(value)
    assert scope.resource_outside((Resource("path", value),)) is not None
    assert scope.admits_tool("xaaaaaaab")

"""Name globs and path globs."""

from __future__ import annotations

import pytest

from ringfence.core.policy.globs import (
    is_glob,
    name_pattern_covers,
    name_regex,
    names_match,
    path_regex,
)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("/data/*", "/data/x", True),
        ("/data/*", "/data/x/y", False),
        ("/data/*", "/data/", True),
        ("/data/*", "/data", False),
        ("/data/**", "/data/x/y/z", True),
        ("/data/**", "/data/", True),
        ("/data/**", "/data", False),
        ("/data/**", "/database/x", False),
        ("**/secret", "secret", True),
        ("**/secret", "/a/b/secret", True),
        ("**/secret", "/a/b/notsecret", False),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/a/**/z", "/a/b/c/zz", False),
        ("/tmp/?.txt", "/tmp/a.txt", True),
        ("/tmp/?.txt", "/tmp/ab.txt", False),
        ("/tmp/?.txt", "/tmp//.txt", False),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", True),  # no "/" so "*" spans dots
        ("*.example.com", "example.com", False),
        ("/data/x", "/data/x", True),
        ("/data/x", "/data/x/", False),  # whole-string match
        ("/data/x", "/Data/x", False),  # case-sensitive
        ("/a.b", "/aXb", False),  # regex metacharacters are literal
        ("/[ab]", "/[ab]", True),
        ("/[ab]", "/a", False),
        ("/x*", "/x\ny", True),  # "*" crosses newlines (DOTALL)
    ],
)
def test_path_glob(pattern: str, value: str, matches: bool) -> None:
    assert (path_regex(pattern).match(value) is not None) is matches


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("read_*", "read_file", True),
        ("read_*", "write_file", False),
        ("*", "any/thing.with.dots", True),
        ("mcp.github.*", "mcp.github.create_issue", True),
        ("mcp.github.*", "mcp.gitlab.create_issue", False),
        ("agent-?", "agent-1", True),
        ("agent-?", "agent-12", False),
        ("tool", "tool", True),
        ("tool", "Tool", False),
        ("tool", "tool2", False),
        ("[ab]x", "bx", True),
    ],
)
def test_name_glob(pattern: str, value: str, matches: bool) -> None:
    assert (name_regex(pattern).match(value) is not None) is matches


def test_names_match_any() -> None:
    assert names_match(("a", "b*"), "bee")
    assert names_match(("a", "b*"), "a")
    assert not names_match(("a", "b*"), "c")


@pytest.mark.parametrize(("text", "expected"), [("a*", True), ("a?", True), ("[a]", True)])
def test_is_glob(text: str, expected: bool) -> None:
    assert is_glob(text) is expected
    assert is_glob("plain.name-1") is False


@pytest.mark.parametrize(
    ("general", "specific", "covers"),
    [
        ("*", "anything", True),
        ("*", "read_*", True),
        ("read_*", "read_file", True),
        ("read_*", "read_*", True),
        ("read_*", "read_f*", False),  # conservative: globs are only covered by themselves or *
        ("read_file", "read_*", False),
        ("a", "b", False),
    ],
)
def test_name_pattern_covers(general: str, specific: str, covers: bool) -> None:
    assert name_pattern_covers(general, specific) is covers

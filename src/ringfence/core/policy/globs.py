"""Glob patterns, translated once to regular expressions.

Two flavours: *names* (tool names, agent ids: ``*`` matches anything, like fnmatch) and
*paths* (resources and the ``glob`` operator: ``*`` and ``?`` stop at ``/``, ``**`` crosses it).
Both match the whole string and are case-sensitive.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache

__all__ = ["is_glob", "name_regex", "path_regex"]


def is_glob(text: str) -> bool:
    """True if ``text`` has a wildcard character."""
    return any(c in text for c in "*?[")


@lru_cache(maxsize=4096)
def name_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for a name glob (``*`` matches any characters, including dots)."""
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


@lru_cache(maxsize=4096)
def path_regex(pattern: str) -> re.Pattern[str]:
    """A compiled regex for a path glob: ``*``/``?`` within a segment, ``**`` across segments."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # "**/" also matches zero segments
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("(?s:" + "".join(out) + r")\Z")


def names_match(patterns: tuple[str, ...], value: str) -> bool:
    """True if ``value`` fits any of the name globs."""
    return any(name_regex(p).match(value) for p in patterns)


def name_pattern_covers(general: str, specific: str) -> bool:
    """Conservatively, does every name matched by ``specific`` also match ``general``?"""
    if general in (specific, "*"):
        return True
    return not is_glob(specific) and bool(name_regex(general).match(specific))

"""The ``regex`` condition operator's engine: RE2, so matching time is linear in the input.

Python's ``re`` backtracks: a pattern like ``^(a+)+$`` against an argument an attacker
controls can take hours.  RE2 cannot, and its syntax is the one CEL's ``matches()`` uses,
so the two condition forms agree.  RE2 has no backreferences or lookaround; a pattern that
needs them is a load error.
"""

from __future__ import annotations

from typing import Any

import re2

__all__ = ["RegexError", "compile_regex"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors become PolicyErrors; RE2 must not print to stderr


class RegexError(ValueError):
    """The pattern is not valid RE2."""


def compile_regex(pattern: str) -> Any:
    """A compiled RE2 pattern with ``.search(text)``; RegexError if it does not compile."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexError(f"{detail} (RE2 syntax: no backreferences or lookaround)") from None

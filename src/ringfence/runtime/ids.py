"""Decision ids: unique across processes and restarts, cheap to make.

A random per-process prefix (from ``secrets``) and a counter: ``d-<12 hex>-<counter>``.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable

__all__ = ["IdSource", "new_id_source"]

IdSource = Callable[[], str]


def new_id_source(prefix: str = "d") -> IdSource:
    """A thread-safe id generator (itertools.count is atomic under the GIL)."""
    head = f"{prefix}-{secrets.token_hex(6)}-"
    counter = itertools.count(1)

    def next_id() -> str:
        return f"{head}{next(counter):x}"

    return next_id

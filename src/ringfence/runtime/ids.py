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
    """A thread-safe id generator.

    A chain of C iterators (count → hex → prefix): each id is made inside one call that runs
    no Python code, so it is atomic under the GIL, and about 0.1 µs cheaper than a function.
    """
    head = f"{prefix}-{secrets.token_hex(6)}-"
    ids = map(head.__add__, map("{:x}".format, itertools.count(1)))
    return ids.__next__

"""Resources an action touches, derived from its arguments by the tool's declaration.

Values are normalised before any pattern sees them, so that ``/data/../etc/passwd`` is
``/etc/passwd`` and ``HTTPS://Example.COM/x`` is ``https://example.com/x``.  A ``url``
resource also yields a ``host`` resource, so egress rules can name hosts.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ringfence.core.action import Resource

__all__ = ["derive", "normalise"]


def normalise(rtype: str, value: str) -> Iterator[Resource]:
    """The normalised resource(s) for one raw value of type ``rtype``."""
    if rtype == "path":
        norm = posixpath.normpath(value) if value else value
        if norm.startswith("//"):
            norm = "/" + norm.lstrip("/")
        yield Resource("path", norm)
    elif rtype == "url":
        try:
            parts = urlsplit(value.strip())
            host = (parts.hostname or "").rstrip(".")
            port = parts.port  # raises for a port that is not a number in 0..65535
        except ValueError:
            yield Resource("url", value)
            return
        netloc = host if port is None else f"{host}:{port}"
        path = posixpath.normpath(parts.path) if parts.path not in ("", "/") else parts.path
        rebuilt = f"{parts.scheme.lower()}://{netloc}{path}"
        if parts.query:
            rebuilt += f"?{parts.query}"
        yield Resource("url", rebuilt)
        if host:
            yield Resource("host", host)
    elif rtype in ("recipient", "email", "host", "domain"):
        yield Resource(rtype, value.strip().lower().rstrip("."))
    else:
        yield Resource(rtype, value)


def derive(args: dict[str, Any], spec: tuple[tuple[tuple[str, ...], str], ...]) -> list[Resource]:
    """Resources named by ``args`` under a tool's ``resources`` declaration.

    A missing argument names nothing; a list names each of its strings.  A value of
    another type raises TypeError (the caller turns that into a deny).
    """
    out: list[Resource] = []
    for path, rtype in spec:
        node: Any = args
        for part in path:
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is None:
            continue
        values = node if isinstance(node, list) else [node]
        for v in values:
            if not isinstance(v, str):
                raise TypeError(
                    f"args.{'.'.join(path)} names a {rtype} resource but is a {type(v).__name__}"
                )
            out.extend(normalise(rtype, v))
    return out

"""The policy's ``secrets:`` section: which tools and hosts each secret may go to.

::

    secrets:
      stripe_key:
        description: Stripe live key
        tools: [http_request, "stripe__*"]     # tool names or name globs; required
        hosts: [api.stripe.com]                # exact hosts or "*.example.com"; optional

A secret is named by the handle ``rf-secret:stripe_key`` (see :mod:`ringfence.core.secrets`);
its value is substituted only into calls of the listed tools, and — when ``hosts`` is given —
only when every destination of the call is one of those hosts.  Without ``hosts`` the secret
may go only to calls with no destination host at all (a tool that holds its own endpoint).
A secret the section does not name is refused wherever its handle appears.

A call's destinations are the host and url resources the policy derives from its arguments
plus the host of every URL anywhere in them; a call that carries a secret granted with
``hosts`` but has no destination at all is refused.  Errors name the file, line and field
like the rest of the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ringfence.core.policy.globs import names_match
from ringfence.core.policy.model import Where
from ringfence.core.policy.yamlsrc import Located, Path, dotted
from ringfence.errors import PolicyError

__all__ = ["SecretGrant", "parse_secrets"]

_SECRET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_GRANT_KEYS = {"description", "tools", "hosts"}
_TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[\].:/-]{1,256}$")
_HOST = re.compile(
    r"^(?:\*\.)?(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_IPV6 = re.compile(r"^[0-9a-f:]{2,39}$")


@dataclass(frozen=True)
class SecretGrant:
    """Where one secret may go: tool name globs and, optionally, destination hosts."""

    name: str
    tools: tuple[str, ...]
    hosts: tuple[str, ...] | None
    where: Where
    description: str = ""

    def allows_tool(self, tool: str) -> bool:
        """True if ``tool`` matches one of the grant's tool names or globs."""
        return names_match(self.tools, tool)

    def allows_host(self, host: str) -> bool:
        """True if ``host`` is one of the grant's hosts (``*.example.com``: any subdomain)."""
        if self.hosts is None:
            return False
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False


def _fail(doc: Located, path: Path, message: str, code: str = "policy.invalid") -> PolicyError:
    return doc.error(path, message, code)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _strings(doc: Located, value: Any, path: Path) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(
            doc, path, f"expected a non-empty list of strings, got {_kind(value)}", "policy.type"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(doc, (*path, i), f"expected a string, got {_kind(item)}", "policy.type")
    return list(value)


def _host(doc: Located, text: str, path: Path) -> str:
    host = text.strip().lower().rstrip(".")
    if "://" in host or "/" in host or "@" in host:
        raise _fail(doc, path, f"{text!r}: write a host name (api.example.com), not a URL")
    if host in ("*", "*.") or host.count("*") > 1 or ("*" in host and not host.startswith("*.")):
        raise _fail(
            doc, path, f"{text!r}: a host is exact or '*.' followed by a domain (*.example.com)"
        )
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not (_HOST.match(host) or (":" in bare and _IPV6.match(bare))):
        raise _fail(doc, path, f"{text!r} is not a host name (no ports, paths or schemes)")
    return bare


def _grant(doc: Located, name: str, raw: Any) -> SecretGrant:
    path: Path = ("secrets", name)
    if not _SECRET_NAME.match(name):
        raise _fail(
            doc,
            path,
            f"{name!r} is not a valid secret name (1-64 of a-z, 0-9 and _, starting with a "
            "letter; it is written rf-secret:<name>)",
        )
    if not isinstance(raw, dict):
        raise _fail(doc, path, f"expected a mapping, got {_kind(raw)}", "policy.type")
    for key in raw:
        if key not in _GRANT_KEYS:
            raise _fail(
                doc,
                (*path, key),
                f"unknown key {key!r} (allowed: {', '.join(sorted(_GRANT_KEYS))})",
                "policy.unknown_key",
            )
    if "tools" not in raw:
        raise _fail(
            doc, path, "a secret needs 'tools': the tools that may use it", "policy.missing_key"
        )
    tools = _strings(doc, raw["tools"], (*path, "tools"))
    for i, tool in enumerate(tools):
        if not _TOOL_PATTERN.match(tool):
            raise _fail(doc, (*path, "tools", i), f"{tool!r} is not a tool name or glob")
        if tool.strip("*?") == "":
            raise _fail(
                doc,
                (*path, "tools", i),
                f"{tool!r} would hand the secret to every tool; name the tools",
            )
    hosts = None
    if "hosts" in raw:
        items = _strings(doc, raw["hosts"], (*path, "hosts"))
        hosts = tuple(_host(doc, h, (*path, "hosts", i)) for i, h in enumerate(items))
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(doc, (*path, "description"), f"expected a string, got {_kind(description)}")
    return SecretGrant(
        name=name,
        tools=tuple(tools),
        hosts=hosts,
        where=Where(doc.source, doc.line(path), dotted(path)),
        description=description,
    )


def parse_secrets(documents: list[Located]) -> dict[str, SecretGrant]:
    """The ``secrets:`` sections of every document, by secret name."""
    grants: dict[str, SecretGrant] = {}
    for doc in documents:
        top = doc.value
        if not isinstance(top, dict) or "secrets" not in top:
            continue
        section = top["secrets"]
        if not isinstance(section, dict):
            raise _fail(doc, ("secrets",), f"expected a mapping, got {_kind(section)}")
        for name, raw in section.items():
            if name in grants:
                first = grants[name].where
                raise _fail(
                    doc,
                    ("secrets", name),
                    f"secret {name!r} is already declared at {first.source}:{first.line}",
                    "policy.duplicate_secret",
                )
            grants[name] = _grant(doc, name, raw)
    return grants

"""Secret handles: the opaque names an agent passes instead of secret values.

A handle is ``rf-secret:<name>`` where ``<name>`` is 1-64 of ``a-z``, ``0-9`` and ``_``,
starting with a letter — for example ``rf-secret:stripe_key``.  The form is chosen to survive
every channel a handle travels through unchanged: JSON strings (no quote or backslash), model
text and Markdown (no braces or brackets, which prompt templates such as Python format
strings, Jinja or Mustache would eat), URLs (only unreserved characters and ``:``) and shell
words (no ``$``, ``{`` or glob characters).  The ``rf-secret:`` prefix does not occur in
ordinary text.  Handles are found only as written: a URL- or base64-encoded handle is plain
text and is passed on as such (it then carries no secret).

This module is pure: finding handles in arguments (:func:`scan`), deciding whether a call may
use them (:func:`use_problem`), and replacing them with values (:func:`substitute`).  The
runtime's :class:`~ringfence.runtime.broker.SecretBroker` supplies the values and the grants.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ringfence.core.policy.regex import compile_regex
from ringfence.core.textscan import json_pointer

if TYPE_CHECKING:
    from ringfence.core.policy.secrets import SecretGrant

__all__ = [
    "HANDLE_PREFIX",
    "HandleScan",
    "HandleUse",
    "handle",
    "is_secret_name",
    "scan",
    "substitute",
    "url_hosts",
    "use_problem",
]

HANDLE_PREFIX = "rf-secret:"
SECRET_NAME = compile_regex(r"^[a-z][a-z0-9_]{0,63}$")
# Anything that starts like a handle, in any case, with the name-like run after it; whether
# it is a well-formed handle is decided on the match (a malformed one is refused, not ignored).
_CANDIDATE = compile_regex(r"(?i)rf-secret:([A-Za-z0-9_-]*)")
_URL = compile_regex(r"(?i)\b[a-z][a-z0-9+.-]{1,31}://[^\s\"'<>`]+")
MAX_PROBLEMS = 20


def handle(name: str) -> str:
    """The handle for secret ``name``."""
    return HANDLE_PREFIX + name


def is_secret_name(name: str) -> bool:
    """True if ``name`` is a valid secret name."""
    return SECRET_NAME.search(name) is not None


@dataclass(frozen=True)
class HandleUse:
    """One handle in an argument: the secret's name and where it is (RFC 6901 pointer)."""

    name: str
    pointer: str


@dataclass(frozen=True)
class HandleScan:
    """Handles found in a value, and why any handle-like text there is unusable."""

    uses: tuple[HandleUse, ...]
    problems: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The secrets named, sorted and unique."""
        return tuple(sorted({u.name for u in self.uses}))

    def __bool__(self) -> bool:
        return bool(self.uses or self.problems)


def _handles_in(text: str) -> tuple[list[str], list[str]]:
    names: list[str] = []
    problems: list[str] = []
    if "rf-secret:" not in text.lower():
        return names, problems
    for m in _CANDIDATE.finditer(text):
        prefix, name = m.group(0)[: len(HANDLE_PREFIX)], m.group(1)
        if prefix != HANDLE_PREFIX or not is_secret_name(name):
            shown = m.group(0)[:80]
            problems.append(
                f"{shown!r} is not a valid secret handle (write rf-secret:<name>, the name "
                "lower-case letters, digits and _, starting with a letter)"
            )
        else:
            names.append(name)
    return names, problems


def scan(value: Any) -> HandleScan:
    """Every handle in the strings of a JSON-like value, and every malformed one.

    A handle in an object key is a problem: keys are never substituted.
    """
    uses: list[HandleUse] = []
    problems: list[str] = []
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        t = type(node)
        if t is str:
            names, bad = _handles_in(node)
            pointer = json_pointer(path) if names or bad else ""
            uses.extend(HandleUse(n, pointer) for n in names)
            problems.extend(f"{pointer or '/'}: {b}" for b in bad)
        elif t is dict:
            for k, v in node.items():
                if type(k) is str and "rf-secret:" in k.lower():
                    problems.append(
                        f"{json_pointer([*path, k[:40]])}: a secret handle in an object key "
                        "(handles are substituted in values only)"
                    )
                stack.append((v, [*path, k]))
        elif t is list or t is tuple:
            stack.extend((v, [*path, i]) for i, v in enumerate(node))
    uses.sort(key=lambda u: (u.pointer, u.name))
    return HandleScan(tuple(uses), tuple(problems[:MAX_PROBLEMS]))


def url_hosts(value: Any) -> frozenset[str]:
    """Hosts of every ``scheme://host`` URL inside the strings of a JSON-like value.

    Destinations hide inside content (a callback URL, a link in a message body): a call that
    carries a secret is checked against all of them, not only the declared URL argument.
    """
    hosts: set[str] = set()
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is str:
            if "://" in node:
                for m in _URL.finditer(node):
                    try:
                        host = (urlsplit(m.group(0)).hostname or "").rstrip(".")
                    except ValueError:
                        host = ""
                    hosts.add(host.lower() if host else "<unparseable URL>")
        elif t is dict:
            stack.extend(node.values())
        elif t is list or t is tuple:
            stack.extend(node)
    return frozenset(hosts)


def use_problem(
    names: Iterable[str],
    tools: Collection[str],
    hosts: Collection[str],
    grants: Mapping[str, SecretGrant],
) -> tuple[str, str] | None:
    """``(code, reason)`` if a call by ``tools`` going to ``hosts`` may not use ``names``.

    ``tools`` are every tool name the call reaches (a meta tool and the tool it runs);
    ``hosts`` are every destination host known for the call.  Refused: a secret the policy
    does not grant (``secret.unknown``), a tool its grant does not list (``secret.tool``), a
    host outside its ``hosts`` (``secret.host``), a call with no known destination when the
    grant lists hosts (``secret.no_destination``: it cannot be checked), and a call that goes
    to a host when the grant lists none (``secret.host``).
    """
    for name in sorted(set(names)):
        grant = grants.get(name)
        if grant is None:
            return "secret.unknown", f"unknown secret {name!r}: the policy grants it to no tool"
        for tool in sorted(tools):
            if not grant.allows_tool(tool):
                return "secret.tool", f"secret {name!r} may not be used by tool {tool!r}"
        if grant.hosts is None:
            if hosts:
                return "secret.host", (
                    f"secret {name!r} may not be sent to {', '.join(sorted(hosts))}: "
                    "its grant lists no hosts"
                )
            continue
        if not hosts:
            return "secret.no_destination", (
                f"secret {name!r} may only be sent to {', '.join(grant.hosts)}, and the "
                "destination of this call is not known (declare the tool's URL or host "
                "argument under its resources)"
            )
        for host in sorted(hosts):
            if not grant.allows_host(host):
                return "secret.host", f"secret {name!r} may not be sent to host {host!r}"
    return None


def substitute(value: Any, values: Mapping[str, str]) -> Any:
    """A copy of a JSON-like value with every handle replaced by its secret's value.

    Only containers on the way to a handle are copied.  Raises KeyError for a handle whose
    secret is not in ``values``; malformed handles are left alone (refuse them first, with
    :func:`scan`).
    """
    t = type(value)
    if t is str:
        if "rf-secret:" not in value:
            return value
        return _CANDIDATE.sub(lambda m: _value(m, values), value)
    if t is dict:
        out = {k: substitute(v, values) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if t is list or t is tuple:
        items = [substitute(v, values) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items) if t is tuple else items
    return value


def _value(m: Any, values: Mapping[str, str]) -> str:
    text: str = m.group(0)
    name: str = m.group(1)
    if not text.startswith(HANDLE_PREFIX) or not is_secret_name(name):
        return text
    return values[name]

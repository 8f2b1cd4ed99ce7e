"""Canonical digests of an MCP server's tool surface, and exactly what changed between two of them.

A tool definition is the dict a ``tools/list`` result holds per tool.  Its *model view* is every
top-level field except ``_meta``: name, title, description, inputSchema, outputSchema, annotations,
icons and any field a later protocol revision adds.  Unknown fields are included on purpose: a
field we do not know about may still reach the model through some client, so leaving it out
would let a server change it without anyone noticing.  ``_meta`` is left out because the protocol
reserves it for transport and client metadata that is not part of the prompt, and servers are
free to vary it between listings (timestamps, request ids); pinning it would quarantine tools for
changes nobody can review.  A top-level field set to ``null`` counts as absent, because SDKs
differ in whether they write nulls for unset fields.

The digest is ``"sha256:" + hex`` over the canonical encoding of the model view: JSON, keys sorted
by code point, no whitespace, UTF-8, finite numbers only (the ``rf-cjson-1`` encoding of audit
records).  Strings are *not* Unicode-normalised: the bytes hashed are the bytes the model reads,
so swapping a letter for a look-alike or adding a zero-width character changes the digest.

Everything here is pure; :mod:`.pins` decides what a change means and :mod:`.pinstore` does I/O.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from ringfence.core.action import Limits, argument_problem
from ringfence.core.textscan import json_pointer, reveal
from ringfence.errors import InputError

__all__ = [
    "EXCLUDED_FIELDS",
    "FieldChange",
    "PathChange",
    "ServerSurface",
    "SurfaceDiff",
    "ToolChange",
    "ToolPin",
    "canonical_json",
    "diff_surfaces",
    "instructions_digest",
    "json_pointer",
    "model_view",
    "pin_tool",
    "reveal",
    "tool_digest",
]

EXCLUDED_FIELDS = frozenset({"_meta"})
"""Top-level tool fields that are not part of the digest (see the module docstring)."""

# Schemas nest two levels per object property, so allow more depth than action arguments do.
_LIMITS = Limits(max_depth=64, max_nodes=100_000, max_string_bytes=1 << 20, max_total_bytes=4 << 20)
_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder().decode

Op = Literal["add", "remove", "replace"]


def model_view(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a tool definition that reaches the model: all but ``_meta``, nulls dropped."""
    if not isinstance(tool, Mapping):
        raise InputError(
            f"tool definition: expected an object, got {type(tool).__name__}", code="input.tool"
        )
    view = {k: v for k, v in tool.items() if k not in EXCLUDED_FIELDS and v is not None}
    name = view.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("tool definition: 'name' must be a non-empty string", code="input.tool")
    return view


def canonical_json(value: Mapping[str, Any], where: str) -> bytes:
    """Canonical bytes of a JSON object; InputError naming ``where`` and the field if not JSON."""
    problem = argument_problem(dict(value), _LIMITS)
    if problem is not None:
        detail = f"field {problem[5:]}" if problem.startswith("args.") else problem[6:]
        raise InputError(f"{where}: {detail}", code="input.tool")
    return _encode(value)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tool_digest(tool: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical model view of ``tool``."""
    view = model_view(tool)
    return _digest(canonical_json(view, f"tool {view['name']!r}"))


def instructions_digest(server_instructions: str | None) -> str:
    """``sha256:<hex>`` of a server's ``instructions`` (JSON-encoded, so None differs from "")."""
    if server_instructions is not None and not isinstance(server_instructions, str):
        raise InputError("server instructions must be a string or null", code="input.tool")
    try:
        return _digest(_encode(server_instructions))
    except UnicodeEncodeError:
        raise InputError(
            "server instructions are not valid UTF-8 (lone surrogate)", code="input.tool"
        ) from None


@dataclass(frozen=True)
class ToolPin:
    """One version of a tool: its digest and the model view it was computed from."""

    digest: str
    definition: Mapping[str, Any]

    @property
    def name(self) -> str:
        """The tool's name (part of the definition, so part of the digest)."""
        return str(self.definition["name"])


def pin_tool(tool: Mapping[str, Any]) -> ToolPin:
    """A :class:`ToolPin` holding its own deep copy of ``tool``'s model view."""
    view = model_view(tool)
    data = canonical_json(view, f"tool {view['name']!r}")
    # Decoding the canonical bytes gives a copy nobody else holds, so the pin cannot drift
    # from its digest when the caller later mutates the dict it passed in.
    return ToolPin(_digest(data), _decode(data))


@dataclass(frozen=True)
class ServerSurface:
    """What one upstream server shows the model: its instructions and its tools by name."""

    name: str
    instructions: str | None
    tools: Mapping[str, ToolPin]

    @property
    def instructions_digest(self) -> str:
        """Digest of :attr:`instructions`."""
        return instructions_digest(self.instructions)

    @classmethod
    def from_listing(
        cls, name: str, tools: Iterable[Mapping[str, Any]], instructions: str | None = None
    ) -> ServerSurface:
        """Build from a ``tools/list`` result; a tool name listed twice is an InputError."""
        pins: dict[str, ToolPin] = {}
        for tool in tools:
            pin = pin_tool(tool)
            if pin.name in pins:
                # Two definitions under one name: which one the model sees is up to the client.
                raise InputError(
                    f"server {name!r} lists tool {pin.name!r} twice", code="input.tool"
                )
            pins[pin.name] = pin
        instructions_digest(instructions)  # validates
        return cls(name, instructions, dict(sorted(pins.items())))


@dataclass(frozen=True)
class PathChange:
    """One changed place inside a JSON value, named by an RFC 6901 pointer from the tool root."""

    op: Op
    pointer: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class FieldChange:
    """A changed top-level field: a unified diff if it is text, else the changed JSON paths."""

    field: str
    op: Op
    old: Any
    new: Any
    text_diff: tuple[str, ...] = ()
    paths: tuple[PathChange, ...] = ()


@dataclass(frozen=True)
class ToolChange:
    """A tool present on both sides whose digest differs."""

    name: str
    old_digest: str
    new_digest: str
    fields: tuple[FieldChange, ...]


@dataclass(frozen=True)
class SurfaceDiff:
    """Everything that differs between two surfaces of one server."""

    server: str
    added: tuple[ToolPin, ...]
    removed: tuple[ToolPin, ...]
    changed: tuple[ToolChange, ...]
    instructions: FieldChange | None

    @property
    def empty(self) -> bool:
        """True if the two surfaces are identical."""
        return not (self.added or self.removed or self.changed or self.instructions)

    def render(self) -> str:
        """Text for ``ringfence gateway diff``; hidden characters are shown as ``\\u{...}``."""
        return "\n".join(_render(self)) + "\n"


_MISSING: Any = object()


def _same(a: Any, b: Any) -> bool:
    # True == 1 and 1 == 1.0 in Python, but they are different JSON and different bytes.
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _json_changes(old: Any, new: Any, path: list[str | int]) -> list[PathChange]:
    if _same(old, new):
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[PathChange] = []
        for key in sorted(old.keys() | new.keys()):
            if key not in new:
                out.append(PathChange("remove", json_pointer([*path, key]), old[key], None))
            elif key not in old:
                out.append(PathChange("add", json_pointer([*path, key]), None, new[key]))
            else:
                out += _json_changes(old[key], new[key], [*path, key])
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            if i >= len(new):
                out.append(PathChange("remove", json_pointer([*path, i]), old[i], None))
            elif i >= len(old):
                out.append(PathChange("add", json_pointer([*path, i]), None, new[i]))
            else:
                out += _json_changes(old[i], new[i], [*path, i])
        return out
    return [PathChange("replace", json_pointer(path), old, new)]


def _text_diff(old: str, new: str, label: str) -> tuple[str, ...]:
    # Split on "\n" only (not splitlines) so a changed line ending or "\r" still shows up,
    # and reveal hidden characters first so a zero-width insertion is a visible change.
    a = [reveal(line) for line in old.split("\n")] if old else []
    b = [reveal(line) for line in new.split("\n")] if new else []
    return tuple(difflib.unified_diff(a, b, f"a/{label}", f"b/{label}", lineterm="", n=2))


def _field_change(name: str, old: Any, new: Any) -> FieldChange:
    op: Op = "add" if old is _MISSING else "remove" if new is _MISSING else "replace"
    o = None if old is _MISSING else old
    n = None if new is _MISSING else new
    if isinstance(o, str | None) and isinstance(n, str | None):
        return FieldChange(name, op, o, n, text_diff=_text_diff(o or "", n or "", name))
    if op == "replace":
        return FieldChange(name, op, o, n, paths=tuple(_json_changes(o, n, [name])))
    return FieldChange(name, op, o, n, paths=(PathChange(op, json_pointer([name]), o, n),))


def _tool_change(old: ToolPin, new: ToolPin) -> ToolChange:
    fields = []
    for key in sorted(old.definition.keys() | new.definition.keys()):
        a = old.definition.get(key, _MISSING)
        b = new.definition.get(key, _MISSING)
        if a is _MISSING or b is _MISSING or not _same(a, b):
            fields.append(_field_change(key, a, b))
    return ToolChange(old.name, old.digest, new.digest, tuple(fields))


def diff_surfaces(old: ServerSurface, new: ServerSurface) -> SurfaceDiff:
    """What changed from ``old`` to ``new`` (tools sorted by name)."""
    names = sorted(old.tools.keys() | new.tools.keys())
    added = tuple(new.tools[n] for n in names if n not in old.tools)
    removed = tuple(old.tools[n] for n in names if n not in new.tools)
    changed = tuple(
        _tool_change(old.tools[n], new.tools[n])
        for n in names
        if n in old.tools and n in new.tools and old.tools[n].digest != new.tools[n].digest
    )
    instructions = None
    if old.instructions_digest != new.instructions_digest:
        instructions = _field_change("instructions", old.instructions, new.instructions)
    return SurfaceDiff(new.name, added, removed, changed, instructions)


# Characters shown as \u{...} when rendered: invisible, formatting, control and unassigned code
# points, and every space except U+0020 (a reviewer must see exactly what the model reads).
def _json_text(value: Any) -> str:
    return reveal(msgspec.json.format(_encode(value), indent=2).decode())


def _render_path(change: PathChange) -> list[str]:
    lines = [f"      {change.op} {reveal(change.pointer) or '/'}"]
    if change.op != "add":
        lines += [f"        - {line}" for line in _json_text(change.old).split("\n")]
    if change.op != "remove":
        lines += [f"        + {line}" for line in _json_text(change.new).split("\n")]
    return lines


def _render_field(change: FieldChange) -> list[str]:
    lines = [f"    {change.field} ({change.op}):"]
    lines += [f"      {line}" for line in change.text_diff]
    for path in change.paths:
        lines += _render_path(path)
    return lines


def _render(diff: SurfaceDiff) -> list[str]:
    if diff.empty:
        return [f"server {diff.server}: no changes"]
    counts = f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed"
    lines = [
        f"server {diff.server}: {counts}" + (", instructions changed" * bool(diff.instructions))
    ]
    if diff.instructions is not None:
        old, new = diff.instructions.old, diff.instructions.new
        lines.append(f"~ instructions {instructions_digest(old)} -> {instructions_digest(new)}")
        lines += [f"      {line}" for line in diff.instructions.text_diff]
    for pin in diff.added:
        lines.append(f"+ tool {reveal(pin.name)} {pin.digest}")
        lines += [f"      {line}" for line in _json_text(pin.definition).split("\n")]
    for pin in diff.removed:
        lines.append(f"- tool {reveal(pin.name)} {pin.digest}")
    for tool in diff.changed:
        lines.append(f"~ tool {reveal(tool.name)} {tool.old_digest} -> {tool.new_digest}")
        for field in tool.fields:
            lines += _render_field(field)
    return lines

"""The pin file: a versioned JSON document holding a :class:`~.pins.PinSet`, read and saved safely.

Format ``ringfence-pins-1``::

    {"format": "ringfence-pins-1",
     "servers": {NAME: {
        "instructions": DIGEST | null,          approved instructions (null: none approved yet)
        "instructions_text": STR | null,
        "pending_instructions": {"digest": DIGEST, "text": STR | null} | null,
        "tools": {TOOL: {
            "digest": DIGEST | null, "definition": {...} | null,     approved version
            "pending": {"digest": DIGEST, "definition": {...}} | null, observed, awaiting approval
            "status": "pinned" | "quarantined",   derived; written for people, checked on load
            "reason": STR | null,
            "first_seen": ISO-8601, "approved_at": ISO-8601 | null,
            "last_changed": ISO-8601 | null, "removed_at": ISO-8601 | null}}}}}

Loading is strict, because the file decides what may run: unknown or missing keys, a digest
that does not match its definition, or a status that does not follow from the record are errors
(:class:`~ringfence.errors.ConfigError` naming the file and the place), never guesses.  The file
is written ASCII-only, so hidden characters in a definition appear as ``\\u200b`` escapes when a
person opens or diffs it.  Saving writes a temporary file, fsyncs it and renames it over the old
one, so a crash leaves either the old pins or the new ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from ringfence.adapters.mcp.pins import InstructionsPin, PinRecord, PinSet, ServerPins
from ringfence.adapters.mcp.surface import ToolPin, instructions_digest, model_view, tool_digest
from ringfence.errors import ConfigError, InputError

__all__ = ["FORMAT", "dumps_pins", "load_pins", "loads_pins", "save_pins"]

FORMAT = "ringfence-pins-1"

_SERVER_KEYS = frozenset({"instructions", "instructions_text", "pending_instructions", "tools"})
_TOOL_KEYS = frozenset(
    {"digest", "definition", "pending", "status", "reason"}
    | {"first_seen", "approved_at", "last_changed", "removed_at"}
)


class _Bad(Exception):
    """A problem at a place in the document; turned into a ConfigError naming the file."""

    def __init__(self, where: str, message: str, code: str = "config.pins.invalid") -> None:
        super().__init__(message)
        self.where = where
        self.message = message
        self.code = code


def _fail(where: str, message: str) -> NoReturn:
    raise _Bad(where, message)


# -- encoding (pure) ------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _tool_json(pins: ServerPins, name: str, record: PinRecord) -> dict[str, Any]:
    pinned, pending = record.pinned, record.pending
    return {
        "digest": pinned.digest if pinned else None,
        "definition": dict(pinned.definition) if pinned else None,
        "pending": {"digest": pending.digest, "definition": dict(pending.definition)}
        if pending
        else None,
        "status": pins.status(name)[0].value,
        "reason": record.reason,
        "first_seen": _time(record.first_seen),
        "approved_at": _time(record.approved_at),
        "last_changed": _time(record.last_changed),
        "removed_at": _time(record.removed_at),
    }


def _server_json(pins: ServerPins) -> dict[str, Any]:
    approved, pending = pins.instructions, pins.pending_instructions
    return {
        "instructions": approved.digest if approved else None,
        "instructions_text": approved.text if approved else None,
        "pending_instructions": {"digest": pending.digest, "text": pending.text}
        if pending
        else None,
        "tools": {name: _tool_json(pins, name, r) for name, r in sorted(pins.tools.items())},
    }


def dumps_pins(pins: PinSet) -> bytes:
    """The pin file's bytes (indented, keys sorted, ASCII-only, trailing newline)."""
    doc = {
        "format": FORMAT,
        "servers": {name: _server_json(s) for name, s in sorted(pins.servers.items())},
    }
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode()


# -- decoding (pure) ------------------------------------------------------------------------


def _object(value: Any, where: str, keys: frozenset[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(where, f"expected an object, got {_kind(value)}")
    if keys is not None:
        missing, extra = sorted(keys - value.keys()), sorted(value.keys() - keys)
        if missing:
            _fail(where, f"missing key(s) {', '.join(missing)}")
        if extra:
            _fail(where, f"unknown key(s) {', '.join(extra)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _str(value: Any, where: str, *, null: bool = False) -> str | None:
    if value is None and null:
        return None
    if not isinstance(value, str):
        _fail(where, f"expected a string{' or null' if null else ''}, got {_kind(value)}")
    return value


def _when(value: Any, where: str, *, null: bool = True) -> datetime | None:
    text = _str(value, where, null=null)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        _fail(where, f"{text!r} is not an ISO 8601 time")
    if parsed.tzinfo is None:
        _fail(where, f"{text!r} has no time zone")
    return parsed.astimezone(UTC)


def _tool_pin(digest: Any, definition: Any, where: str, name: str) -> ToolPin:
    digest = _str(digest, f"{where}.digest")
    definition = _object(definition, f"{where}.definition")
    if definition.get("name") != name:
        _fail(f"{where}.definition.name", f"does not match the tool's key {name!r}")
    try:
        view = model_view(definition)
        actual = tool_digest(definition)
    except InputError as exc:
        _fail(f"{where}.definition", exc.message)
    if view.keys() != definition.keys():
        _fail(f"{where}.definition", "holds _meta or null fields, which are never pinned")
    if actual != digest:
        # Someone edited the definition or the digest by hand: refuse rather than trust either.
        _fail(f"{where}.digest", f"does not match the definition (which hashes to {actual})")
    return ToolPin(actual, definition)


def _instructions(digest: Any, text: Any, where: tuple[str, str]) -> InstructionsPin:
    checked = _str(digest, where[0])
    body = _str(text, where[1], null=True)
    if instructions_digest(body) != checked:
        _fail(where[0], "does not match the instructions text")
    assert checked is not None
    return InstructionsPin(checked, body)


def _record(value: Any, where: str, name: str) -> tuple[PinRecord, str]:
    doc = _object(value, where, _TOOL_KEYS)
    pinned = None
    if doc["digest"] is not None or doc["definition"] is not None:
        pinned = _tool_pin(doc["digest"], doc["definition"], where, name)
    pending = None
    if doc["pending"] is not None:
        pend = _object(doc["pending"], f"{where}.pending", frozenset({"digest", "definition"}))
        pending = _tool_pin(pend["digest"], pend["definition"], f"{where}.pending", name)
    if pinned is None and pending is None:
        _fail(where, "has neither an approved nor a pending version")
    first_seen = _when(doc["first_seen"], f"{where}.first_seen", null=False)
    assert first_seen is not None
    record = PinRecord(
        pinned,
        pending,
        first_seen,
        approved_at=_when(doc["approved_at"], f"{where}.approved_at"),
        last_changed=_when(doc["last_changed"], f"{where}.last_changed"),
        removed_at=_when(doc["removed_at"], f"{where}.removed_at"),
        reason=_str(doc["reason"], f"{where}.reason", null=True),
    )
    status = _str(doc["status"], f"{where}.status")
    if status not in ("pinned", "quarantined"):
        _fail(f"{where}.status", f"must be 'pinned' or 'quarantined', not {status!r}")
    assert status is not None
    return record, status


def _server(value: Any, where: str) -> ServerPins:
    doc = _object(value, where, _SERVER_KEYS)
    approved = None
    if doc["instructions"] is not None:
        w = (f"{where}.instructions", f"{where}.instructions_text")
        approved = _instructions(doc["instructions"], doc["instructions_text"], w)
    elif doc["instructions_text"] is not None:
        _fail(f"{where}.instructions_text", "set, but no instructions digest")
    pending = None
    if doc["pending_instructions"] is not None:
        p = f"{where}.pending_instructions"
        pend = _object(doc["pending_instructions"], p, frozenset({"digest", "text"}))
        pending = _instructions(pend["digest"], pend["text"], (f"{p}.digest", f"{p}.text"))
    if approved is None and pending is None:
        _fail(f"{where}.instructions", "null, and no pending instructions either")
    records: dict[str, PinRecord] = {}
    written: dict[str, str] = {}
    for name, tool in _object(doc["tools"], f"{where}.tools").items():
        records[name], written[name] = _record(tool, f"{where}.tools.{name}", name)
    server = ServerPins(approved, pending, records)
    for name, status in written.items():
        derived = server.status(name)[0].value
        if status != derived:
            # The status is derived; a hand-edited "pinned" must not silently release a tool.
            _fail(f"{where}.tools.{name}.status", f"says {status!r} but the record is {derived!r}")
    return server


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Bad("", f"duplicate key {key!r}", "config.pins.json")
        out[key] = value
    return out


def _no_constant(name: str) -> NoReturn:
    raise _Bad("", f"{name} is not valid JSON", "config.pins.json")


def loads_pins(data: bytes, source: str) -> PinSet:
    """Parse pin-file bytes; ConfigError naming ``source`` and the place if anything is wrong."""
    try:
        try:
            doc = json.loads(
                data.decode("utf-8"),
                object_pairs_hook=_no_duplicates,
                parse_constant=_no_constant,
            )
        except UnicodeDecodeError as exc:
            raise _Bad("", f"not UTF-8 (byte {exc.start})", "config.pins.json") from None
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            raise _Bad("", f"not valid JSON ({where}: {exc.msg})", "config.pins.json") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise _Bad("format", f"expected {FORMAT!r}, found {found!r}", "config.pins.format")
        doc = _object(doc, "(top level)", frozenset({"format", "servers"}))
        servers = _object(doc["servers"], "servers")
        return PinSet({n: _server(s, f"servers.{n}") for n, s in sorted(servers.items())})
    except _Bad as bad:
        where = f"{source}: {bad.where}" if bad.where else source
        raise ConfigError(f"{where}: {bad.message}", code=bad.code) from None


# -- I/O ------------------------------------------------------------------------------------


def load_pins(path: str | os.PathLike[str], *, missing_ok: bool = False) -> PinSet:
    """Read the pin file at ``path``.

    A missing file is a ConfigError unless ``missing_ok`` (first run): losing the pin file
    would otherwise silently reset trust-on-first-use for every tool.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return PinSet()
        raise ConfigError(f"{path}: no pin file", code="config.pins.io") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", code="config.pins.io") from None
    return loads_pins(data, str(path))


def save_pins(path: str | os.PathLike[str], pins: PinSet) -> None:
    """Write ``pins`` to ``path`` atomically (temporary file, fsync, rename, fsync directory)."""
    target = Path(path)
    data = dumps_pins(pins)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        tmp = None
        if os.name == "posix":  # make the rename itself durable
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise ConfigError(
            f"{target}: cannot write pins: {exc.strerror or exc}", code="config.pins.io"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)

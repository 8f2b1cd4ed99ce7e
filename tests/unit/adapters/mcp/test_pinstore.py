"""The pin file: round trips, atomic saves, and a clear error for every kind of damage."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.adapters.mcp.pins import PinSet, approve, reconcile
from ringfence.adapters.mcp.pinstore import FORMAT, dumps_pins, load_pins, loads_pins, save_pins
from ringfence.adapters.mcp.surface import ServerSurface, tool_digest
from ringfence.errors import ConfigError

from ._tools import FETCH, GET_CURRENT_TIME, GIT_DIFF, GIT_STATUS, HIDDEN_CHARS, SHADOWING_ADD

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sample_pins() -> PinSet:
    """A pin set with every kind of state: pinned, changed, unapproved, removed, instructions."""
    git = ServerSurface.from_listing("git", [GIT_STATUS, GIT_DIFF], "Git tools.")
    pins, _ = reconcile(PinSet(), git, "tofu", T0)
    evil = copy.deepcopy(GIT_STATUS) | {"description": "Status.\u200b<IMPORTANT>"}
    git2 = ServerSurface.from_listing("git", [evil], "New instructions")
    pins, _ = reconcile(pins, git2, "tofu", T1)
    web = ServerSurface.from_listing("web", [FETCH, HIDDEN_CHARS], None)
    pins, _ = reconcile(pins, web, "allowlist", T0, {tool_digest(FETCH)})
    clock = ServerSurface.from_listing("clock", [GET_CURRENT_TIME], None)
    pins, _ = reconcile(pins, clock, "tofu", T0)
    later = ServerSurface.from_listing("clock", [GET_CURRENT_TIME | {"title": "Now"}], None)
    pins, _ = reconcile(pins, later, "tofu", T1)
    mail = ServerSurface.from_listing("mail", [SHADOWING_ADD], "Mail tools.")
    pins, _ = reconcile(pins, mail, "allowlist", T0, {tool_digest(SHADOWING_ADD)})
    return pins


def sample_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(dumps_pins(sample_pins()))
    return doc


def load_doc(doc: Any) -> PinSet:
    return loads_pins(json.dumps(doc).encode(), "pins.json")


# -- round trips ----------------------------------------------------------------------------


def test_round_trip() -> None:
    pins = sample_pins()
    assert loads_pins(dumps_pins(pins), "x") == pins
    assert loads_pins(dumps_pins(PinSet()), "x") == PinSet()


def test_the_file_is_readable_and_shows_hidden_characters() -> None:
    data = dumps_pins(sample_pins())
    assert data.isascii()
    assert b"\\u200b" in data
    assert data.endswith(b"}\n")
    doc = json.loads(data)
    assert doc["format"] == FORMAT
    status = doc["servers"]["git"]["tools"]["git_status"]
    assert status["status"] == "quarantined"
    assert status["first_seen"] == "2025-06-01T12:00:00Z"
    assert status["pending"]["digest"].startswith("sha256:")
    assert doc["servers"]["git"]["pending_instructions"]["text"] == "New instructions"
    assert doc["servers"]["web"]["tools"]["fetch"]["status"] == "pinned"
    assert doc["servers"]["web"]["tools"]["get_weather"]["digest"] is None
    assert doc["servers"]["mail"]["instructions"] is None
    assert doc["servers"]["mail"]["tools"]["add"]["status"] == "quarantined"
    assert doc["servers"]["clock"]["tools"]["get_current_time"]["last_changed"] == (
        "2025-06-01T13:00:00Z"
    )


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    pins = sample_pins()
    save_pins(path, pins)
    assert load_pins(path) == pins
    released = approve(pins, "git", None, None, T1)
    save_pins(path, released)
    assert load_pins(path) == released
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pins.json"]  # no temporary left


def test_a_missing_file_is_an_error_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pins(tmp_path / "nope.json")
    assert caught.value.code == "config.pins.io"
    assert "nope.json" in caught.value.message
    assert load_pins(tmp_path / "nope.json", missing_ok=True) == PinSet()


def test_an_unreadable_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pins(tmp_path)  # a directory
    assert caught.value.code == "config.pins.io"


# -- atomic writes --------------------------------------------------------------------------


def failing(name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, f"No space left on device ({name})")

    return fail


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_a_failed_write_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "pins.json"
    old = sample_pins()
    save_pins(path, old)
    before = path.read_bytes()
    monkeypatch.setattr(os, step, failing(step))
    with pytest.raises(ConfigError) as caught:
        save_pins(path, approve(old, "git", None, None, T1))
    assert caught.value.code == "config.pins.io"
    assert str(path) in caught.value.message
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pins.json"]


def test_saving_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        save_pins(tmp_path / "no" / "such" / "pins.json", PinSet())
    assert caught.value.code == "config.pins.io"


# -- malformed files: every kind of damage is a ConfigError naming file and place -----------


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        (b"", "config.pins.json", "not valid JSON (line 1 column 1"),
        (b"{", "config.pins.json", "not valid JSON"),
        (b'{"format": "ringfence-pins-1", "servers": {}', "config.pins.json", "line 1"),
        (b"\xff\xfe{}", "config.pins.json", "not UTF-8"),
        (b'{"format": "ringfence-pins-1", "servers": {"a": NaN}}', "config.pins.json", "NaN"),
        (b'{"format": "x", "format": "ringfence-pins-1"}', "config.pins.json", "duplicate key"),
        (b"[]", "config.pins.format", "expected 'ringfence-pins-1', found None"),
        (b'"ringfence-pins-1"', "config.pins.format", "expected"),
        (b'{"servers": {}}', "config.pins.format", "found None"),
        (b'{"format": "ringfence-pins-2", "servers": {}}', "config.pins.format", "pins-2"),
        (b'{"format": "ringfence-pins-1"}', "config.pins.invalid", "missing key(s) servers"),
        (b'{"format": "ringfence-pins-1", "servers": [], "x": 1}', "config.pins.invalid", "x"),
        (b'{"format": "ringfence-pins-1", "servers": []}', "config.pins.invalid", "servers"),
    ],
)
def test_unparseable_files(data: bytes, code: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        loads_pins(data, "/etc/ringfence/pins.json")
    assert caught.value.code == code
    assert caught.value.message.startswith("/etc/ringfence/pins.json: ")
    assert fragment in caught.value.message


def edit(path: list[str], value: Any) -> dict[str, Any]:
    doc = sample_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


DELETE: Any = object()
STATUS = ["servers", "git", "tools", "git_status"]
DIFF = ["servers", "git", "tools", "git_diff"]
FETCHED = ["servers", "web", "tools", "fetch"]
CLOCK = ["servers", "clock", "tools", "get_current_time"]


@pytest.mark.parametrize(
    ("path", "value", "where", "fragment"),
    [
        (["servers", "git"], [], "servers.git", "expected an object, got an array"),
        (["servers", "git", "extra"], 1, "servers.git", "unknown key(s) extra"),
        (["servers", "git", "tools"], DELETE, "servers.git", "missing key(s) tools"),
        (["servers", "git", "tools"], "x", "servers.git.tools", "expected an object"),
        ([*DIFF, "digest"], 42, f"{'.'.join(DIFF)}.digest", "expected a string, got a number"),
        ([*DIFF, "first_seen"], None, "first_seen", "expected a string, got null"),
        ([*DIFF, "first_seen"], "yesterday", "first_seen", "not an ISO 8601 time"),
        ([*DIFF, "approved_at"], "2025-06-01T12:00:00", "approved_at", "no time zone"),
        ([*DIFF, "reason"], ["x"], "reason", "expected a string or null"),
        ([*DIFF, "status"], "trusted", "status", "must be 'pinned' or 'quarantined'"),
        ([*DIFF, "status"], True, "status", "expected a string, got a boolean"),
        ([*DIFF, "colour"], "red", "git_diff", "unknown key(s) colour"),
        ([*DIFF, "removed_at"], DELETE, "git_diff", "missing key(s) removed_at"),
        ([*DIFF, "definition", "description"], "Edited", "git_diff.digest", "does not match"),
        ([*DIFF, "digest"], "sha256:" + "0" * 64, "git_diff.digest", "does not match"),
        ([*DIFF, "definition", "name"], "git_status", "definition.name", "does not match"),
        ([*DIFF, "definition", "_meta"], {}, "git_diff.definition", "_meta or null"),
        ([*DIFF, "definition", "title"], None, "git_diff.definition", "_meta or null"),
        ([*DIFF, "definition"], None, "git_diff.definition", "expected an object, got null"),
        ([*DIFF, "pending"], {"digest": "x"}, "git_diff.pending", "missing key(s) definition"),
        ([*CLOCK, "pending"], None, "get_current_time.status", "says 'quarantined'"),
        ([*FETCHED, "status"], "quarantined", "fetch.status", "record is 'pinned'"),
        (
            ["servers", "web", "tools", "get_weather", "status"],
            "pinned",
            "get_weather.status",
            "says 'pinned' but the record is 'quarantined'",
        ),
        (
            ["servers", "web", "tools", "get_weather", "pending"],
            None,
            "get_weather",
            "neither an approved nor a pending version",
        ),
        (["servers", "git", "instructions"], "sha256:00", "git.instructions", "does not match"),
        (["servers", "git", "instructions_text"], "Edited", "git.instructions", "does not match"),
        (["servers", "web", "instructions_text"], "Hi", "web.instructions", "does not match"),
        (
            ["servers", "mail", "instructions_text"],
            "Hi",
            "mail.instructions_text",
            "no instructions",
        ),
        (["servers", "web", "instructions"], None, "web.instructions", "no pending instructions"),
        (
            ["servers", "git", "pending_instructions", "text"],
            "Edited",
            "pending_instructions.digest",
            "does not match",
        ),
        (
            ["servers", "git", "pending_instructions"],
            {"digest": "x"},
            "pending_instructions",
            "missing key(s) text",
        ),
    ],
)
def test_damaged_documents(path: list[str], value: Any, where: str, fragment: str) -> None:
    doc = edit(path, value)
    data = json.dumps(doc, allow_nan=True).encode()
    with pytest.raises(ConfigError) as caught:
        loads_pins(data, "pins.json")
    message = caught.value.message
    assert message.startswith("pins.json: servers."), message
    assert where in message, message
    assert fragment in message, message


def test_a_hand_edited_release_is_refused() -> None:
    # Flipping "quarantined" to "pinned" must not release a tool; only approve() does that.
    doc = edit([*STATUS, "status"], "pinned")
    with pytest.raises(ConfigError, match="says 'pinned' but the record is 'quarantined'"):
        load_doc(doc)


@SETTINGS
@given(st.data())
def test_any_truncation_is_a_config_error(data: st.DataObject) -> None:
    whole = dumps_pins(sample_pins())
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 2))
    with pytest.raises(ConfigError) as caught:
        loads_pins(whole[:cut], "pins.json")
    assert caught.value.code == "config.pins.json"


@SETTINGS
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_raise_anything_but_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        loads_pins(data, "pins.json")


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)


@SETTINGS
@given(st.data())
def test_any_single_edit_is_caught_or_harmless(data: st.DataObject) -> None:
    # Replace one value anywhere in a valid document: the result either loads to a consistent
    # pin set or is refused with a ConfigError, never another exception.
    doc = sample_doc()
    paths: list[list[Any]] = []

    def walk(value: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, [*path, k])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, [*path, i])

    walk(doc, [])
    path = data.draw(st.sampled_from(paths[1:]))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(json_leaf)
    try:
        pins = load_doc(doc)
    except ConfigError:
        return
    assert loads_pins(dumps_pins(pins), "again") == pins

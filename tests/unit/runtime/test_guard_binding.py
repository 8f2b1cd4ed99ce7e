"""Guard.protect / wrap: every argument is bound to its name (defaults applied) before the check.

The function body must never run for a denied call; each test records what ran in ``ran``.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ringfence import DeniedError, Effect
from ringfence.runtime.audit import AuditLog

from ._support import GuardFactory, records_of

FILES = """
version: 1
name: files
tools:
  safe_delete:
    args:
      type: object
      properties:
        path: {type: string}
        recursive: {type: boolean}
    resources: {path: path}
  delete_many:
    args:
      type: object
      properties:
        paths: {type: array, items: {type: string}}
        recursive: {type: boolean}
    resources: {paths: path}
  delete_opts:
    args:
      type: object
      properties:
        path: {type: string}
        force: {type: boolean}
    resources: {path: path}
rules:
  - id: tmp-only
    effect: allow
    tool: [safe_delete, delete_many, delete_opts]
    resource: "path:/tmp/**"
  - id: no-recursive
    effect: deny
    tool: [safe_delete, delete_many]
    reason: recursive deletes are not allowed
    when:
      - arg: recursive
        eq: true
  - id: no-force
    effect: deny
    tool: delete_opts
    when:
      - arg: force
        eq: true
"""

MODES = """
version: 1
tools:
  set_mode:
    args:
      type: object
      properties:
        mode: {type: string}
        level: {type: integer}
rules:
  - id: modes
    effect: allow
    tool: set_mode
  - id: no-force
    effect: deny
    tool: set_mode
    when: [{arg: mode, eq: force}]
  - id: no-high-level
    effect: deny
    tool: set_mode
    when: [{arg: level, ge: 5}]
"""


def decision_args(log: AuditLog) -> list[dict[str, Any]]:
    return [r["args"] for r in records_of(log, "decision")]


# -- the anchor case -----------------------------------------------------------------------


def test_allowed_call_runs_and_is_recorded(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> str:
        ran.append(path)
        return "deleted"

    assert safe_delete("/tmp/scratch.txt") == "deleted"
    assert ran == ["/tmp/scratch.txt"]
    decision, outcome = records_of(memory_log)
    assert decision["type"] == "decision"
    assert decision["effect"] == "allow"
    assert decision["rules"] == ["tmp-only"]
    assert decision["args"] == {"path": "/tmp/scratch.txt", "recursive": False}
    assert outcome["type"] == "outcome"
    assert outcome["decision_id"] == decision["decision_id"]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {"path": "/etc/passwd"}),
        (("/etc/passwd",), {}),
        (("/etc/passwd", False), {}),
        ((), {"recursive": False, "path": "/etc/passwd"}),
        (("/tmp/../etc/passwd",), {}),
    ],
    ids=["keyword", "positional", "both-positional", "keywords-reordered", "dot-dot"],
)
def test_path_outside_tmp_is_denied_however_passed(
    make_guard: GuardFactory, memory_log: AuditLog, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete(*args, **kwargs)

    assert ran == []
    decision = info.value.decision
    assert decision.effect is Effect.DENY
    assert decision.rules == ("ringfence:default-deny",)
    assert decision.decision_id == "d-1"
    assert info.value.code == "denied.deny"
    assert "d-1" in str(info.value)
    (record,) = records_of(memory_log)  # a decision record and no outcome
    assert record["type"] == "decision"
    assert record["decision_id"] == "d-1"
    assert record["effect"] == "deny"
    assert record["args"]["path"] == (args[0] if args else kwargs["path"])
    assert record["args"]["recursive"] is False


def test_deny_triggered_only_by_the_default_value(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, recursive: bool = True) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/x")  # the caller never wrote recursive=True
    assert ran == []
    assert info.value.decision.effect is Effect.DENY
    assert info.value.decision.rules == ("no-recursive",)
    assert info.value.decision.reasons == ("recursive deletes are not allowed",)
    assert decision_args(memory_log) == [{"path": "/tmp/x", "recursive": True}]

    safe_delete("/tmp/x", recursive=False)  # the same call, default overridden, runs
    assert ran == ["/tmp/x"]


def test_keyword_only_default_is_bound(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, *, recursive: bool = True) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete("/tmp/x")
    assert info.value.decision.rules == ("no-recursive",)
    assert ran == []
    safe_delete("/tmp/y", recursive=False)
    assert ran == ["/tmp/y"]
    assert decision_args(memory_log) == [
        {"path": "/tmp/x", "recursive": True},
        {"path": "/tmp/y", "recursive": False},
    ]


def test_positional_only_parameters(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def safe_delete(path: str, /, recursive: bool = True) -> None:
        ran.append(path)

    with pytest.raises(DeniedError):
        safe_delete("/tmp/x")
    with pytest.raises(DeniedError):
        safe_delete("/etc/passwd", recursive=False)
    safe_delete("/tmp/x", False)
    assert ran == ["/tmp/x"]
    assert decision_args(memory_log)[0] == {"path": "/tmp/x", "recursive": True}


def test_var_positional_is_bound_as_a_list(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[tuple[str, ...]] = []

    @guard.protect
    def delete_many(*paths: str, recursive: bool = False) -> None:
        ran.append(paths)

    delete_many("/tmp/a", "/tmp/b")
    with pytest.raises(DeniedError):
        delete_many("/tmp/a", "/etc/passwd")  # one path outside /tmp is enough
    with pytest.raises(DeniedError) as info:
        delete_many("/tmp/a", recursive=True)
    assert info.value.decision.rules == ("no-recursive",)
    assert ran == [("/tmp/a", "/tmp/b")]
    assert decision_args(memory_log)[1] == {"paths": ["/tmp/a", "/etc/passwd"], "recursive": False}


def test_var_keyword_entries_are_bound_by_name(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[dict[str, Any]] = []

    @guard.protect
    def delete_opts(path: str, **options: Any) -> None:
        ran.append(options)

    with pytest.raises(DeniedError) as info:
        delete_opts("/tmp/x", force=True)
    assert info.value.decision.rules == ("no-force",)
    delete_opts("/tmp/x", force=False)
    assert ran == [{"force": False}]
    assert decision_args(memory_log) == [
        {"path": "/tmp/x", "force": True},
        {"path": "/tmp/x", "force": False},
    ]


def test_var_keyword_given_as_a_dict(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def delete_opts(path: str, **options: Any) -> None:
        ran.append(path)

    with pytest.raises(DeniedError):
        delete_opts(**{"path": "/tmp/x", "force": True})
    assert ran == []


def test_methods_skip_self(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    class Files:
        @guard.protect
        def safe_delete(self, path: str, recursive: bool = True) -> str:
            ran.append(path)
            return type(self).__name__

    files = Files()
    with pytest.raises(DeniedError) as info:
        files.safe_delete("/tmp/x")
    assert info.value.decision.rules == ("no-recursive",)
    with pytest.raises(DeniedError):
        files.safe_delete(path="/etc/passwd", recursive=False)
    assert files.safe_delete("/tmp/x", recursive=False) == "Files"
    assert Files.safe_delete(files, "/tmp/y", False) == "Files"
    assert ran == ["/tmp/x", "/tmp/y"]
    for args in decision_args(memory_log):
        assert set(args) == {"path", "recursive"}  # no "self"


def test_classmethods_and_staticmethods(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    class Files:
        @classmethod
        @guard.protect
        def safe_delete(cls, path: str, recursive: bool = False) -> None:
            ran.append(path)

        @staticmethod
        @guard.protect
        def delete_many(*paths: str, recursive: bool = False) -> None:
            ran.extend(paths)

    with pytest.raises(DeniedError):
        Files.safe_delete("/etc/passwd")
    with pytest.raises(DeniedError):
        Files().delete_many("/etc/passwd")
    Files.safe_delete("/tmp/a")
    Files.delete_many("/tmp/b")
    assert ran == ["/tmp/a", "/tmp/b"]
    assert decision_args(memory_log)[0] == {"path": "/etc/passwd", "recursive": False}


# -- value conversion ----------------------------------------------------------------------


def test_pathlib_paths_are_converted(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[Any] = []

    @guard.protect
    def safe_delete(path: Path, recursive: bool = False) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete(Path("/etc/passwd"))
    assert info.value.decision.rules == ("ringfence:default-deny",)  # decided, not an input error
    safe_delete(PurePosixPath("/tmp/a"))
    assert ran == [PurePosixPath("/tmp/a")]  # the function still gets the caller's object
    assert decision_args(memory_log) == [
        {"path": "/etc/passwd", "recursive": False},
        {"path": "/tmp/a", "recursive": False},
    ]


def test_path_defaults_and_var_positional_paths_are_converted(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[Any] = []

    @guard.protect
    def safe_delete(path: Path = Path("/etc/shadow"), recursive: bool = False) -> None:
        ran.append(path)

    @guard.protect
    def delete_many(*paths: Path, recursive: bool = False) -> None:
        ran.extend(paths)

    with pytest.raises(DeniedError) as info:
        safe_delete()
    assert info.value.decision.rules == ("ringfence:default-deny",)
    with pytest.raises(DeniedError) as info:
        delete_many(Path("/tmp/a"), Path("/etc/passwd"))
    assert info.value.decision.rules == ("ringfence:default-deny",)
    delete_many(Path("/tmp/a"), Path("/tmp/b"))
    assert ran == [Path("/tmp/a"), Path("/tmp/b")]
    assert decision_args(memory_log) == [
        {"path": "/etc/shadow", "recursive": False},
        {"paths": ["/tmp/a", "/etc/passwd"], "recursive": False},
        {"paths": ["/tmp/a", "/tmp/b"], "recursive": False},
    ]


class Mode(enum.Enum):
    SAFE = "safe"
    FORCE = "force"


class StrMode(enum.StrEnum):
    SAFE = "safe"
    FORCE = "force"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 9


@pytest.mark.parametrize("force", [Mode.FORCE, StrMode.FORCE], ids=["Enum", "StrEnum"])
def test_enum_values_are_converted(
    make_guard: GuardFactory, memory_log: AuditLog, force: enum.Enum
) -> None:
    guard = make_guard(MODES)
    ran: list[Any] = []

    @guard.protect
    def set_mode(mode: Any, level: Level = Level.LOW) -> None:
        ran.append(mode)

    with pytest.raises(DeniedError) as info:
        set_mode(force)
    assert info.value.decision.rules == ("no-force",)
    with pytest.raises(DeniedError) as info:
        set_mode("safe", Level.HIGH)
    assert info.value.decision.rules == ("no-high-level",)
    set_mode(type(force)("safe"))
    assert len(ran) == 1
    args = decision_args(memory_log)
    assert args == [
        {"mode": "force", "level": 1},
        {"mode": "safe", "level": 9},
        {"mode": "safe", "level": 1},
    ]
    assert type(args[0]["mode"]) is str
    assert type(args[0]["level"]) is int


def test_an_argument_that_is_not_json_is_denied_as_input(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[Any] = []

    @guard.protect
    def safe_delete(path: Any, recursive: bool = False) -> None:
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        safe_delete({"/tmp/a"})  # a set: no JSON form
    assert ran == []
    assert info.value.decision.rules == ("ringfence:input",)
    (record,) = records_of(memory_log)
    assert list(record["args"]) == ["[invalid]"]  # the unencodable value never reaches the log
    assert "set" in record["args"]["[invalid]"]


def test_non_finite_number_is_denied_as_input(make_guard: GuardFactory) -> None:
    guard = make_guard(MODES)
    ran: list[Any] = []

    @guard.protect
    def set_mode(mode: str, level: float = 1.0) -> None:
        ran.append(mode)

    with pytest.raises(DeniedError) as info:
        set_mode("safe", float("nan"))
    assert info.value.decision.rules == ("ringfence:input",)
    assert ran == []


# -- wrong calls ---------------------------------------------------------------------------


def _message(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(TypeError) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("/tmp/a", False, "extra"), {}),
        (("/tmp/a",), {"verbose": True}),
        (("/tmp/a",), {"path": "/tmp/b"}),
        ((), {"recursive": True, "force": True}),
        (("/tmp/a", False, True), {}),
    ],
    ids=[
        "missing",
        "too-many",
        "unexpected-keyword",
        "duplicate",
        "missing-with-keywords",
        "keyword-only-as-positional",
    ],
)
def test_wrong_arguments_raise_pythons_own_type_error(
    make_guard: GuardFactory, memory_log: AuditLog, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    guard = make_guard(FILES)
    ran: list[Any] = []

    def safe_delete(path: str, recursive: bool = False, *, force: bool = False) -> None:
        ran.append(path)

    protected = guard.protect(safe_delete)
    expected = _message(safe_delete, *args, **kwargs)
    assert _message(protected, *args, **kwargs) == expected
    assert ran == []
    assert records_of(memory_log) == []  # nothing was decided


def test_wrong_arguments_to_a_method_name_the_class(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)

    class Files:
        def safe_delete(self, path: str, recursive: bool = False) -> None:
            raise AssertionError("must not run")

        protected = guard.protect(safe_delete)

    expected = _message(Files().safe_delete)
    assert expected.startswith(
        "test_wrong_arguments_to_a_method_name_the_class.<locals>.Files.safe_delete()"
    )
    assert _message(Files().protected) == expected
    assert _message(Files().protected, "/tmp/a", 1, 2) == _message(
        Files().safe_delete, "/tmp/a", 1, 2
    )
    assert records_of(memory_log) == []


def test_wrapped_function_keeps_its_identity(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)

    def safe_delete(path: str, recursive: bool = False) -> None:
        """Delete a file."""

    protected = guard.protect(safe_delete)
    assert protected.__name__ == "safe_delete"
    assert protected.__doc__ == "Delete a file."
    assert protected.__wrapped__ is safe_delete  # type: ignore[attr-defined]


# -- tool names and kinds ------------------------------------------------------------------


def test_wrap_under_another_tool_name(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    def remove(path: str, recursive: bool = True) -> None:
        ran.append(path)

    protected = guard.wrap(remove, tool="safe_delete")
    with pytest.raises(DeniedError) as info:
        protected("/tmp/x")
    assert info.value.decision.rules == ("no-recursive",)  # the safe_delete rules applied
    protected("/tmp/x", False)
    assert ran == ["/tmp/x"]
    assert {r["tool"] for r in records_of(memory_log)} == {"safe_delete"}


def test_unknown_tool_name_is_denied_by_default(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    def remove(path: str) -> None:  # "remove" is not a tool any rule names
        ran.append(path)

    with pytest.raises(DeniedError) as info:
        remove("/tmp/x")
    assert info.value.decision.rules == ("ringfence:default-deny",)
    assert ran == []


def test_protect_with_tool_and_kind(make_guard: GuardFactory, memory_log: AuditLog) -> None:
    policy = """
version: 1
tools:
  shell.run:
    kind: code_exec
    args: {type: object, properties: {cmd: {type: string}}}
rules:
  - id: ls-only
    effect: allow
    kind: code_exec
    tool: shell.run
    when: [{arg: cmd, eq: ls}]
"""
    guard = make_guard(policy)
    ran: list[str] = []

    @guard.protect(tool="shell.run", kind="code_exec")
    def run(cmd: str) -> None:
        ran.append(cmd)

    run("ls")
    with pytest.raises(DeniedError):
        run("rm -rf /")
    assert ran == ["ls"]
    decisions = records_of(memory_log, "decision")
    assert [(r["kind"], r["tool"]) for r in decisions] == [("code_exec", "shell.run")] * 2

    wrong_kind = guard.protect(tool="shell.run")(run.__wrapped__)  # type: ignore[attr-defined]
    with pytest.raises(DeniedError):
        wrong_kind("ls")  # a tool_call named shell.run is not the code_exec tool
    assert ran == ["ls"]


def test_wrap_a_callable_object_and_a_partial(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    class Deleter:
        def __call__(self, path: str, recursive: bool = True) -> None:
            ran.append(path)

    def delete(path: str, recursive: bool = False) -> None:
        ran.append(path)

    by_object = guard.wrap(Deleter(), tool="safe_delete")
    by_partial = guard.wrap(functools.partial(delete, recursive=True), tool="safe_delete")
    with pytest.raises(DeniedError):
        by_object("/tmp/a")  # recursive defaults to True
    with pytest.raises(DeniedError):
        by_partial("/tmp/a")  # the partial's preset argument is seen by the check
    by_object("/tmp/b", False)
    by_partial("/tmp/c", recursive=False)
    assert ran == ["/tmp/b", "/tmp/c"]
    assert decision_args(memory_log) == [
        {"path": "/tmp/a", "recursive": True},
        {"path": "/tmp/a", "recursive": True},
        {"path": "/tmp/b", "recursive": False},
        {"path": "/tmp/c", "recursive": False},
    ]


# -- async ---------------------------------------------------------------------------------


def test_async_functions_are_checked_before_they_start(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    ran: list[str] = []

    @guard.protect
    async def safe_delete(path: str, recursive: bool = True) -> str:
        ran.append(path)
        await asyncio.sleep(0)
        return f"deleted {path}"

    assert asyncio.iscoroutinefunction(safe_delete)
    with pytest.raises(DeniedError) as info:
        asyncio.run(safe_delete("/tmp/a"))
    assert info.value.decision.rules == ("no-recursive",)
    with pytest.raises(DeniedError):
        asyncio.run(safe_delete(path="/etc/passwd", recursive=False))
    assert ran == []
    assert asyncio.run(safe_delete("/tmp/a", recursive=False)) == "deleted /tmp/a"
    assert ran == ["/tmp/a"]
    types = [(r["type"], r.get("effect") or r.get("status")) for r in records_of(memory_log)]
    assert types == [
        ("decision", "deny"),
        ("decision", "deny"),
        ("decision", "allow"),
        ("outcome", "ok"),
    ]


def test_async_wrong_arguments_raise_type_error(make_guard: GuardFactory) -> None:
    guard = make_guard(FILES)

    async def safe_delete(path: str, recursive: bool = False) -> None:
        raise AssertionError("must not run")

    protected = guard.protect(safe_delete)

    async def call(fn: Any) -> str:
        with pytest.raises(TypeError) as info:
            await fn("/tmp/a", nope=1)
        return str(info.value)

    assert asyncio.run(call(protected)) == asyncio.run(call(safe_delete))


def test_async_exception_is_recorded_and_reraised(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(FILES)
    boom = OSError("disk on fire")

    @guard.protect
    async def safe_delete(path: str, recursive: bool = False) -> None:
        raise boom

    with pytest.raises(OSError) as info:
        asyncio.run(safe_delete("/tmp/a"))
    assert info.value is boom
    outcome = records_of(memory_log, "outcome")[0]
    assert outcome["status"] == "error"
    assert outcome["error"] == "OSError: disk on fire"

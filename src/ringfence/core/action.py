"""The Action: one thing an agent wants to do, as a frozen value.

An action says who (agent, roles, the user it acts for, the delegation chain), what (kind,
tool, arguments), where (the resources it touches) and in which context (session, trace,
the user's request, the model's stated reason, time, and the labels the session carries).
Time is passed in, never read here.

:func:`argument_problem` is the input gate: arguments must be plain JSON (str, int, float,
bool, None, list, str-keyed dict), finite, valid UTF-8, within depth and size limits.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

import msgspec

__all__ = ["Action", "ActionKind", "Limits", "Resource", "argument_problem"]

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


class ActionKind(StrEnum):
    """The well-known action kinds; any other lower-case identifier is accepted too."""

    TOOL_CALL = "tool_call"
    MCP_REQUEST = "mcp_request"
    AGENT_MESSAGE = "agent_message"
    CODE_EXEC = "code_exec"
    HTTP_REQUEST = "http_request"


class Resource(msgspec.Struct, frozen=True, gc=False):
    """Something an action touches: ``type`` (path, url, host, table, recipient, …) and value."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


class Action(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """One action an agent asks to take. Build it, then hand it to a policy or a Guard.

    Build it with keywords; the field order is not part of the API (the Guard builds it
    positionally, which is several times cheaper, and tracks the order here).
    ``args`` must not be mutated after the action is built.  ``resources`` holds resources
    the caller names explicitly; the policy adds the ones its tool declarations derive from
    the arguments.  ``time_ns`` is nanoseconds since the Unix epoch, supplied by the caller.
    """

    kind: str
    tool: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    agent: str = "anonymous"
    roles: tuple[str, ...] = ()
    user: str | None = None
    delegation: tuple[str, ...] = ()
    resources: tuple[Resource, ...] = ()
    session: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    request: str | None = None
    reason: str | None = None
    time_ns: int = 0
    labels: frozenset[str] = frozenset()
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    # The session's state when the action is decided (a ringfence.core.flow.SessionView);
    # set by the Guard, read by ``state.…`` fields and the ``provenance`` operator.
    state: Any = None
    # The claims of the verified credential the action was presented with (a dict, see
    # ringfence.core.identity.claims.policy_view); set by a Guard that has a Verifier, read
    # by ``credential.…`` fields and the CEL ``credential`` variable.  None without one.
    credential: Any = None


class Limits(msgspec.Struct, frozen=True):
    """Bounds on an action's arguments; anything beyond them is refused before evaluation."""

    max_depth: int = 32
    max_nodes: int = 10_000
    max_string_bytes: int = 1 << 20
    max_total_bytes: int = 4 << 20

    @property
    def fast_path_ok(self) -> bool:
        """True if every flat object the fast path of :func:`argument_problem` admits fits."""
        return (
            self.max_depth >= 1
            and self.max_nodes >= 65
            and self.max_string_bytes >= 4096
            and self.max_total_bytes >= 64 * (256 + 4096)
        )


DEFAULT_LIMITS = Limits()


class _Budget:
    __slots__ = ("bytes", "nodes")

    def __init__(self) -> None:
        self.nodes = 0
        self.bytes = 0


def argument_problem(args: object, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """Why ``args`` is not acceptable as action arguments, or None if it is.

    The message names the offending place as a dotted path (``args.items[3].name``).
    """
    if type(args) is not dict:
        return f"args: expected an object, got {type(args).__name__}"
    if len(args) <= 64 and (limits is DEFAULT_LIMITS or limits.fast_path_ok):
        # Fast path for the common case: a flat object of short ASCII strings and small values.
        for key, value in args.items():
            t = type(value)
            if type(key) is not str or not key.isascii() or len(key) > 256:
                break
            if t is str:
                if len(value) > 4096 or not value.isascii():
                    break
            elif t is int:
                if not -(2**63) <= value < 2**63:
                    break
            elif t is not bool and value is not None:
                break
        else:
            return None
    return _problem(args, "args", 0, limits, _Budget())


def _str_problem(s: str, where: str, limits: Limits, budget: _Budget) -> str | None:
    n = len(s)
    if not s.isascii():
        try:
            n = len(s.encode("utf-8"))
        except UnicodeEncodeError:
            return f"{where}: string is not valid UTF-8 (lone surrogate)"
    if n > limits.max_string_bytes:
        return f"{where}: string of {n} bytes exceeds the limit of {limits.max_string_bytes}"
    budget.bytes += n
    if budget.bytes > limits.max_total_bytes:
        return f"{where}: arguments exceed the total size limit of {limits.max_total_bytes} bytes"
    return None


def _problem(value: object, where: str, depth: int, limits: Limits, budget: _Budget) -> str | None:
    budget.nodes += 1
    if budget.nodes > limits.max_nodes:
        return f"{where}: arguments have more than {limits.max_nodes} values"
    t = type(value)
    if t is str:
        return _str_problem(value, where, limits, budget)  # type: ignore[arg-type]
    if t is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            return f"{where}: integer out of the 64-bit range"
        return None
    if t is bool or value is None:
        return None
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return f"{where}: {value!r} is not allowed (numbers must be finite)"
        return None
    if depth >= limits.max_depth:
        return f"{where}: nested deeper than {limits.max_depth} levels"
    if t is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return f"{where}: key {key!r} is not a string"
            problem = _str_problem(key, f"{where}.{key}", limits, budget) or _problem(
                item, f"{where}.{key}", depth + 1, limits, budget
            )
            if problem:
                return problem
        return None
    if t is list or t is tuple:
        for i, item in enumerate(value):  # type: ignore[arg-type]
            problem = _problem(item, f"{where}[{i}]", depth + 1, limits, budget)
            if problem:
                return problem
        return None
    return (
        f"{where}: {t.__name__} is not a JSON value (use str, int, float, bool, None, list, dict)"
    )

"""CEL conditions, compiled once at load through the Rust-backed ``common-expression-language``.

An expression sees ``args`` (the action's arguments), ``action`` (a map of the action's other
fields: kind, tool, agent, roles, user, delegation, session, trace_id, span_id, request,
reason, labels, resources (declared and derived) as "type:value" strings, time_ns, context),
``state`` (the session's ``calls``, ``repeats``, ``counters`` and ``tool_calls``) and
``credential`` (the verified credential's claims; an empty map without one), and may call
the provenance functions ``untrusted_only(v)``, ``unknown(v)``, ``not_trusted(v)``,
``from_user(v)``, ``trusted(v)``, ``stated(v)`` and ``user_named(v)`` (the ``provenance``
operator's questions).
It must evaluate to a bool; anything else, and any runtime error, is an evaluation error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ringfence.core.action import Action, Resource

CEL_VARIABLES = frozenset({"action", "args", "state", "credential"})
PROVENANCE_FUNCTIONS = frozenset(
    {"untrusted_only", "unknown", "not_trusted", "from_user", "trusted", "stated", "user_named"}
)
# Functions the Rust runtime really has (each checked by evaluating it); anything else would
# fail at every evaluation, so it is a load error rather than a rule that always errs.
CEL_FUNCTIONS = frozenset(
    [
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "type",
        "dyn",
        "duration",
        "timestamp",
        "has",
        "all",
        "exists",
        "exists_one",
        "map",
        "filter",
        "getFullYear",
        "getMonth",
        "getDate",
        "getDayOfMonth",
        "getDayOfWeek",
        "getDayOfYear",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    ]
)
_STRING_LITERAL = re.compile(
    r"""(?s)[rRbB]*('''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")"""
)
_ARG_DOT = re.compile(r"\bargs\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_ARG_SUBSCRIPT = re.compile(r"""\bargs\s*\[\s*(?:'([^']*)'|"([^"]*)")\s*\]""")


_ACTION_DOT = re.compile(r"\baction\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_ACTION_ANY = re.compile(r"\baction\b")
_MACRO_VAR = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)


class CelCompileError(Exception):
    """The expression does not compile, or names a variable that does not exist."""


def argument_names(expression: str) -> set[str]:
    """Top-level argument names an expression reads (``args.x``, ``args['x']``)."""
    names = {m.group(1) or m.group(2) for m in _ARG_SUBSCRIPT.finditer(expression)}
    code_only = _STRING_LITERAL.sub("''", expression)
    names.update(m.group(1) for m in _ARG_DOT.finditer(code_only))
    return names


def compile_cel(expression: str) -> Callable[[Action, dict[str, Any], tuple[Resource, ...]], bool]:
    """Compile ``expression``; the result evaluates it for an action or raises."""
    import cel  # imported here: loading the Rust extension is only paid by policies that use CEL

    try:
        program = cel.compile(expression)
    except (ValueError, RuntimeError) as exc:
        raise CelCompileError(str(exc).strip()) from None
    functions = {
        f
        for f in program.functions()
        if not f.startswith(("_", "@", "!"))
        and f not in CEL_FUNCTIONS
        and f not in PROVENANCE_FUNCTIONS
    }
    if functions:
        raise CelCompileError(
            f"unknown function(s) {', '.join(sorted(functions))} (this CEL runtime provides: "
            f"{', '.join(sorted(CEL_FUNCTIONS))})"
        )
    bound = {m.group(1) for m in _MACRO_VAR.finditer(_STRING_LITERAL.sub("''", expression))}
    unknown = set(program.variables()) - CEL_VARIABLES - bound
    if unknown:
        raise CelCompileError(
            f"unknown variable(s) {', '.join(sorted(unknown))} "
            "(CEL conditions see 'args', 'action', 'state' and 'credential')"
        )
    execute = program.execute
    code_only = _STRING_LITERAL.sub("''", expression)
    fields = {m.group(1) for m in _ACTION_DOT.finditer(code_only)}
    whole = len(_ACTION_ANY.findall(code_only)) > len(_ACTION_DOT.findall(code_only))
    if not fields <= _FIELDS:
        raise CelCompileError(
            f"unknown action field(s) {', '.join(sorted(fields - _FIELDS))} "
            f"(action has: {', '.join(sorted(_FIELDS))})"
        )
    if whole:
        fields = set(_FIELDS)  # the whole map is used (or a field CEL will report missing)
    wanted = tuple(sorted(fields))
    uses_action = "action" in program.variables()
    uses_state = "state" in program.variables()
    uses_credential = "credential" in program.variables()
    asks = tuple(sorted(PROVENANCE_FUNCTIONS & set(program.functions())))

    def test(a: Action, args: dict[str, Any], res: tuple[Resource, ...]) -> bool:
        # Only the fields the expression reads are converted: conversion dominates CEL's cost.
        variables: dict[str, Any] = {"args": args}
        if uses_action:
            variables["action"] = action_map(a, res, wanted)
        if uses_state:
            variables["state"] = state_map(a.state)
        if uses_credential:  # an empty map without a verified credential: has() is false
            variables["credential"] = {} if a.credential is None else a.credential
        if asks:
            prov = provenance_of(a.state)
            functions = {name: _asker(prov, name) for name in asks}
            result = execute(cel.Context(variables=variables, functions=functions))
        else:
            result = execute(variables)
        if result is True or result is False:
            return result
        raise TypeError(f"CEL expression returned {type(result).__name__}, not a bool")

    return test


def state_map(state: Any) -> dict[str, Any]:
    """The ``state`` variable: the session's counts (all zero outside a session)."""
    if state is None:
        return {"calls": 0, "repeats": 0, "counters": {}, "tool_calls": {}}
    return {
        "calls": state.calls,
        "repeats": state.repeats,
        "counters": dict(state.counters),
        "tool_calls": dict(state.tool_calls),
    }


def provenance_of(state: Any) -> Any:
    """The session's provenance record; an empty one outside a session."""
    if state is not None:
        return state.provenance
    from ringfence.core.flow import Provenance

    return Provenance()


def _asker(prov: Any, name: str) -> Callable[[Any], bool]:
    method = getattr(prov, name)
    return lambda value: bool(method(value))


def action_map(
    a: Action, res: tuple[Resource, ...], fields: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The ``action`` variable CEL expressions see (only ``fields``, if given)."""
    if fields is not None:
        return {f: _GETTERS[f](a, res) for f in fields}
    return {
        "kind": a.kind,
        "tool": a.tool,
        "agent": a.agent,
        "roles": list(a.roles),
        "user": a.user,
        "delegation": list(a.delegation),
        "session": a.session,
        "trace_id": a.trace_id,
        "span_id": a.span_id,
        "request": a.request,
        "reason": a.reason,
        "labels": sorted(a.labels),
        "resources": [str(r) for r in res],
        "time_ns": a.time_ns,
        "context": a.context,
    }


_GETTERS: dict[str, Any] = {
    "kind": lambda a, r: a.kind,
    "tool": lambda a, r: a.tool,
    "agent": lambda a, r: a.agent,
    "roles": lambda a, r: list(a.roles),
    "user": lambda a, r: a.user,
    "delegation": lambda a, r: list(a.delegation),
    "session": lambda a, r: a.session,
    "trace_id": lambda a, r: a.trace_id,
    "span_id": lambda a, r: a.span_id,
    "request": lambda a, r: a.request,
    "reason": lambda a, r: a.reason,
    "labels": lambda a, r: sorted(a.labels),
    "resources": lambda a, r: [str(x) for x in r],
    "time_ns": lambda a, r: a.time_ns,
    "context": lambda a, r: a.context,
}
_FIELDS = frozenset(_GETTERS)

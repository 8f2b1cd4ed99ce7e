"""Check a parsed policy against its tool declarations, before anything is compiled.

A condition, CEL expression or redaction that names an argument no matching tool declares,
or compares an argument with an operand of the wrong type, is an error here — never a rule
that silently never matches.  Returns every problem found, in file order.
"""

from __future__ import annotations

from typing import Any

from ringfence.core.policy.celexpr import CelCompileError, argument_names, compile_cel
from ringfence.core.policy.globs import names_match
from ringfence.core.policy.model import (
    NUMBER_OPS,
    STRING_OPS,
    Condition,
    PolicySpec,
    Rule,
    ToolDecl,
    Where,
)
from ringfence.errors import PolicyError

_OPEN = object()  # a schema level that admits any property name
_JSON_TYPES_FOR = {
    **{op: {"integer", "number"} for op in NUMBER_OPS},
    **{op: {"string"} for op in ("startswith", "endswith", "glob", "regex")},
}


def matching_tools(spec: PolicySpec, rule: Rule) -> list[ToolDecl]:
    """The declared tools a rule's kind and tool patterns can reach."""
    return [
        t
        for t in spec.tools.values()
        if (rule.kinds is None or t.kind in rule.kinds)
        and (rule.tools is None or names_match(rule.tools, t.name))
    ]


def schema_at(schema: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    """The sub-schema at ``path`` inside an argument schema; ``_OPEN`` or None if unknown."""
    node: Any = schema
    for part in path:
        if not isinstance(node, dict):
            return None
        types = _types(node)
        if types is not None and "object" not in types:
            return None  # a string, number, … has no keys to read
        props = node.get("properties")
        if isinstance(props, dict) and part in props:
            node = props[part]
            continue
        extra = node.get("additionalProperties", props is None)
        if extra is False:
            return None
        return _OPEN
    return node


def _types(node: Any) -> set[str] | None:
    if not isinstance(node, dict) or "type" not in node:
        return None
    t = node["type"]
    return {t} if isinstance(t, str) else set(t) if isinstance(t, list) else None


def _err(where: Where | None, message: str, code: str = "policy.invalid") -> PolicyError:
    w = where or Where("<policy>", None, "")
    return PolicyError(message, code=code, source=w.source, line=w.line, field=w.field)


def validate_spec(spec: PolicySpec) -> list[PolicyError]:
    """Every problem in ``spec`` that compiling would otherwise hide."""
    problems: list[PolicyError] = []
    for tool in spec.tools.values():
        # A resource derived from an argument the tool does not have is never derived, so a
        # deny rule on that resource would silently never fire.
        for path, rtype in tool.resources:
            if tool.schema is not None and schema_at(tool.schema, path) is None:
                name = "args." + ".".join(path)
                where = Where(tool.where.source, tool.where.line, f"{tool.where.field}.resources")
                problems.append(
                    _err(
                        where,
                        f"tool {tool.name!r} derives a {rtype} resource from {name}, "
                        "which its argument schema does not declare",
                        "policy.unknown_argument",
                    )
                )
    for rule in spec.rules:
        tools = matching_tools(spec, rule)
        for cond in _leaves(rule.when):
            if cond.subject[0] == "args":
                problems.extend(_check_arg(rule, tools, cond.subject[1:], cond.where, cond.op))
        if rule.cel is not None:
            try:
                compile_cel(rule.cel)
            except CelCompileError as exc:
                problems.append(_err(rule.cel_where, f"CEL does not compile: {exc}", "policy.cel"))
                continue
            for name in sorted(argument_names(rule.cel)):
                problems.extend(_check_arg(rule, tools, (name,), rule.cel_where, None))
        for i, field in enumerate(rule.redact):
            if field.startswith("args."):
                where = Where(rule.where.source, rule.where.line, f"{rule.where.field}.redact[{i}]")
                problems.extend(_check_arg(rule, tools, tuple(field.split(".")[1:]), where, None))
    return problems


def _leaves(conds: tuple[Condition, ...]) -> list[Condition]:
    out: list[Condition] = []
    for c in conds:
        out.extend(_leaves(c.children) if c.children else [c])
    return out


def _check_arg(
    rule: Rule, tools: list[ToolDecl], path: tuple[str, ...], where: Where | None, op: str | None
) -> list[PolicyError]:
    name = "args." + ".".join(path)
    scope = ", ".join(rule.tools) if rule.tools else "any tool"
    if not tools:
        return [
            _err(
                where,
                f"rule {rule.id!r} reads {name} but no declared tool matches {scope}; "
                "declare the tool and its arguments under 'tools' so the condition can be checked",
                "policy.unknown_argument",
            )
        ]
    found = [(t, schema_at(t.schema, path)) for t in tools if t.schema is not None]
    found = [(t, s) for t, s in found if s is not None]
    if not found:
        names = ", ".join(sorted(t.name for t in tools)[:5])
        return [
            _err(
                where,
                f"rule {rule.id!r} reads {name}, which no matching tool declares ({names})",
                "policy.unknown_argument",
            )
        ]
    wanted = _JSON_TYPES_FOR.get(op or "")
    if wanted:
        typed = [(t, _types(s)) for t, s in found if s is not _OPEN]
        declared = [(t, ts) for t, ts in typed if ts is not None]
        if declared and all(not (ts & wanted) for _, ts in declared):
            t, ts = declared[0]
            return [
                _err(
                    where,
                    f"rule {rule.id!r}: {op!r} needs a {' or '.join(sorted(wanted))} but {name} "
                    f"is declared as {'/'.join(sorted(ts))} by tool {t.name!r}",
                    "policy.type",
                )
            ]
    return []


__all__ = ["matching_tools", "schema_at", "validate_spec"]
_ = STRING_OPS

"""Turn parsed YAML into a :class:`PolicySpec`, rejecting unknown keys and wrong types.

Every error names the file, the line and the dotted field.  Checks that need the tool
declarations (argument names, operand types against schemas) live in :mod:`.validate`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ringfence.core.decision import Effect
from ringfence.core.identity.claims import CREDENTIAL_FIELDS
from ringfence.core.policy.limits import parse_limits
from ringfence.core.policy.model import (
    ACTION_FIELDS,
    COMBINATORS,
    MEMBER_OPS,
    NUMBER_OPS,
    OPERATORS,
    PROVENANCE,
    STATE_FIELDS,
    STRING_OPS,
    Condition,
    PolicySpec,
    ResourcePattern,
    Rule,
    ToolDecl,
    Where,
)
from ringfence.core.policy.regex import RegexError, compile_regex
from ringfence.core.policy.secrets import parse_secrets
from ringfence.core.policy.yamlsrc import Located, Path, dotted
from ringfence.errors import PolicyError

POLICY_LANGUAGE_VERSION = 1
_DOC_KEYS = {"version", "name", "description", "tools", "rules", "secrets", "limits"}
_TOOL_KEYS = {"kind", "description", "args", "resources", "labels", "user_named"}
_RULE_KEYS = {
    "id",
    "description",
    "effect",
    "kind",
    "tool",
    "agent",
    "role",
    "user",
    "resource",
    "when",
    "cel",
    "reason",
    "redact",
    "labels",
    "count",
    "sandbox",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,255}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_FIELD = re.compile(r"^[A-Za-z_$@][A-Za-z0-9_$@.-]{0,127}$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # a sandbox profile's name
MAX_CEL_LENGTH = 4096
MAX_CONDITION_DEPTH = 16


class _Doc:
    """Typed accessors over one located document that raise PolicyErrors with positions."""

    def __init__(self, located: Located) -> None:
        self.loc = located

    def where(self, path: Path) -> Where:
        return Where(self.loc.source, self.loc.line(path), dotted(path))

    def fail(self, path: Path, message: str, code: str = "policy.invalid") -> PolicyError:
        return self.loc.error(path, message, code)

    def mapping(self, value: Any, path: Path, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}", "policy.type")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise self.fail(
                        (*path, key),
                        f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
                        "policy.unknown_key",
                    )
        return value

    def string(self, value: Any, path: Path, *, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}", "policy.type")
        if pattern is not None and not pattern.match(value):
            raise self.fail(path, f"{value!r} is not a valid name", "policy.type")
        return value

    def strings(self, value: Any, path: Path) -> tuple[str, ...]:
        """A string or a non-empty list of strings."""
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            raise self.fail(
                path, f"expected a string or a list of strings, got {_kind(value)}", "policy.type"
            )
        if not value:
            raise self.fail(path, "expected a string or a non-empty list of strings, got []")
        return tuple(self.string(v, (*path, i)) for i, v in enumerate(value))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def build_spec(documents: list[Located]) -> PolicySpec:
    """Build one PolicySpec from one or more parsed files (rules keep file order)."""
    tools: dict[str, ToolDecl] = {}
    rules: list[Rule] = []
    names: list[str] = []
    seen_ids: dict[str, Where] = {}
    for located in documents:
        doc = _Doc(located)
        top = doc.mapping(located.value, (), _DOC_KEYS)
        if "version" not in top:
            raise doc.fail((), f"missing 'version' (use version: {POLICY_LANGUAGE_VERSION})")
        if type(top["version"]) is not int or top["version"] != POLICY_LANGUAGE_VERSION:
            raise doc.fail(
                ("version",),
                f"unsupported policy language version {top['version']!r} "
                f"(this Ringfence reads version {POLICY_LANGUAGE_VERSION})",
                "policy.version",
            )
        if "name" in top:
            names.append(doc.string(top["name"], ("name",)))
        if "description" in top:
            doc.string(top["description"], ("description",))
        for name, raw in doc.mapping(top.get("tools", {}), ("tools",)).items():
            if name in tools:
                raise doc.fail(("tools", name), f"tool {name!r} is declared twice")
            tools[name] = _tool(doc, name, raw)
        raw_rules = top.get("rules", [])
        if not isinstance(raw_rules, list):
            raise doc.fail(("rules",), f"expected a list of rules, got {_kind(raw_rules)}")
        for i, raw in enumerate(raw_rules):
            rule = _rule(doc, raw, ("rules", i))
            if rule.id in seen_ids:
                first = seen_ids[rule.id]
                raise doc.fail(
                    ("rules", i, "id"),
                    f"rule id {rule.id!r} is already used at {first.source}:{first.line}",
                    "policy.duplicate_rule",
                )
            seen_ids[rule.id] = rule.where
            rules.append(rule)
    if not rules:
        raise PolicyError(
            "the policy has no rules (an empty policy would deny everything by accident; "
            "write at least one rule)",
            code="policy.empty",
            source=", ".join(d.source for d in documents),
        )
    return PolicySpec(
        name=" + ".join(names) or "policy",
        tools=tools,
        rules=tuple(rules),
        sources=tuple(d.source for d in documents),
        canonical=tuple(d.value for d in documents),
        secrets=parse_secrets(documents),
        limit_set=parse_limits(documents),
    )


def _tool(doc: _Doc, name: str, raw: Any) -> ToolDecl:
    path: Path = ("tools", name)
    if not _NAME.match(name):
        raise doc.fail(path, f"{name!r} is not a valid tool name")
    body = doc.mapping({} if raw is None else raw, path, _TOOL_KEYS)
    kind = doc.string(body.get("kind", "tool_call"), (*path, "kind"), pattern=_IDENT)
    schema = body.get("args")
    if schema is not None:
        schema = doc.mapping(schema, (*path, "args"))
        if schema.get("type", "object") != "object":
            raise doc.fail((*path, "args", "type"), "a tool's argument schema must be an object")
    resources = []
    for arg, rtype in doc.mapping(body.get("resources", {}), (*path, "resources")).items():
        rtype = doc.string(rtype, (*path, "resources", arg), pattern=_IDENT)
        resources.append((tuple(arg.split(".")), rtype))
    labels = doc.strings(body["labels"], (*path, "labels")) if "labels" in body else ()
    for i, label in enumerate(labels):
        doc.string(label, (*path, "labels", i), pattern=_IDENT)
    return ToolDecl(
        name=name,
        kind=kind,
        description=doc.string(body.get("description", ""), (*path, "description")),
        schema=schema,
        resources=tuple(resources),
        where=doc.where(path),
        labels=labels,
        user_named=_user_named(doc, body["user_named"], (*path, "user_named"))
        if "user_named" in body
        else None,
    )


def _user_named(doc: _Doc, raw: Any, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``user_named: {by: [id], vouch: [from]}``: result fields (names, not paths: any record
    at any depth) by which the user names a record, and the fields that record vouches for."""
    body = doc.mapping(raw, path, {"by", "vouch"})
    out: list[tuple[str, ...]] = []
    for key in ("by", "vouch"):
        if key not in body:
            raise doc.fail(path, f"'user_named' needs {key!r}", "policy.missing_key")
        names = doc.strings(body[key], (*path, key))
        for i, name in enumerate(names):
            doc.string(name, (*path, key, i), pattern=_FIELD)
        out.append(names)
    return out[0], out[1]


def _rule(doc: _Doc, raw: Any, path: Path) -> Rule:
    body = doc.mapping(raw, path, _RULE_KEYS)
    for required in ("id", "effect"):
        if required not in body:
            raise doc.fail(path, f"a rule needs {required!r}", "policy.missing_key")
    rule_id = doc.string(body["id"], (*path, "id"), pattern=_ID)
    effect_raw = doc.string(body["effect"], (*path, "effect"))
    try:
        effect = Effect(effect_raw)
    except ValueError:
        raise doc.fail(
            (*path, "effect"),
            f"unknown effect {effect_raw!r} (use allow, deny or require_approval)",
        ) from None

    def opt(key: str) -> tuple[str, ...] | None:
        return doc.strings(body[key], (*path, key)) if key in body else None

    resources = tuple(
        _resource_pattern(doc, text, (*path, "resource", i) if "resource" in body else path)
        for i, text in enumerate(opt("resource") or ())
    )
    when_raw = body.get("when", [])
    if isinstance(when_raw, dict):
        when_raw = [when_raw]
    if not isinstance(when_raw, list):
        raise doc.fail((*path, "when"), f"expected a list of conditions, got {_kind(when_raw)}")
    when = tuple(_condition(doc, c, (*path, "when", i), 0) for i, c in enumerate(when_raw))
    cel = None
    if "cel" in body:
        cel = doc.string(body["cel"], (*path, "cel"))
        if not cel.strip():
            raise doc.fail((*path, "cel"), "empty CEL expression")
        if len(cel) > MAX_CEL_LENGTH:
            raise doc.fail((*path, "cel"), f"CEL expression longer than {MAX_CEL_LENGTH} chars")
    redact = opt("redact") or ()
    for i, field_path in enumerate(redact):
        if not field_path.startswith("args.") and field_path not in ("request", "reason"):
            raise doc.fail(
                (*path, "redact", i),
                f"cannot redact {field_path!r}: name an argument (args.<name>), request or reason",
            )
    labels = opt("labels") or ()
    for i, label in enumerate(labels):
        doc.string(label, (*path, "labels", i), pattern=_IDENT)
    sandbox = None
    if "sandbox" in body:
        sandbox = doc.string(body["sandbox"], (*path, "sandbox"), pattern=_PROFILE)
        if sandbox.lower() in ("none", "off", "no", "false", "disabled", "host"):
            raise doc.fail((*path, "sandbox"), f"{sandbox!r} is not a sandbox profile")
    return Rule(
        counts=_counts(doc, body.get("count"), (*path, "count")),
        sandbox=sandbox,
        id=rule_id,
        effect=effect,
        where=doc.where(path),
        description=doc.string(body.get("description", ""), (*path, "description")),
        reason=doc.string(body.get("reason", ""), (*path, "reason")),
        kinds=opt("kind"),
        tools=opt("tool"),
        agents=opt("agent"),
        roles=opt("role"),
        users=opt("user"),
        resources=resources,
        when=when,
        cel=cel,
        cel_where=doc.where((*path, "cel")) if cel is not None else None,
        redact=redact,
        labels=labels,
    )


def _counts(doc: _Doc, raw: Any, path: Path) -> tuple[tuple[str, int], ...]:
    """``count: emails_sent`` or ``count: {emails_sent: 1, cost_cents: 50}``: what an allowed
    action adds to the session's counters (read back as ``state.counters.<name>``)."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = {raw: 1}
    body = doc.mapping(raw, path)
    out = []
    for name, delta in body.items():
        doc.string(name, (*path, name), pattern=_IDENT)
        if isinstance(delta, bool) or not isinstance(delta, int) or not 0 < delta <= 1 << 32:
            raise doc.fail((*path, name), "a count adds a positive whole number", "policy.type")
        out.append((name, delta))
    return tuple(sorted(out))


def _resource_pattern(doc: _Doc, text: str, path: Path) -> ResourcePattern:
    rtype, sep, glob = text.partition(":")
    if not sep or not _IDENT.match(rtype) or not glob:
        raise doc.fail(
            path, f"{text!r} is not a resource pattern (write type:glob, e.g. path:/data/**)"
        )
    return ResourcePattern(rtype, glob)


def _condition(doc: _Doc, raw: Any, path: Path, depth: int) -> Condition:
    if depth > MAX_CONDITION_DEPTH:
        raise doc.fail(path, "conditions nested too deeply")
    body = doc.mapping(raw, path)
    combinators = [k for k in body if k in COMBINATORS]
    if combinators:
        if len(body) != 1:
            raise doc.fail(path, f"{combinators[0]!r} must be the only key of its condition")
        op = combinators[0]
        inner = body[op]
        if op == "not":
            inner = [inner] if isinstance(inner, dict) else inner
        if not isinstance(inner, list) or not inner:
            raise doc.fail((*path, op), f"{op!r} takes a non-empty list of conditions")
        children = tuple(_condition(doc, c, (*path, op, i), depth + 1) for i, c in enumerate(inner))
        return Condition(op=op, children=children, where=doc.where(path))
    subjects = [k for k in body if k in ("arg", "field")]
    ops = [k for k in body if k in OPERATORS]
    unknown = [k for k in body if k not in ("arg", "field", *OPERATORS)]
    if unknown:
        raise doc.fail(
            (*path, unknown[0]),
            f"unknown key {unknown[0]!r} (a condition has 'arg' or 'field' and one of: "
            f"{', '.join(OPERATORS)}; or one of {', '.join(COMBINATORS)})",
            "policy.unknown_key",
        )
    if len(subjects) != 1:
        raise doc.fail(path, "a condition names exactly one of 'arg' or 'field'")
    if len(ops) != 1:
        raise doc.fail(path, f"a condition has exactly one operator ({', '.join(OPERATORS)})")
    subject_key, op = subjects[0], ops[0]
    text = doc.string(body[subject_key], (*path, subject_key))
    parts = tuple(text.split("."))
    if any(not p for p in parts):
        raise doc.fail((*path, subject_key), f"{text!r} is not a valid field path")
    if subject_key == "arg":
        subject = ("args", *parts)
    else:
        subject = parts
        if parts[0] == "state":
            _state_field(doc, parts, text, (*path, "field"))
        elif parts[0] == "credential":
            _credential_field(doc, parts, text, (*path, "field"), op)
        elif parts[0] not in ("args", "context") and (
            parts[0] not in ACTION_FIELDS or len(parts) > 1
        ):
            raise doc.fail(
                (*path, "field"),
                f"unknown field {text!r} (use args.<name>, context.<name> or one of: "
                f"{', '.join(ACTION_FIELDS)})",
                "policy.unknown_field",
            )
        if parts[0] in ("args", "context") and len(parts) == 1:
            raise doc.fail((*path, "field"), f"name a key inside {parts[0]!r}, e.g. {parts[0]}.x")
    operand = _operand(doc, op, body[op], (*path, op))
    return Condition(op=op, subject=subject, operand=operand, where=doc.where((*path, op)))


def _state_field(doc: _Doc, parts: tuple[str, ...], text: str, path: Path) -> None:
    """Check a ``state.…`` field: calls, repeats, counters.<name>, tool_calls.<tool>."""
    named = ("counters", "tool_calls")
    if len(parts) < 2 or parts[1] not in STATE_FIELDS:
        raise doc.fail(
            path,
            f"unknown field {text!r} (state fields: state.calls, state.repeats, "
            "state.counters.<name>, state.tool_calls.<tool>)",
            "policy.unknown_field",
        )
    want = 3 if parts[1] in named else 2
    if len(parts) < want or (parts[1] not in named and len(parts) > 2):
        example = f"state.{parts[1]}.<name>" if parts[1] in named else f"state.{parts[1]}"
        raise doc.fail(path, f"{text!r}: write {example}", "policy.unknown_field")


def _credential_field(doc: _Doc, parts: tuple[str, ...], text: str, path: Path, op: str) -> None:
    """Check a ``credential.…`` field: a claim of the verified credential (budgets.<name>)."""
    if len(parts) == 1 and op == "exists":
        return
    want = 3 if len(parts) > 1 and parts[1] == "budgets" else 2
    if len(parts) != want or parts[1] not in CREDENTIAL_FIELDS:
        raise doc.fail(
            path,
            f"unknown field {text!r} (credential fields: credential.budgets.<name>, "
            f"credential.<claim> for claims {', '.join(CREDENTIAL_FIELDS)})",
            "policy.unknown_field",
        )


def _operand(doc: _Doc, op: str, value: Any, path: Path) -> Any:
    if op in STRING_OPS:
        values = doc.strings(value, path)
        if op == "regex":
            for i, pattern in enumerate(values):
                try:
                    compile_regex(pattern)
                except RegexError as exc:
                    raise doc.fail(
                        path if len(values) == 1 else (*path, i), f"bad regex: {exc}"
                    ) from None
        return values
    if op in NUMBER_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise doc.fail(path, f"{op!r} needs a number, got {_kind(value)}", "policy.type")
        if not math.isfinite(value):
            raise doc.fail(path, f"{op!r} needs a finite number", "policy.type")
        return value
    if op in MEMBER_OPS:
        if not isinstance(value, list) or not value:
            raise doc.fail(
                path, f"{op!r} needs a non-empty list, got {_kind(value)}", "policy.type"
            )
        for i, item in enumerate(value):
            _scalar(doc, item, (*path, i), op)
        return tuple(value)
    if op == "provenance":
        if value not in PROVENANCE:
            raise doc.fail(
                path,
                f"'provenance' is one of {', '.join(PROVENANCE)}, got {value!r}",
                "policy.type",
            )
        return value
    if op == "exists":
        if not isinstance(value, bool):
            raise doc.fail(path, f"'exists' needs true or false, got {_kind(value)}", "policy.type")
        return value
    # eq, ne, contains: one scalar
    _scalar(doc, value, path, op)
    return value


def _scalar(doc: _Doc, value: Any, path: Path, op: str) -> None:
    if isinstance(value, dict | list):
        raise doc.fail(
            path, f"{op!r} compares with a single value, got {_kind(value)}", "policy.type"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise doc.fail(path, f"{op!r} needs a finite number", "policy.type")

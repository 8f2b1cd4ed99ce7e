"""Compile a rule's scope and declarative conditions into one Python function.

The function has the signature ``test(a, args, res) -> bool`` where ``a`` is the Action,
``args`` its arguments and ``res`` the tuple of resources the action touches.  It raises
(KeyError, TypeError, …) when a field is missing or has the wrong type; the engine turns
that into "matches" for deny/approval rules and "does not match" for allow rules.

Only names bound in the function's own namespace are reachable from generated code, and
every constant from the policy is bound by name, never pasted into the source text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ringfence.core.action import Action, Resource
from ringfence.core.decision import Effect
from ringfence.core.policy.globs import name_regex, path_regex
from ringfence.core.policy.model import Condition, Rule
from ringfence.core.policy.regex import compile_regex

Test = Callable[[Action, dict[str, Any], tuple[Resource, ...]], bool]

_NUM = (int, float)


def _type_error(expected: str, value: object) -> bool:
    raise TypeError(f"expected {expected}, got {type(value).__name__}")


def _key(value: object) -> object:
    # Keeps True from equalling 1 in membership tests.
    return ("bool", value) if value.__class__ is bool else value


def _contains(container: object, item: object) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise TypeError("a string can only contain a string")
        return item in container
    if isinstance(container, list | tuple | frozenset):
        return any(_key(x) == _key(item) for x in container)
    return _type_error("a string or a list", container)


def _search_any(patterns: tuple[Any, ...], value: str) -> bool:
    return any(p.search(value) is not None for p in patterns)


def _resource_strings(res: tuple[Resource, ...]) -> tuple[str, ...]:
    return tuple(str(r) for r in res)


def _has(root: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(root, dict) or part not in root:
            return False
        root = root[part]
    return True


def _resources_all(res: tuple[Resource, ...], by_type: dict[str, re.Pattern[str]]) -> bool:
    """Allow semantics: at least one resource of the named types, and every one of them fits."""
    seen = False
    for r in res:
        pattern = by_type.get(r.type)
        if pattern is not None:
            if pattern.match(r.value) is None:
                return False
            seen = True
    return seen


def _resources_any(res: tuple[Resource, ...], by_type: dict[str, re.Pattern[str]]) -> bool:
    """Deny semantics: any resource of the named types that fits."""
    for r in res:
        pattern = by_type.get(r.type)
        if pattern is not None and pattern.match(r.value) is not None:
            return True
    return False


def _state_number(s: Any, field: str) -> int:
    """``state.calls`` / ``state.repeats``: 0 outside a session."""
    return 0 if s is None else int(getattr(s, field))


def _state_count(s: Any, field: str, name: str) -> int:
    """``state.counters.<name>`` / ``state.tool_calls.<tool>``: 0 until first counted."""
    return 0 if s is None else int(s.count(field, name))


def _credential(a: Action) -> Any:
    """``credential.…``: the verified credential's claims; a missing field without one."""
    if a.credential is None:
        raise KeyError("credential")
    return a.credential


def _claim_set(a: Action, path: tuple[str, ...]) -> bool:
    """``{field: credential.x, exists: true}``: there is a credential and its x is not null."""
    return _has(a.credential, path) and _credential(a)[path[0]] is not None


_NO_PROVENANCE: list[Any] = []


def _provenance(s: Any, value: object, how: str) -> bool:
    """The ``provenance`` operator; outside a session nothing was seen, so nothing is trusted."""
    if s is not None:
        prov = s.provenance
    else:
        if not _NO_PROVENANCE:
            from ringfence.core.flow import Provenance

            _NO_PROVENANCE.append(Provenance())
        prov = _NO_PROVENANCE[0]
    return bool(getattr(prov, how)(value))


class _Gen:
    """Accumulates constants; turns conditions into Python expressions."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_NUM": _NUM,
            "_type_error": _type_error,
            "_key": _key,
            "_contains": _contains,
            "_has": _has,
            "_resource_strings": _resource_strings,
            "_search_any": _search_any,
            "_resources_all": _resources_all,
            "_resources_any": _resources_any,
            "_state_number": _state_number,
            "_state_count": _state_count,
            "_provenance": _provenance,
            "_credential": _credential,
            "_claim_set": _claim_set,
            "__builtins__": {},
        }

    def const(self, value: Any) -> str:
        name = f"_c{len(self.ns)}"
        self.ns[name] = value
        return name

    def access(self, subject: tuple[str, ...]) -> str:
        head, rest = subject[0], subject[1:]
        if head == "args":
            expr = "args"
        elif head == "context":
            expr = "a.context"
        elif head == "credential":
            expr = "_credential(a)"
        elif head == "resources":
            return "_resource_strings(res)"
        elif head == "state":
            field = self.const(rest[0])
            if len(rest) == 1:
                return f"_state_number(a.state, {field})"
            return f"_state_count(a.state, {field}, {self.const(rest[1])})"
        else:
            expr = f"a.{head}"
        for part in rest:
            expr += f"[{self.const(part)}]"
        return expr

    def cond(self, c: Condition) -> str:
        if c.op == "all":
            return "(" + " and ".join(self.cond(k) for k in c.children) + ")"
        if c.op == "any":
            return "(" + " or ".join(self.cond(k) for k in c.children) + ")"
        if c.op == "not":
            return "(not (" + " and ".join(self.cond(k) for k in c.children) + "))"
        v = self.access(c.subject)
        op, x = c.op, c.operand
        if op == "exists":
            root = {"args": "args", "context": "a.context"}.get(c.subject[0])
            if c.subject == ("credential",):
                test = "(a.credential is not None)"
            elif c.subject[0] == "credential":
                test = f"_claim_set(a, {self.const(tuple(c.subject[1:]))})"
            elif root is None:  # a top-level action field: exists when not None / not empty
                # bound by name: generated code has no builtins, not even frozenset
                test = f"({v} not in {self.const((None, (), frozenset()))})"
            else:
                test = f"_has({root}, {self.const(tuple(c.subject[1:]))})"
            return test if x else f"(not {test})"
        if op in ("startswith", "endswith"):
            return f"{v}.{op}({self.const(tuple(x))})"
        if op == "glob":
            rx = re.compile("|".join(f"(?:{path_regex(g).pattern})" for g in x))
            return f"({self.const(rx)}.match({v}) is not None)"
        if op == "regex":
            # Compiled one by one: a pattern's inline flags ("(?i)") must stay at its start.
            if len(x) == 1:
                return f"({self.const(compile_regex(x[0]))}.search({v}) is not None)"
            return f"_search_any({self.const(tuple(compile_regex(p) for p in x))}, {v})"
        if op in ("lt", "le", "gt", "ge"):
            sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            return (
                f"(_v {sym} {self.const(x)} if (_v := {v}).__class__ in _NUM "
                f"else _type_error('a number', _v))"
            )
        if op in ("eq", "ne"):
            cls = _NUM if isinstance(x, int | float) and not isinstance(x, bool) else (type(x),)
            same = f"((_v := {v}).__class__ in {self.const(cls)} and _v == {self.const(x)})"
            return same if op == "eq" else f"(not {same})"
        if op in ("in", "not_in"):
            keys = frozenset(_key(item) for item in x)
            test = f"(_key({v}) in {self.const(keys)})"
            return test if op == "in" else f"(not {test})"
        if op == "contains":
            return f"_contains({v}, {self.const(x)})"
        if op == "provenance":
            return f"_provenance(a.state, {v}, {self.const(x)})"
        raise AssertionError(f"unhandled operator {op}")  # parse.py admits no other


def compile_rule(rule: Rule, cel_test: Test | None) -> Test:
    """One function testing everything about ``rule`` except its kind and tool (the index)."""
    gen = _Gen()
    parts: list[str] = []
    if rule.agents is not None:
        rx = re.compile("|".join(f"(?:{name_regex(p).pattern})" for p in rule.agents))
        parts.append(f"({gen.const(rx)}.match(a.agent) is not None)")
    if rule.users is not None:
        rx = re.compile("|".join(f"(?:{name_regex(p).pattern})" for p in rule.users))
        parts.append(f"(a.user is not None and {gen.const(rx)}.match(a.user) is not None)")
    if rule.roles is not None:
        parts.append(f"(not {gen.const(frozenset(rule.roles))}.isdisjoint(a.roles))")
    if rule.resources:
        by_type: dict[str, list[str]] = {}
        for p in rule.resources:
            by_type.setdefault(p.type, []).append(f"(?:{path_regex(p.glob).pattern})")
        compiled = {t: re.compile("|".join(ps)) for t, ps in by_type.items()}
        fn = "_resources_all" if rule.effect is Effect.ALLOW else "_resources_any"
        parts.append(f"{fn}(res, {gen.const(compiled)})")
    parts.extend(gen.cond(c) for c in rule.when)
    if cel_test is not None:
        parts.append(f"{gen.const(cel_test)}(a, args, res)")
    body = " and ".join(parts) or "True"
    source = f"def _test(a, args, res):\n    return {body}\n"
    code = compile(source, f"<rule {rule.id}>", "exec")
    exec(code, gen.ns)  # noqa: S102 - generated from validated policy, constants bound by name
    test: Test = gen.ns["_test"]
    test.__doc__ = source
    return test

"""The compiled policy: an index from (kind, tool) to the rules that can apply, and evaluation.

Combining: any matching deny wins, then require_approval, then allow; nothing matching is a
deny.  A rule whose evaluation raises counts as matching if it is a deny or approval rule and
as not matching if it is an allow rule, and the error is reported in the decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from ringfence.core.action import DEFAULT_LIMITS, Action, Limits, Resource, argument_problem
from ringfence.core.decision import Decision, Effect, Obligations
from ringfence.core.policy.celexpr import compile_cel
from ringfence.core.policy.codegen import Test, compile_rule
from ringfence.core.policy.globs import names_match
from ringfence.core.policy.model import PolicySpec, Rule, ToolDecl
from ringfence.core.resources import derive
from ringfence.errors import DeniedError, PolicyError

__all__ = ["Policy"]

INPUT_RULE = "ringfence:input"
SCHEMA_RULE = "ringfence:schema"
DEFAULT_RULE = "ringfence:default-deny"
MAX_CACHED_BUCKETS = 10_000


class _Compiled:
    __slots__ = (
        "effect",
        "error_matches",
        "id",
        "ids",
        "labels",
        "reason",
        "reasons",
        "redact",
        "rule",
        "test",
    )

    def __init__(self, rule: Rule, test: Test) -> None:
        self.rule = rule
        self.id = rule.id
        self.effect = rule.effect
        self.test = test
        self.error_matches = rule.effect is not Effect.ALLOW
        self.reason = rule.reason or rule.description or f"rule {rule.id} ({rule.effect.value})"
        self.ids = (rule.id,)
        self.reasons = (self.reason,)
        self.labels = rule.labels
        self.redact = rule.redact


class _Bucket:
    """Everything needed to decide actions of one (kind, tool)."""

    __slots__ = (
        "allow",
        "approval",
        "deny",
        "extract",
        "groups",
        "obligations",
        "refusal",
        "validate",
    )

    def __init__(
        self,
        rules: list[_Compiled],
        validate: Callable[[Any], Any] | None,
        extract: tuple[tuple[tuple[str, ...], str], ...],
    ) -> None:
        self.deny = tuple(r for r in rules if r.effect is Effect.DENY)
        self.approval = tuple(r for r in rules if r.effect is Effect.REQUIRE_APPROVAL)
        self.allow = tuple(r for r in rules if r.effect is Effect.ALLOW)
        self.groups = tuple(g for g in (self.deny, self.approval, self.allow) if g)
        self.validate = validate
        self.extract = extract
        self.refusal: str | None = None
        # Redactions any applicable rule names apply to every record of this tool.
        redact = tuple(sorted({f for r in rules for f in r.redact}))
        self.obligations = {
            r.id: Obligations(
                redact=redact, labels=r.labels, counts=r.rule.counts, sandbox=r.rule.sandbox
            )
            for r in rules
        }
        self.obligations[""] = Obligations(redact=redact)


class Policy:
    """A validated, compiled, immutable policy.  Build it with :func:`ringfence.load_policy`."""

    def __init__(self, spec: PolicySpec, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.spec = spec
        self.name = spec.name
        self.limits = limits
        canonical = msgspec.json.encode(list(spec.canonical), order="sorted")
        self.version = "sha256:" + hashlib.sha256(canonical).hexdigest()
        self._rules = [
            _Compiled(r, compile_rule(r, compile_cel(r.cel) if r.cel is not None else None))
            for r in spec.rules
        ]
        self._validators = {name: _validator(t) for name, t in spec.tools.items()}
        self._index: dict[tuple[str, str], _Bucket] = {}
        for tool in spec.tools.values():
            self._bucket(tool.kind, tool.name)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules in file order."""
        return self.spec.rules

    @property
    def tools(self) -> dict[str, ToolDecl]:
        """The declared tools by name."""
        return self.spec.tools

    def _bucket(self, kind: str, tool: str) -> _Bucket:
        rules = [
            r
            for r in self._rules
            if (r.rule.kinds is None or kind in r.rule.kinds)
            and (r.rule.tools is None or names_match(r.rule.tools, tool))
        ]
        decl = self.spec.tools.get(tool)
        refusal = None
        if decl is not None and decl.kind != kind:
            # Sending a declared tool under another kind would skip its schema and resource
            # declarations while rules scoped by tool name alone still match: refuse it.
            refusal = f"tool {tool!r} is declared as {decl.kind}, not {kind}"
            decl = None
        bucket = _Bucket(
            rules,
            self._validators.get(tool) if decl is not None else None,
            decl.resources if decl is not None else (),
        )
        bucket.refusal = refusal
        if len(self._index) < MAX_CACHED_BUCKETS:
            self._index[(kind, tool)] = bucket
        return bucket

    def resources_of(self, action: Action) -> tuple[Resource, ...]:
        """The resources ``action`` touches: those it names plus those its arguments declare."""
        bucket = self._index.get((action.kind, action.tool)) or self._bucket(
            action.kind, action.tool
        )
        if not bucket.extract:
            return action.resources
        return action.resources + tuple(derive(action.args, bucket.extract))

    def evaluate(self, action: Action, decision_id: str = "") -> Decision:
        """Decide ``action``.  Never raises for a bad action: that is a deny with a reason."""
        return self.decide(action, decision_id)[0]

    def decide(
        self, action: Action, decision_id: str = ""
    ) -> tuple[Decision, tuple[Resource, ...]]:
        """The decision and the resources it considered (declared and derived)."""
        bucket = self._index.get((action.kind, action.tool)) or self._bucket(
            action.kind, action.tool
        )
        args = action.args
        if bucket.refusal is not None:
            return self._special(SCHEMA_RULE, bucket.refusal, decision_id, bucket), action.resources
        problem = argument_problem(args, self.limits)
        if problem is not None:
            return self._special(INPUT_RULE, problem, decision_id, bucket), action.resources
        if bucket.validate is not None:
            try:
                bucket.validate(args)
            except Exception as exc:  # fastjsonschema raises its own exception types
                message = _schema_message(exc, action.tool)
                return self._special(SCHEMA_RULE, message, decision_id, bucket), action.resources
        res = action.resources
        if bucket.extract:
            try:
                res = res + tuple(derive(args, bucket.extract))
            except TypeError as exc:
                return self._special(INPUT_RULE, str(exc), decision_id, bucket), action.resources
        errors: list[str] = []
        for group in bucket.groups:  # deny, then approval, then allow; empty ones left out
            hits: list[_Compiled] = []
            for rule in group:
                try:
                    if rule.test(action, args, res):
                        hits.append(rule)
                except Exception as exc:
                    errors.append(f"rule {rule.id}: {_describe(exc)}")
                    if rule.error_matches:
                        hits.append(rule)
            if hits:
                return self._decide(hits, errors, decision_id, bucket), res
        return Decision(
            Effect.DENY,
            (DEFAULT_RULE,),
            (f"no rule allows {action.kind} {action.tool!r} (default deny)",),
            self.version,
            decision_id,
            bucket.obligations[""],
            tuple(errors),
        ), res

    def _decide(
        self, hits: list[_Compiled], errors: list[str], decision_id: str, bucket: _Bucket
    ) -> Decision:
        first = hits[0]
        if len(hits) == 1:  # the common case: ids and reasons were made at load time
            return Decision(
                first.effect,
                first.ids,
                first.reasons,
                self.version,
                decision_id,
                bucket.obligations[first.id],
                tuple(errors) if errors else (),
            )
        labels = tuple(sorted({lab for h in hits for lab in h.labels}))
        counts: dict[str, int] = {}
        for h in hits:
            for name, n in h.rule.counts:
                counts[name] = counts.get(name, 0) + n
        return Decision(
            first.effect,
            tuple(h.id for h in hits),
            tuple(h.reason for h in hits),
            self.version,
            decision_id,
            Obligations(
                redact=bucket.obligations[""].redact,
                labels=labels,
                counts=tuple(sorted(counts.items())),
                # Several deciding rules naming profiles: the first in file order decides.
                sandbox=next((h.rule.sandbox for h in hits if h.rule.sandbox), None),
            ),
            tuple(errors),
        )

    def _special(self, rule_id: str, reason: str, decision_id: str, bucket: _Bucket) -> Decision:
        return Decision(
            effect=Effect.DENY,
            rules=(rule_id,),
            reasons=(reason,),
            policy_version=self.version,
            decision_id=decision_id,
            obligations=bucket.obligations[""],
        )

    def could_allow(
        self,
        kind: str,
        tool: str,
        *,
        agent: str,
        roles: tuple[str, ...] = (),
        user: str | None = None,
    ) -> bool:
        """Whether some action of ``kind``/``tool`` by this agent could ever be allowed.

        True when an allow or require_approval rule's scope (kind, tool, agent, role, user)
        covers it and no unconditional deny rule does; conditions and resource patterns are
        assumed satisfiable.  For listings (what to show an agent), never for authorization.
        """
        bucket = self._index.get((kind, tool)) or self._bucket(kind, tool)
        if bucket.refusal is not None:
            return False

        def in_scope(rule: Rule) -> bool:
            return (
                (rule.agents is None or names_match(rule.agents, agent))
                and (rule.roles is None or not set(rule.roles).isdisjoint(roles))
                and (rule.users is None or (user is not None and names_match(rule.users, user)))
            )

        if any(r.rule.unconditional and in_scope(r.rule) for r in bucket.deny):
            return False
        return any(in_scope(r.rule) for r in (*bucket.approval, *bucket.allow))

    def is_allowed(self, action: Action) -> bool:
        """True only if ``action`` is allowed outright."""
        return self.evaluate(action).allowed

    def authorize(self, action: Action, decision_id: str = "") -> Decision:
        """The decision if it allows; otherwise raise :class:`DeniedError` carrying it."""
        decision = self.evaluate(action, decision_id)
        if not decision.allowed:
            raise DeniedError(decision)
        return decision


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}" if exc.args else "missing field"
    if isinstance(exc, AttributeError | TypeError):
        return f"wrong type ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _schema_message(exc: Exception, tool: str) -> str:
    message = getattr(exc, "message", str(exc))
    return f"arguments do not match the schema of {tool!r}: " + message.replace("data", "args", 1)


def _refuse_remote(uri: str) -> Any:
    import fastjsonschema

    raise fastjsonschema.JsonSchemaDefinitionException(
        f"$ref {uri!r} is not in the schema (remote references are not fetched)"
    )


class _NoRemoteRefs(dict[str, Callable[[str], Any]]):
    """fastjsonschema's ``handlers``: without one for a scheme it fetches the URI with urllib."""

    def __contains__(self, scheme: object) -> bool:
        return True

    def __missing__(self, scheme: str) -> Callable[[str], Any]:
        return _refuse_remote


def _validator(tool: ToolDecl) -> Callable[[Any], Any] | None:
    if tool.schema is None:
        return None
    import fastjsonschema

    try:
        # use_default=False: otherwise validating writes schema defaults into the action's args
        validate: Callable[[Any], Any] = fastjsonschema.compile(
            tool.schema, handlers=_NoRemoteRefs(), use_default=False
        )
    except Exception as exc:  # a malformed schema raises re.error, AttributeError, TypeError, …
        w = tool.where
        raise PolicyError(
            f"invalid JSON Schema for tool {tool.name!r}: {exc}",
            code="policy.schema",
            source=w.source,
            line=w.line,
            field=f"{w.field}.args",
        ) from None
    return validate

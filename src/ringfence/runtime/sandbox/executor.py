"""From a decision to a sandboxed run: which profile, whether it can run here, and the record.

A rule's ``sandbox: <profile>`` becomes the decision's ``obligations.sandbox``.  The profile
an allowed action runs in is, in order: that obligation (the policy's word); else the profile
the caller named in ``action.context["sandbox"]`` (what the shell pack's rules check), if the
executor accepts caller-named profiles; else the executor's default.  None of them, or a
name with no profile, is an error and nothing runs.

:func:`run_guarded` is what a code or shell tool calls after ``guard.check``: it refuses the
action through the Guard — a deny record with rule ``ringfence:sandbox`` and reason
``sandbox.unavailable: …`` — when the profile's tier cannot run here, otherwise runs it and
records the outcome with the tier actually used.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ringfence.core.action import Action
from ringfence.core.decision import Decision
from ringfence.errors import ConfigError, DeniedError, SandboxError
from ringfence.runtime.sandbox.profile import SandboxProfile, SandboxResult

if TYPE_CHECKING:
    from ringfence.core.policy.engine import Policy
    from ringfence.runtime.guard import Guard
    from ringfence.runtime.ports import Sandbox

__all__ = ["SANDBOX_RULE", "SandboxExecutor", "run_guarded"]

SANDBOX_RULE = "ringfence:sandbox"


class SandboxExecutor:
    """Runs allowed actions in the sandbox profile their decision (or caller) names.

    ``profiles``: by name (see :func:`~ringfence.runtime.sandbox.load_profiles`).
    ``default``: the profile for decisions and actions that name none (None: refuse them).
    ``caller_may_name``: accept ``action.context["sandbox"]`` when the policy names none.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        profiles: Mapping[str, SandboxProfile],
        *,
        default: str | None = None,
        caller_may_name: bool = True,
    ) -> None:
        if default is not None and default not in profiles:
            raise ConfigError(
                f"default sandbox profile {default!r} is not defined"
                f" (defined: {', '.join(sorted(profiles)) or 'none'})",
                code="config.sandbox.unknown_profile",
            )
        self.sandbox = sandbox
        self.profiles = dict(profiles)
        self.default = default
        self.caller_may_name = caller_may_name

    def check_policy(self, policy: Policy) -> None:
        """Refuse (ConfigError naming file, line, field) a rule whose profile is not defined."""
        for rule in policy.rules:
            if rule.sandbox is not None and rule.sandbox not in self.profiles:
                raise ConfigError(
                    f"rule {rule.id!r} runs actions in sandbox profile {rule.sandbox!r}, which "
                    f"is not defined (defined: {', '.join(sorted(self.profiles)) or 'none'})",
                    code="config.sandbox.unknown_profile",
                    source=rule.where.source,
                    line=rule.where.line,
                    field=f"{rule.where.field}.sandbox",
                )

    def profile_for(self, action: Action, decision: Decision) -> SandboxProfile:
        """The profile ``action`` must run in (SandboxError if none or unknown)."""
        name = decision.obligations.sandbox
        named_by = "the policy"
        if name is None and self.caller_may_name:
            claimed = action.context.get("sandbox")
            if isinstance(claimed, str):
                name, named_by = claimed, "the caller"
        if name is None and self.default is not None:
            name, named_by = self.default, "the default"
        if name is None:
            raise SandboxError(
                f"no sandbox profile for {action.tool!r}: neither the decision nor the action "
                "names one, and there is no default",
                code="sandbox.no_profile",
            )
        profile = self.profiles.get(name)
        if profile is None:
            raise SandboxError(
                f"sandbox profile {name!r} (named by {named_by}) is not defined",
                code="sandbox.unknown_profile",
            )
        return profile

    def refusal(self, action: Action, decision: Decision) -> str | None:
        """Why ``action`` cannot run here (``"<code>: <message>"``, a deny reason), or None.

        For a Guard that turns an unavailable sandbox into the decision itself.
        """
        try:
            self.sandbox.tier_for(self.profile_for(action, decision))
        except SandboxError as exc:
            return f"{exc.code}: {exc.message}"
        return None

    def run(
        self,
        action: Action,
        decision: Decision,
        *,
        argv: Sequence[str] | None = None,
        code: str | None = None,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Run for an allowed decision, without recording (see :func:`run_guarded`)."""
        if not decision.allowed:
            raise DeniedError(decision)
        profile = self.profile_for(action, decision)
        return self.sandbox.run(profile, argv=argv, code=code, stdin=stdin, env=env)


def run_guarded(
    guard: Guard,
    action: Action,
    decision: Decision,
    executor: SandboxExecutor,
    *,
    argv: Sequence[str] | None = None,
    code: str | None = None,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Run an action ``guard`` allowed in its sandbox, and record the outcome.

    A decision that does not allow raises DeniedError (also in audit-only mode: code runs only
    when allowed).  A missing, unknown or unavailable profile is refused through
    ``guard.refuse`` (rule ``ringfence:sandbox``) and raises DeniedError carrying that deny.
    The outcome record's ``content`` is the run's :meth:`~SandboxResult.summary` (profile,
    tier used, exit code, kill reason, and for a profile with a network allowlist every
    connection its egress proxy allowed or refused, under ``egress`` — not the outputs); the
    session observes the outputs.
    """
    if not decision.allowed:
        raise DeniedError(decision)
    try:
        profile = executor.profile_for(action, decision)
        executor.sandbox.tier_for(profile)
    except SandboxError as exc:
        denial = guard.refuse(action, SANDBOX_RULE, f"{exc.code}: {exc.message}")
        raise DeniedError(denial) from exc
    started = time.perf_counter_ns()
    try:
        result = executor.sandbox.run(profile, argv=argv, code=code, stdin=stdin, env=env)
    except BaseException as exc:
        guard.record_outcome(action, decision, started_ns=started, error=exc)
        raise
    guard.record_outcome(
        action,
        decision,
        started_ns=started,
        result=_observed(result),
        content={"sandbox": result.summary()},
    )
    return result


def _observed(result: SandboxResult) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout.decode("utf-8", "replace"),
        "stderr": result.stderr.decode("utf-8", "replace"),
    }

"""Every error Ringfence raises, with a stable machine-readable ``code``.

The tree::

    RingfenceError                      code "ringfence"
    ├── PolicyError                     code "policy.*"   a policy could not be loaded
    ├── InputError                      code "input.*"    an action or argument is malformed
    ├── DeniedError                     code "denied.*"   an action was refused (has .decision)
    ├── AuditError                      code "audit.*"    the audit log could not be written or read
    │   └── VerificationError           code "audit.verify.*"  the log failed verification
    ├── ConfigError                     code "config.*"   a key, file or option is unusable
    ├── IdentityError                   code "identity.*"     the identity registry refused a change
    │                                   code "credential.*"   a credential is missing or invalid
    │                                   code "delegation.*"   a delegated credential is broader
    │                                                         than its parent or has no parent
    ├── SecretError                     code "secret.*"   a secret handle was refused, or the
    │                                                     secret store is unusable
    ├── ApprovalError                   code "approval.*" an approval request or receipt was refused
    └── SandboxError                    code "sandbox.*"  code could not run in its sandbox
        └── SandboxUnavailable          code "sandbox.unavailable"  the profile's tier cannot run
                                                          here and no weaker one is allowed

Wire format: ``{"code": ..., "message": ...}`` (see :meth:`RingfenceError.to_dict`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringfence.core.decision import Decision


class RingfenceError(Exception):
    """Root of every Ringfence error; ``code`` is stable and machine-readable."""

    default_code = "ringfence"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def diagnostics(self) -> str:
        """A human-readable, multi-line explanation (what the CLI prints)."""
        return f"error[{self.code}]: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The wire form of this error."""
        return {"code": self.code, "message": self.message}


class _LocatedError(RingfenceError):
    """An error about a file's content: names the file, line and field when known."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        where = _where(source, line, field)
        super().__init__(f"{where}: {message}" if where else message, code=code)
        self.reason = message


class PolicyError(_LocatedError):
    """A policy file is malformed or inconsistent; names file, line and field."""

    default_code = "policy.invalid"


class InputError(RingfenceError):
    """An action, argument or file given to Ringfence is malformed."""

    default_code = "input.invalid"


class DeniedError(RingfenceError):
    """An action was not allowed. ``decision`` says which rules decided and why."""

    default_code = "denied"

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        reasons = "; ".join(decision.reasons) or "no rule allows this action"
        text = message or (
            f"{decision.effect.value}: {reasons} "
            f"(rules: {', '.join(decision.rules) or '-'}; decision {decision.decision_id})"
        )
        super().__init__(text, code=f"denied.{decision.effect.value}")


class AuditError(RingfenceError):
    """The audit log could not be written or read; a failed write blocks the action."""

    default_code = "audit.unavailable"


class VerificationError(AuditError):
    """The audit log does not verify: edited, deleted, inserted, reordered, truncated or forged."""

    default_code = "audit.verify.failed"


class ConfigError(_LocatedError):
    """A configuration value, key file or option cannot be used; names file, line and field
    when it comes from a file."""

    default_code = "config.invalid"


class IdentityError(RingfenceError):
    """An agent identity or credential was refused; ``code`` says why (``credential.expired``,
    ``delegation.scope_widened``, ``identity.not_found``, …; docs/identity.md lists them)."""

    default_code = "identity.invalid"

    @property
    def reason(self) -> str:
        """``"<code>: <message>"``: the reason a Guard records for an identity deny."""
        return f"{self.code}: {self.message}"


class SecretError(RingfenceError):
    """A secret could not be used: an unknown or misused handle (``secret.unknown``,
    ``secret.tool``, ``secret.host``, ``secret.value_in_arguments``, …) or a secret store that
    cannot be read (``secret.file.tampered``, ``secret.file.wrong_key``, …).  Messages name
    secrets, tools and hosts, never values."""

    default_code = "secret.invalid"


class ApprovalError(RingfenceError):
    """An approval could not be given or used: an unknown or already answered request
    (``approval.not_found``, ``approval.not_pending``), an approver who may not answer it
    (``approval.approver``), or a receipt that does not bind to the call
    (``approval.receipt.expired``, ``.session``, ``.arguments``, ``.used``, ``.signature``, …;
    docs/approvals.md lists them)."""

    default_code = "approval.invalid"


class SandboxError(RingfenceError):
    """Code could not be run in its sandbox, and nothing ran: no profile named
    (``sandbox.no_profile``), an unknown profile (``sandbox.unknown_profile``), a sandbox that
    failed to start (``sandbox.failed``) or a bad request (``sandbox.input``)."""

    default_code = "sandbox.failed"


class SandboxUnavailable(SandboxError):
    """The tier a sandbox profile needs is not available on this machine and the profile
    allows no weaker one: the action is refused (fail closed)."""

    default_code = "sandbox.unavailable"


def _where(source: str | None, line: int | None, field: str | None) -> str:
    where = ""
    if source is not None:
        where = source if line is None else f"{source}:{line}"
    if field:
        where = f"{where}: {field}" if where else field
    return where

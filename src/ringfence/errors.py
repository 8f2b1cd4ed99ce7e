"""Every error Ringfence raises, with a stable machine-readable ``code``.

The tree::

    RingfenceError                      code "ringfence"
    ├── PolicyError                     code "policy.*"   a policy could not be loaded
    ├── InputError                      code "input.*"    an action or argument is malformed
    ├── DeniedError                     code "denied.*"   an action was refused (has .decision)
    ├── AuditError                      code "audit.*"    the audit log could not be written or read
    │   └── VerificationError           code "audit.verify.*"  the log failed verification
    └── ConfigError                     code "config.*"   a key, file or option is unusable

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


def _where(source: str | None, line: int | None, field: str | None) -> str:
    where = ""
    if source is not None:
        where = source if line is None else f"{source}:{line}"
    if field:
        where = f"{where}: {field}" if where else field
    return where

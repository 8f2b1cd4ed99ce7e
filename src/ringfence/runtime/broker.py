"""The secret broker: agents hold handles, values appear only inside allowed calls.

A :class:`SecretBroker` joins a :class:`~ringfence.runtime.secrets.SecretSource` (values) with
the policy's ``secrets:`` grants (:mod:`ringfence.core.policy.secrets`) and does four things
for an enforcement point (the MCP gateway, the Guard):

1. :meth:`~SecretBroker.check` — before the policy is asked: refuse a call whose arguments
   hold a secret's *value* (in any encoding the redactor knows: the model must never have
   one, and a value outside a handle escapes every destination check), a malformed handle,
   or a handle whose secret the policy does not grant to this tool and these destination
   hosts.  The caller records the refusal as a decision with rule :data:`SECRET_RULE`.
2. :meth:`~SecretBroker.substitute` — after the decision allowed the call and was recorded
   (the record holds the handle), right before execution: the same checks again (the policy
   or the secrets may have changed since), then handles replaced with current values.
3. :meth:`~SecretBroker.redact` — for tool results, error messages and audit records: known
   values (current and earlier ones of this process, in their common encodings) and common
   secret formats.  A result with findings is labelled :data:`SECRET_LABEL`.
4. :class:`RedactingLogFilter` — the same redaction for log records.

Values are read from the source at every use, so rotating one takes effect on the next call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from ringfence.core.action import Action
from ringfence.core.policy.secrets import SecretGrant
from ringfence.core.redact import Redaction, Redactor
from ringfence.core.secrets import handle, scan, substitute, url_hosts, use_problem
from ringfence.errors import SecretError
from ringfence.runtime.secrets import SecretSource

if TYPE_CHECKING:
    from ringfence.core.policy.engine import Policy
    from ringfence.runtime.audit import AuditLog

__all__ = [
    "SECRET_LABEL",
    "SECRET_RULE",
    "RedactingLogFilter",
    "SecretBroker",
    "destinations",
    "install_audit_redaction",
    "install_log_filter",
]

log = logging.getLogger("ringfence.secrets")

SECRET_RULE = "ringfence:secret"  # noqa: S105 - a rule id, not a password
SECRET_LABEL = "secret"  # noqa: S105 - a session label
HISTORY = 8  # earlier values of a secret still redacted after a rotation
_HOST_TYPES = frozenset({"host", "domain"})

Grants = Mapping[str, SecretGrant]


def destinations(policy: Policy, action: Action) -> frozenset[str]:
    """Every destination host known for ``action``.

    The host (and url) resources the policy derives from its arguments, plus the host of
    every URL anywhere in its arguments (destinations hide inside content).
    """
    try:
        resources = policy.resources_of(action)
    except (TypeError, ValueError):  # a bad argument type: the policy denies it anyway
        resources = action.resources
    hosts = {r.value for r in resources if r.type in _HOST_TYPES and r.value}
    return frozenset(hosts | url_hosts(action.args))


class SecretBroker:
    """Checks handle use against the grants, substitutes values, redacts them everywhere.

    ``grants`` is the policy's ``secrets`` mapping, or a callable returning the current one
    (``lambda: guard.policy.spec.secrets``, so a reloaded policy is followed).
    """

    def __init__(
        self,
        source: SecretSource,
        grants: Grants | Callable[[], Grants],
        *,
        formats: bool = True,
    ) -> None:
        self.source = source
        self._grants: Callable[[], Grants] = grants if callable(grants) else lambda: grants
        self._formats = formats
        self._lock = threading.Lock()
        self._seen: dict[str, list[str]] = {}
        self._redactor = Redactor({}, formats=formats)
        self._failure: str | None = None

    @property
    def grants(self) -> Grants:
        """The grants in force now."""
        return self._grants()

    def handles_for(self, tool: str) -> list[str]:
        """The handles ``tool`` may be given (for telling an agent what it can use)."""
        return [handle(n) for n, g in sorted(self.grants.items()) if g.allows_tool(tool)]

    # -- values ------------------------------------------------------------------------------

    def _values(self) -> dict[str, str]:
        out = {}
        for name in self.source.names():
            value = self.source.get(name)
            if value:
                out[name] = value
        return out

    def redactor(self) -> Redactor:
        """The redactor for every value known now and the earlier values of this process.

        If the source cannot be read, the values already seen are still redacted (and the
        failure is logged): redaction never stops because a store is down.
        """
        try:
            current = self._values()
            self._failure = None
        except SecretError as exc:
            if exc.message != self._failure:  # once per distinct failure, not per call
                self._failure = exc.message
                log.error("secret store unreadable; redacting the values seen so far: %s", exc)
            current = {}
        with self._lock:
            changed = False
            for name, value in current.items():
                seen = self._seen.setdefault(name, [])
                if value not in seen:
                    seen.append(value)
                    del seen[:-HISTORY]
                    changed = True
            if changed:
                self._redactor = Redactor(
                    {n: tuple(v) for n, v in self._seen.items()}, formats=self._formats
                )
            return self._redactor

    # -- checking and substituting -------------------------------------------------------------

    def check(
        self, tools: str | Collection[str], args: Any, hosts: Collection[str]
    ) -> SecretError | None:
        """Why this call may not run as asked, as a coded error; None if it may.

        ``tools``: the tool name (or every name, for a meta tool and the tool it runs);
        ``hosts``: the call's destination hosts (see :func:`destinations`).
        """
        names = (tools,) if isinstance(tools, str) else tuple(tools)
        literal = self.redactor().find(args)
        leaked = sorted({f.secret for f in literal if f.secret is not None})
        if leaked:
            where = next(f.pointer for f in literal if f.secret == leaked[0]) or "/"
            return SecretError(
                f"the arguments hold the value of secret {leaked[0]!r} (at {where}); "
                f"pass the handle {handle(leaked[0])} instead",
                code="secret.value_in_arguments",
            )
        found = scan(args)
        if found.problems:
            return SecretError(found.problems[0], code="secret.malformed_handle")
        if not found.uses:
            return None
        problem = use_problem(found.names, names, hosts, self.grants)
        if problem is not None:
            return SecretError(problem[1], code=problem[0])
        try:
            missing = [n for n in found.names if self.source.get(n) is None]
        except SecretError as exc:
            return SecretError(f"the secret store is unavailable: {exc.message}", code=exc.code)
        if missing:
            return SecretError(
                f"secret {missing[0]!r} has no value in the secret store",
                code="secret.unavailable",
            )
        return None

    def substitute(self, tools: str | Collection[str], args: Any, hosts: Collection[str]) -> Any:
        """``args`` with every handle replaced by its current value; raises SecretError.

        Call it after the decision allowing the call has been recorded, right before the call
        runs, and use what it returns only for that call.
        """
        problem = self.check(tools, args, hosts)
        if problem is not None:
            raise problem
        found = scan(args)
        if not found.uses:
            return args
        try:
            values = {n: self.source.get(n) for n in found.names}
        except SecretError as exc:
            raise SecretError(
                f"the secret store is unavailable: {exc.message}", code=exc.code
            ) from None
        if any(v is None for v in values.values()):
            raise SecretError("a secret disappeared from the store", code="secret.unavailable")
        self.redactor()  # the values about to be used are redacted from here on
        out = substitute(args, {n: v for n, v in values.items() if v is not None})
        # A value must not change where the call goes (a "/" or "@" inside a URL would).
        if url_hosts(out) - url_hosts(args):
            raise SecretError(
                "substituting a secret would change the call's destination hosts",
                code="secret.host",
            )
        return out

    # -- redacting -----------------------------------------------------------------------------

    def redact(self, value: Any) -> Redaction:
        """A redacted copy of a JSON-like value, and what was found."""
        return self.redactor().json(value)

    def redact_text(self, text: str) -> str:
        """``text`` with secrets replaced by markers."""
        return self.redactor().redact_text(text)

    def scrub(self, exc: BaseException) -> BaseException:
        """``exc`` itself, or — if its message holds a secret — a :class:`SecretError`
        (``secret.in_error``) whose message is ``"<type>: <message>"`` redacted.

        For errors that travel on (to a caller, a model, a record): raise the stand-in
        ``from None``, so the original, unredacted one is not chained to it.
        """
        text = str(exc)
        redacted = self.redact_text(text)
        if redacted == text:
            return exc
        return SecretError(f"{type(exc).__name__}: {redacted}", code="secret.in_error")

    def redact_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """An audit record with secrets replaced by markers (for :class:`AuditLog`)."""
        out: dict[str, Any] = self.redactor().json(record).value
        return out


class RedactingLogFilter(logging.Filter):
    """A logging filter that redacts secrets from the message, exception and stack text.

    Attach it to handlers (:func:`install_log_filter`): a filter on a logger does not see
    records its children propagate.
    """

    def __init__(self, redact_text: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact_text
        self._formatter = logging.Formatter()
        self._busy = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; always lets it through."""
        if getattr(self._busy, "on", False):
            # Logged while redacting (the store failing, say): those messages name no values,
            # and redacting them would recurse.
            return True
        self._busy.on = True
        try:
            self._apply(record)
        finally:
            self._busy.on = False
        return True

    def _apply(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)


def install_log_filter(
    broker: SecretBroker, logger: logging.Logger | None = None
) -> RedactingLogFilter:
    """Add a :class:`RedactingLogFilter` to every handler of ``logger`` (default: the root)."""
    flt = RedactingLogFilter(broker.redact_text)
    for h in (logger or logging.getLogger()).handlers:
        h.addFilter(flt)
    return flt


def install_audit_redaction(audit: AuditLog, broker: SecretBroker) -> None:
    """Make ``audit`` redact secrets from every record before it is hashed and stored."""
    previous = audit.redactor
    if previous is None:
        audit.redactor = broker.redact_record
    else:
        audit.redactor = lambda record: broker.redact_record(previous(record))

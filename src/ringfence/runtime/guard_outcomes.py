"""The Guard's outcome records: what happened when an allowed action ran.

:class:`OutcomeRecording` is a mixin of :class:`~ringfence.runtime.guard.Guard` holding
``record_outcome`` (ok/error, duration, result hash, session labels, circuit breakers) and
``_record_ok``, the protect wrappers' positional fast path for a plain successful call.  The
result is hashed from its canonical JSON encoding (``repr`` for what JSON cannot hold).

A failed outcome write is logged, not raised: the action has already run and its decision is
on record; the next check against that log is refused, so nothing further runs unrecorded.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from ringfence.core.audit.record import outcome_record
from ringfence.errors import AuditError

if TYPE_CHECKING:
    from ringfence.core.action import Action
    from ringfence.core.decision import Decision
    from ringfence.core.policy.engine import Policy
    from ringfence.runtime.audit import AuditLog
    from ringfence.runtime.broker import SecretBroker
    from ringfence.runtime.controls import Controls
    from ringfence.runtime.ports import Clock
    from ringfence.runtime.sessions import Sessions

__all__ = ["OutcomeRecording", "encode_result"]

log = logging.getLogger("ringfence.guard")

encode_result = msgspec.json.Encoder(enc_hook=repr, order="sorted").encode
"""A result as its outcome record's hash and size are taken over: JSON, keys sorted."""
_sha256 = hashlib.sha256
_perf_ns = time.perf_counter_ns


class OutcomeRecording:
    """Guard methods that record the outcome of an allowed action (mixin of Guard)."""

    __slots__ = ()

    # Set by Guard.__init__ (declared here for the type checker only).
    policy: Policy
    audit: AuditLog
    controls: Controls | None
    secrets: SecretBroker | None
    sessions: Sessions
    _clock: Clock

    def record_outcome(
        self,
        action: Action,
        decision: Decision,
        *,
        started_ns: int,
        result: Any = None,
        error: BaseException | None = None,
        content: Any = None,
        labels: tuple[str, ...] = (),
        observed: Any = None,
        encoded: bytes | None = None,
        defer: bool = False,
    ) -> None:
        """Record what happened when an allowed action ran (ok/error, duration, result hash).

        ``content``, if given, is stored in the record as is (redact it first); ``labels``
        are the session labels the result brought, recorded and added to the session.
        ``observed`` is what of the result the session takes in (its provenance and the
        tripwire scan), when that is less than ``result`` itself: an adapter that knows the
        result's protocol passes only what the model will read, without the envelope.
        ``encoded`` is ``result`` as :func:`encode_result` makes it, if the caller has it
        already (its hash and size are taken from it instead of encoding the result again).
        ``defer``: taking the result into the session's provenance may wait for a batch
        (:mod:`ringfence.runtime.sessions`); the result must not change meanwhile.
        """
        duration = time.perf_counter_ns() - started_ns
        if self.controls is not None:  # circuit breakers learn from outcomes
            self.controls.record(action, error is None, duration, self._clock())
        session = action.session
        if session is not None and error is None:
            declared = self.policy.tools.get(action.tool)
            named = None
            if declared is not None:
                if declared.labels:
                    labels = tuple(sorted({*labels, *declared.labels}))
                named = declared.user_named
            try:
                seen = result if observed is None else observed
                labels = self.sessions.observed(session, seen, labels, named, defer=defer)
            except Exception:
                log.exception("session store failed observing %s", decision.decision_id)
        elif session is not None and labels:
            self.sessions.add_labels(session, labels)
        digest = size = None
        if error is None:
            if encoded is not None:
                data = encoded
            else:
                try:
                    data = encode_result(result)
                except Exception:
                    data = repr(result).encode("utf-8", "replace")
            digest, size = _sha256(data).hexdigest(), len(data)
        text = "" if error is None else str(error)
        if error is not None and self.secrets is not None:
            text = self.secrets.redact_text(text)  # before cutting: no half-secret kept
        message = None if error is None else f"{type(error).__name__}: {text[:500]}"
        try:
            self.audit.append(
                outcome_record(
                    decision.decision_id,
                    action,
                    time_ns=self._clock(),
                    status="ok" if error is None else "error",
                    duration_ns=duration,
                    result_sha256=digest,
                    result_size=size,
                    error=message,
                    content=content,
                    labels=labels,
                ),
                checked=content is not None,
            )
        except AuditError:
            # The action has already run and its decision is on record; the next check
            # against this log will be refused, so nothing further runs unrecorded.
            log.exception("could not record the outcome of decision %s", decision.decision_id)

    def _record_ok(self, action: Action, decision: Decision, started_ns: int, result: Any) -> None:
        """record_outcome for a plain successful call: the wrappers' hot path (positional)."""
        if action.session is not None:  # the result is observed into the session
            self.record_outcome(action, decision, started_ns=started_ns, result=result)
            return
        duration = _perf_ns() - started_ns
        now = self._clock()
        controls = self.controls
        if controls is not None and controls.learns:  # only breakers learn from outcomes
            controls.record(action, True, duration, now)
        try:
            data = encode_result(result)
        except Exception:
            data = repr(result).encode("utf-8", "replace")
        try:
            self.audit.append(
                outcome_record(
                    decision.decision_id,
                    action,
                    now,
                    "ok",
                    duration,
                    _sha256(data).hexdigest(),
                    len(data),
                    None,
                ),
                checked=False,
            )
        except AuditError:
            log.exception("could not record the outcome of decision %s", decision.decision_id)

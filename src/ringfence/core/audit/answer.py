"""The ``approval_answer`` audit record: an answer to an approval request, and its outbox entry.

Every answer to an approval request — approved (with the receipt's id and expiry; a plan
too), denied, cancelled, revoked (an approval withdrawn before use), expired — is kept as an
:class:`Answer` in the approval store's outbox, in the same transaction that makes it.  The
process that holds the audit log then appends an ``approval_answer`` record and only after
that marks the answer audited.  A crash between the two writes the answer twice, never zero
times; a duplicate is recognisable: it has the same :func:`answer_key` (request id, status
and ``at``).

Fields, in code-point order like the other record structs (see
:mod:`ringfence.core.audit.record`); details of the request are null when its stored row
could not be read (``problem`` then says why):

``agent``, ``user``, ``session``   who asked, for whom, where
``args_sha256``                    ``sha256:`` of the canonical unredacted arguments (for a plan:
                                   of its steps); the arguments themselves are never recorded
``asked``                          how many identical calls the request stood for
``at``                             when the answer was given (ns); ``ts`` is when it was recorded
``by``, ``note``                   who answered (``ringfence`` for a timeout), and why
``decision_id``                    the decision that asked (null for a plan)
``kind``, ``tool``                 the call (a plan: ``plan`` and its tools, comma-separated)
``policy_version``                 the policy version the request (and receipt) is bound to
``problem``                        null, or why the details are missing
``receipt_expires``, ``receipt_id`` the receipt issued (approved) or withdrawn (revoked)
``request``                        the approval request id
``status``                         ``approved``, ``denied``, ``cancelled``, ``revoked``, ``expired``
``steps``                          a plan's steps, ``{"args", "kind", "tool"}``; empty for a call
"""

from __future__ import annotations

from typing import Any

import msgspec

from ringfence.core.approvals import PLAN_KIND, PendingRequest, Receipt, Status
from ringfence.core.audit.record import SCHEMA_VERSION

__all__ = [
    "ANSWER_TYPE",
    "Answer",
    "AnswerRecord",
    "answer_key",
    "answer_of",
    "answer_record",
    "stored_answers",
    "unreadable_answer",
]

ANSWER_TYPE = "approval_answer"


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """One answer as the outbox keeps it until the audit log holds it."""

    request: str
    status: str  # a Status value; kept as text so that an odd stored row still reads
    by: str
    at: int
    note: str = ""
    agent: str | None = None
    user: str | None = None
    session: str | None = None
    kind: str | None = None
    tool: str | None = None
    args_sha256: str | None = None
    steps: tuple[dict[str, str], ...] = ()
    decision_id: str | None = None
    policy_version: str | None = None
    asked: int | None = None
    receipt_id: str | None = None
    receipt_expires: int | None = None
    problem: str | None = None


def answer_of(
    req: PendingRequest,
    status: Status,
    *,
    by: str,
    note: str,
    at: int,
    receipt: Receipt | None = None,
) -> Answer:
    """The answer ``status`` given to ``req`` by ``by`` at ``at`` (with ``receipt``, if any)."""
    return Answer(
        request=req.id,
        status=status.value,
        by=by,
        at=at,
        note=note,
        agent=req.agent,
        user=req.user,
        session=req.session,
        kind=req.kind,
        tool=req.tool,
        args_sha256=req.args_hash,
        steps=tuple(msgspec.to_builtins(s) for s in req.steps) if req.kind == PLAN_KIND else (),
        decision_id=req.decision_id or None,
        policy_version=req.policy_version,
        asked=req.count,
        receipt_id=None if receipt is None else receipt.id,
        receipt_expires=None if receipt is None else receipt.expires_ns,
    )


def stored_answers(req: PendingRequest) -> list[Answer]:
    """The answers a stored request implies, oldest first: for a store written before
    answers were kept (an approval later revoked or used is still an approval)."""
    by, at, note = req.decided_by or "", req.decided_ns or req.created_ns, req.note
    receipt = req.receipt
    if req.status is Status.PENDING:
        return []
    if req.status in (Status.APPROVED, Status.USED) and receipt is not None:
        approved_by = by if req.status is Status.APPROVED else receipt.approver
        approved_at = at if req.status is Status.APPROVED else receipt.issued_ns
        return [
            answer_of(
                req, Status.APPROVED, by=approved_by, note=note, at=approved_at, receipt=receipt
            )
        ]
    if req.status is Status.REVOKED and receipt is not None:
        # The approval's note was overwritten by the revocation's: it is not known any more.
        approved = answer_of(
            req,
            Status.APPROVED,
            by=receipt.approver,
            note="",
            at=receipt.issued_ns,
            receipt=receipt,
        )
        return [approved, answer_of(req, Status.REVOKED, by=by, note=note, at=at, receipt=receipt)]
    return [answer_of(req, req.status, by=by, note=note, at=at, receipt=receipt)]


def unreadable_answer(request: str, status: str, at: int, problem: str) -> Answer:
    """What can be said of an answer whose stored details cannot be read."""
    return Answer(request=request, status=status, by="", at=at, problem=problem)


class AnswerRecord(msgspec.Struct, gc=False):
    """An answer to an approval request (fields in code-point order)."""

    agent: str | None
    args_sha256: str | None
    asked: int | None
    at: int
    by: str
    decision_id: str | None
    kind: str | None
    note: str
    policy_version: str | None
    prev: str
    problem: str | None
    receipt_expires: int | None
    receipt_id: str | None
    request: str
    seq: int
    session: str | None
    status: str
    steps: tuple[dict[str, str], ...]
    tool: str | None
    ts: int
    type: str
    user: str | None
    v: int


def answer_record(answer: Answer, *, time_ns: int) -> AnswerRecord:
    """The record of ``answer`` (``seq``/``prev`` are added by the writer)."""
    a = answer
    return AnswerRecord(
        a.agent,
        a.args_sha256,
        a.asked,
        a.at,
        a.by,
        a.decision_id,
        a.kind,
        a.note,
        a.policy_version,
        "",
        a.problem,
        a.receipt_expires,
        a.receipt_id,
        a.request,
        -1,
        a.session,
        a.status,
        a.steps,
        a.tool,
        time_ns,
        ANSWER_TYPE,
        a.user,
        SCHEMA_VERSION,
    )


def answer_key(record: Any) -> tuple[str, str, int]:
    """What makes an answer the same answer: ``(request, status, at)``; two records with the
    same key (a decoded record dict, an Answer or an AnswerRecord) are one answer written
    twice (a crash between recording it and marking it recorded)."""
    if isinstance(record, dict):
        return (record["request"], record["status"], record["at"])
    return (record.request, record.status, record.at)

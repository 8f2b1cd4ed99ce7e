"""``ringfence approvals``: list, show, approve, deny, cancel, approve-plan, prune.

Works on the approval store of a data folder (``--data``, default ``.ringfence``), the same one
an agent process waits on: approving here resumes the waiting call (or lets the gateway's retry
through).  The approver is ``--as NAME`` or the operating-system user.  Everything shown comes
from the agent's side and may be hostile: control and bidirectional-override characters are
escaped and rich markup is not interpreted, so what a reviewer reads is what would run.

Every answer given here (approve, deny, cancel, approve-plan) is an audit record
(``approval_answer``): when no other process holds the data folder's audit log, the command
opens it and writes every answer not yet recorded; when an agent process holds it, that
process records the answer within its poll interval (the note on stderr says so).  Either
way the answer stays queued in the approval store until a log holds it.

``prune`` deletes finished requests older than ``--older-than`` (30 days) whose answers are
in the audit log (it records queued answers first, as above); the rest is kept and counted.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ringfence.errors import AuditError, InputError, RingfenceError

DATA_HELP = "Ringfence data folder (holds approvals.sqlite and keys/)."
STATUSES = ("pending", "approved", "denied", "expired", "cancelled", "used", "revoked", "all")
# C0/C1 controls (but newline and tab), bidi embeddings/overrides/isolates, zero-width marks.
_HIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_AGE = re.compile(r"^([0-9]{1,7})(s|m|h|d)?$")
_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_age(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """Seconds of an age: whole seconds, or ``<n>s|m|h|d`` (``30d``, ``12h``, ``90m``)."""
    found = _AGE.match(value.strip())
    if found is None:
        raise click.BadParameter(f"{value!r} is not an age such as 30d, 12h, 90m or 3600s")
    return int(found[1]) * _SECONDS[found[2]]


def _data_option(fn: Any) -> Any:
    return click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)(fn)


def _as_option(fn: Any) -> Any:
    return click.option(
        "--as", "who", help="Approver name recorded with the answer (default: the OS user)."
    )(fn)


def _who(who: str | None) -> str:
    return who or getpass.getuser()


def _queue(data: str) -> Any:
    from ringfence.runtime.approvals import open_approval_queue

    return open_approval_queue(data)


@contextlib.contextmanager
def _answering(data: str) -> Iterator[Any]:
    """The queue to answer with; once the answer is given, it is recorded (:func:`_record`)."""
    queue = _queue(data)
    try:
        yield queue
        _record(data, queue)
    finally:
        queue.store.close()


def _record(data: str, queue: Any) -> None:
    """Write every answer not yet in the data folder's audit log to it, unless another process
    holds the log (that process records them); never fails the answer already given."""
    from ringfence.runtime.embedded import open_audit_log

    later = "it stays queued and the next process to open the audit log records it"
    try:
        audit = open_audit_log(data)
    except AuditError as exc:
        if exc.code != "audit.locked":
            click.echo(
                f"warning: answer not in the audit log yet ({exc.message}); {later}", err=True
            )
            return
        click.echo(
            "note: the audit log is open in another process: a running agent records this "
            "answer within its poll interval (else the next process to open the log does)",
            err=True,
        )
        return
    except (RingfenceError, OSError) as exc:  # a key or folder that cannot be used
        click.echo(f"warning: answer not in the audit log yet ({exc}); {later}", err=True)
        return
    try:
        queue.record_answers(audit)
    except AuditError as exc:
        click.echo(f"warning: answer not in the audit log yet ({exc.message}); {later}", err=True)
    finally:
        try:
            audit.close()
        except AuditError as exc:
            click.echo(f"warning: closing the audit log failed: {exc.message}", err=True)


def _store(data: str) -> Any:
    """The store for reading (no key needed); InputError if the folder has none."""
    from ringfence.stores.approvals import SQLiteApprovalStore

    path = Path(data) / "approvals.sqlite"
    if not path.exists():
        raise InputError(f"no approval store at {path}", code="input.not_found")
    return SQLiteApprovalStore(path)


def _clean(text: str) -> str:
    """``text`` with hidden and terminal-control characters shown as ``\\uXXXX``."""
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _age(ns: int, now: int) -> str:
    seconds = max(0, (now - ns) // 10**9)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _args(value: Any, width: int | None = None) -> str:
    text = _clean(json.dumps(value, ensure_ascii=False, sort_keys=True))
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _columns(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned columns; the last one (the arguments) is cut to the terminal's width."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    room = max(20, shutil.get_terminal_size((120, 24)).columns - sum(widths) - 2 * len(widths))
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + _cut(r[-1], room)
        for r in [header, *rows]
    ]


def _to_json(req: Any, now: int) -> dict[str, Any]:
    import msgspec

    out: dict[str, Any] = msgspec.to_builtins(req)
    out["status"] = req.status_at(now).value
    return out


@click.group()
def approvals() -> None:
    """Answer approval requests: list, show, approve, deny, cancel, approve-plan, prune."""


@approvals.command("list")
@_data_option
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default="pending",
    show_default=True,
    help="Which requests to list.",
)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the requests as JSON.")
def list_(data: str, status: str, limit: int, as_json: bool) -> None:
    """Requests, newest first (identical requests are grouped: "asked" counts them);
    ``show ID`` has the rules, reasons and the rest."""
    from ringfence.core.approvals import Status

    store = _store(data)
    now = time.time_ns()
    try:
        wanted = None if status == "all" else Status(status)
        rows = store.requests(status=wanted, limit=limit, now_ns=now)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([_to_json(r, now) for r in rows], indent=2))
        return
    if not rows:
        click.echo(f"no {status if status != 'all' else ''} approval requests".replace("  ", " "))
        return
    table = [
        [
            r.id,
            r.status_at(now).value,
            _age(r.created_ns, now),
            str(r.count),
            _cut(_clean(r.agent), 24),
            _cut(_clean(r.session or "-"), 24),
            _cut(_clean(r.tool), 32),
            _args(r.args if r.kind != "plan" else list(r.plan_args)),
        ]
        for r in rows
    ]
    click.echo(
        "\n".join(
            _columns(
                ["id", "status", "age", "asked", "agent", "session", "tool", "arguments"], table
            )
        )
    )


@approvals.command()
@_data_option
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
def show(data: str, request_id: str, as_json: bool) -> None:
    """Everything a reviewer needs about one request."""
    store = _store(data)
    try:
        req = store.get(request_id)
    finally:
        store.close()
    if req is None:
        raise InputError(f"no approval request {request_id!r}", code="approval.not_found")
    now = time.time_ns()
    if as_json:
        click.echo(json.dumps(_to_json(req, now), indent=2))
        return
    click.echo("\n".join(_describe(req, now)))


def _describe(req: Any, now: int) -> list[str]:
    status = req.status_at(now).value
    asked = f" (asked {req.count} times)" if req.count > 1 else ""
    lines = [f"request     {req.id}  {status}{asked}"]
    if status == "pending":
        lines.append(f"answer by   {_when(req.deadline_ns)} (in {_age(now, req.deadline_ns)})")
    who = _clean(req.agent)
    if req.roles:
        who += f" (roles: {_clean(', '.join(req.roles))})"
    lines.append(f"agent       {who}")
    lines.append(f"user        {_clean(req.user or '-')}")
    if req.delegation:
        lines.append(f"delegation  {_clean(' → '.join(req.delegation))}")
    lines.append(f"session     {_clean(req.session or '-')}")
    h = req.history
    if h is not None:
        tools = ", ".join(f"{_clean(t)} x{n}" for t, n in h.tools) or "-"
        labels = _clean(", ".join(h.labels)) or "-"
        lines.append(f"  so far    {h.calls} allowed calls; labels: {labels}; tools: {tools}")
        if h.counters:
            lines.append("  counters  " + ", ".join(f"{_clean(c)}={n}" for c, n in h.counters))
    if req.kind == "plan":
        lines.append(f"plan        {len(req.steps)} calls, each allowed once:")
        for i, (step, args) in enumerate(zip(req.steps, req.plan_args, strict=False), 1):
            lines.append(f"  {i:>2}. {_clean(step.tool)} {_args(args)}")
            lines.append(f"      args {step.args}")
    else:
        lines.append(f"call        {_clean(req.kind)} {_clean(req.tool)}")
        lines.append(f"arguments   {_args(req.args)}")
        lines.append(f"args hash   {req.args_hash}")
        if req.resources:
            res = ", ".join(_clean(f"{r.type}:{r.value}") for r in req.resources)
            lines.append(f"resources   {res}")
    lines.append(f"user asked  {_clean(req.request) if req.request else '-'}")
    lines.append(f"model says  {_clean(req.reason) if req.reason else '-'}")
    for rule, reason in zip(req.rules, req.reasons, strict=False):
        lines.append(f"rule        {_clean(rule)}: {_clean(reason)}")
    lines.append(f"policy      {req.policy_version}")
    if req.decision_id:
        lines.append(f"decision    {req.decision_id}")
    if req.decided_by is not None:
        note = f": {_clean(req.note)}" if req.note else ""
        lines.append(
            f"answered    {status} by {_clean(req.decided_by)} at {_when(req.decided_ns)}{note}"
        )
    if req.receipt is not None:
        r = req.receipt
        lines.append(f"receipt     {r.id}, valid until {_when(r.expires_ns)} (key {r.kid})")
    return lines


@approvals.command()
@_data_option
@click.argument("request_id")
@click.option("--note", default="", help="Why (recorded with the answer).")
@click.option("--ttl", type=float, help="Seconds the receipt stays valid (default: 300).")
@_as_option
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
def approve(
    data: str, request_id: str, note: str, ttl: float | None, who: str | None, as_json: bool
) -> None:
    """Approve a pending request: its exact call may run once, before the receipt expires."""
    import msgspec

    with _answering(data) as queue:
        receipt = queue.approve(request_id, _who(who), note=note, ttl_s=ttl)
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(receipt), indent=2))
        return
    steps = len(receipt.steps)
    what = f"{steps} calls" if steps > 1 else _clean(receipt.steps[0].tool)
    click.echo(
        f"approved {request_id} as {_clean(receipt.approver)}: receipt {receipt.id} for {what}, "
        f"session {_clean(receipt.session or '-')}, valid until {_when(receipt.expires_ns)}"
    )


@approvals.command()
@_data_option
@click.argument("request_id")
@click.option("--note", default="", help="Why (the agent is told, and it is recorded).")
@_as_option
def deny(data: str, request_id: str, note: str, who: str | None) -> None:
    """Deny a pending request: the waiting call is refused."""
    with _answering(data) as queue:
        req = queue.deny(request_id, _who(who), note=note)
    click.echo(f"denied {req.id} as {_clean(req.decided_by or '')}")


@approvals.command()
@_data_option
@click.option("--agent", help="Requests of this agent.")
@click.option("--tool", help="Requests for this tool (a plan: any step).")
@click.option("--session", help="Requests of this session.")
@click.option("--user", help="Requests on behalf of this user.")
@click.option("--all", "everything", is_flag=True, help="Every request.")
@click.option("--note", default="", help="Why (recorded).")
@_as_option
def cancel(
    data: str,
    agent: str | None,
    tool: str | None,
    session: str | None,
    user: str | None,
    everything: bool,
    note: str,
    who: str | None,
) -> None:
    """Cancel pending requests and revoke unused approvals in a scope (all given fields match)."""
    from ringfence.core.approvals import Scope

    scope = Scope(agent=agent, tool=tool, session=session, user=user, everything=everything)
    if not everything and all(v is None for v in (agent, tool, session, user)):
        raise click.UsageError("name a scope (--agent, --tool, --session, --user) or --all")
    with _answering(data) as queue:
        done = queue.cancel(scope, by=_who(who), note=note)
    click.echo(
        f"cancelled or revoked {len(done)} requests" + (f": {', '.join(done)}" if done else "")
    )


@approvals.command("approve-plan")
@_data_option
@click.argument("plan_file", type=click.File("rb"))
@click.option(
    "-p",
    "--policy",
    "policies",
    multiple=True,
    required=True,
    type=click.Path(),
    help="The policy the agent runs (the receipt is bound to its version).",
)
@click.option("--agent", required=True, help="The agent that may run the plan.")
@click.option("--session", help="The session it may run in.")
@click.option("--user", help="The user it acts for.")
@click.option("--note", default="", help="Why (recorded).")
@click.option("--ttl", type=float, help="Seconds the plan stays valid (default and most: 900).")
@_as_option
def approve_plan(
    data: str,
    plan_file: Any,
    policies: tuple[str, ...],
    agent: str,
    session: str | None,
    user: str | None,
    note: str,
    ttl: float | None,
    who: str | None,
) -> None:
    """Approve an exact plan: PLAN_FILE is JSON, [{"tool": ..., "args": {...}}, ...]; each call
    may run once, in that session, before the plan expires."""
    from ringfence.core.policy.load import load_policy

    try:
        plan = json.loads(plan_file.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"plan is not valid JSON: {exc}", code="input.json") from None
    if not isinstance(plan, list) or not all(
        isinstance(c, dict)
        and isinstance(c.get("tool"), str)
        and isinstance(c.get("args", {}), dict)
        for c in plan
    ):
        raise InputError('plan must be a list of {"tool": ..., "args": {...}}', code="input.plan")
    calls = [(c.get("kind", "tool_call"), c["tool"], c.get("args", {})) for c in plan]
    version = load_policy(list(policies)).version
    with _answering(data) as queue:
        receipt = queue.approve_plan(
            calls,
            agent=agent,
            session=session,
            user=user,
            policy_version=version,
            approver=_who(who),
            note=note,
            ttl_s=ttl,
        )
    click.echo(
        f"approved a plan of {len(calls)} calls for {_clean(agent)} in session "
        f"{_clean(session or '-')}: request {receipt.request}, receipt {receipt.id}, "
        f"valid until {_when(receipt.expires_ns)}"
    )


@approvals.command()
@_data_option
@click.option(
    "--older-than",
    "older_than",
    callback=_parse_age,
    default="30d",
    show_default=True,
    help="Delete what ended longer ago than this (30d, 12h, 90m, 3600s).",
)
def prune(data: str, older_than: int) -> None:
    """Delete finished requests (denied, expired, cancelled, revoked, used, or approved with
    an expired receipt), their answers and redeemed steps, once they ended longer ago than
    --older-than and their answers are in the audit log.  Pending requests and unexpired
    approvals are never deleted; a request whose answer is not audited yet is kept."""
    from ringfence.runtime.approvals import open_approval_queue

    path = Path(data) / "approvals.sqlite"
    if not path.exists():
        raise InputError(f"no approval store at {path}", code="input.not_found")
    queue: Any = open_approval_queue(data, signing=False, retention_s=None)  # prunes below
    try:
        if queue.store.unaudited(1):
            _record(data, queue)  # what reaches the log now can go now
        pruned = queue.prune(older_than)
    finally:
        queue.store.close()
    click.echo(
        f"pruned {pruned.requests} requests that ended more than {_span(older_than)} ago "
        f"({pruned.answers} answers)"
    )
    if pruned.kept:
        click.echo(
            f"kept {pruned.kept} older requests: their answers are not in the audit log yet "
            "(the process holding the log records them; prune again after)",
            err=True,
        )


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

"""``ringfence kill`` / ``unkill`` / ``kills``: the kill switch from the command line.

Works on the controls store of a data folder (``--data``, default ``.ringfence``: the store
is ``controls/`` inside it) or on ``--store DIR`` when the agent processes share a controls
folder of their own.  Every process using that store refuses actions in a killed scope from
its next check on.  The kill is written to the data folder's audit log when no other process
holds it open; otherwise each process with controls on the same store records it when it
sees it.  Who did it is ``--as NAME`` or the operating-system user.
"""

from __future__ import annotations

import getpass
import json
import re
import sys
from datetime import UTC, datetime
from typing import Any

import click

from ringfence.errors import AuditError

DATA_HELP = "Ringfence data folder (holds controls/, audit/ and keys/)."
STORE_HELP = "Controls folder shared by the agent processes (default: DATA/controls)."
_HIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _clean(text: str) -> str:
    """``text`` with hidden and terminal-control characters shown as ``\\uXXXX``."""
    return _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _scope_options(fn: Any) -> Any:
    for name, what in (
        ("user", "every action on behalf of this user"),
        ("session", "every action in this session"),
        ("tool", "every call of this tool (globs: 'github__*')"),
        ("agent", "every action of this agent, and of agents it delegated to"),
    ):
        fn = click.option(f"--{name}", metavar="NAME", help=f"Kill {what}.")(fn)
    fn = click.option("--all", "everything", is_flag=True, help="Kill every action.")(fn)
    fn = click.option("--store", "store_dir", type=click.Path(), help=STORE_HELP)(fn)
    fn = click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)(fn)
    fn = click.option("--as", "who", help="Who is doing this (default: the OS user).")(fn)
    return click.option("--reason", default="", help="Why (recorded and shown in denials).")(fn)


def _scope(fields: dict[str, Any]) -> Any:
    from ringfence.core.killswitch import KillScope

    given = [(k, v) for k, v in fields.items() if v]
    if len(given) != 1:
        raise click.UsageError(
            "name exactly one scope: --agent, --tool, --session, --user or --all"
        )
    kind, value = given[0]
    return KillScope.of("all") if kind == "everything" else KillScope.of(kind, value)


def _open(data: str, store_dir: str | None) -> tuple[Any, Any, str]:
    """(controls, audit log or None, a note when the log is held elsewhere)."""
    from ringfence.runtime.controls import open_controls
    from ringfence.runtime.embedded import open_audit_log

    audit, note = None, ""
    try:
        audit = open_audit_log(data)
    except AuditError as exc:
        if exc.code != "audit.locked":
            raise
        note = (
            "the audit log is open in another process: every process with controls on this "
            "store records the change in its own log when it sees it"
        )
    try:
        controls = open_controls(data, store_dir=store_dir, audit=audit, watch_seconds=None)
    except BaseException:
        if audit is not None:
            audit.close()
        raise
    return controls, audit, note


def _finish(controls: Any, audit: Any, note: str) -> None:
    try:
        controls.close()
    finally:
        if audit is not None:
            audit.close()
    if note:
        click.echo(f"note: {note}", err=True)


@click.command()
@_scope_options
def kill(
    reason: str,
    who: str | None,
    data: str,
    store_dir: str | None,
    everything: bool,
    agent: str | None,
    tool: str | None,
    session: str | None,
    user: str | None,
) -> None:
    """Stop every action in a scope, in every process using the store, from its next check."""
    scope = _scope(
        {"agent": agent, "tool": tool, "session": session, "user": user, "everything": everything}
    )
    controls, audit, note = _open(data, store_dir)
    try:
        existing = next((k for k in controls.kills() if k.scope == scope), None)
        if existing is not None:
            click.echo(
                f"{scope} is already killed (kill {existing.id} by {_clean(existing.by)} "
                f"since {_when(existing.at_ns)})"
            )
            return
        made = controls.kill(scope, reason, who or getpass.getuser())
        click.echo(f"killed {_clean(str(scope))} (kill {made.id})")
        _cancel_approvals(data, made, audit)
    finally:
        _finish(controls, audit, note)


def _cancel_approvals(data: str, kill: Any, audit: Any) -> None:
    """Cancel the data folder's pending (and approved, unused) approval requests in the
    kill's scope, as a running agent with controls does when it sees the kill, so a kill
    made while no agent runs leaves nothing approvable behind.  The cancellations are
    written to the audit log when this command holds it (else queued for whoever opens it)."""
    from pathlib import Path

    from ringfence.core.approvals import Scope
    from ringfence.runtime.approvals import open_approval_queue

    if not (Path(data) / "approvals.sqlite").exists():
        return
    queue = open_approval_queue(data, signing=False)
    store: Any = queue.store  # the SQLite store: closed here
    try:
        scope = Scope.of(kill.scope.kind, kill.scope.value)
        cancelled = queue.cancel(scope, by=kill.by, note=f"kill {kill.id}: {kill.reason}")
        if cancelled:
            click.echo(f"cancelled {len(cancelled)} approval request(s) in that scope")
        if audit is not None:
            queue.record_answers(audit)
    finally:
        store.close()


@click.command()
@_scope_options
def unkill(
    reason: str,
    who: str | None,
    data: str,
    store_dir: str | None,
    everything: bool,
    agent: str | None,
    tool: str | None,
    session: str | None,
    user: str | None,
) -> None:
    """Lift the kill of exactly this scope (exit 1 if there is none)."""
    scope = _scope(
        {"agent": agent, "tool": tool, "session": session, "user": user, "everything": everything}
    )
    controls, audit, note = _open(data, store_dir)
    try:
        event = controls.unkill(scope, reason, who or getpass.getuser())
    finally:
        _finish(controls, audit, note)
    if event is None:
        click.echo(f"{_clean(str(scope))} is not killed")
        sys.exit(1)
    click.echo(f"lifted kill {event.kill_id} of {_clean(str(scope))}")


@click.command()
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
@click.option("--store", "store_dir", type=click.Path(), help=STORE_HELP)
@click.option("--history", is_flag=True, help="Every kill and unkill, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def kills(data: str, store_dir: str | None, history: bool, as_json: bool) -> None:
    """List the kills in force (or their history)."""
    import msgspec
    from rich.console import Console
    from rich.table import Table

    from ringfence.runtime.controls import open_controls

    controls = open_controls(data, store_dir=store_dir, watch_seconds=None)
    try:
        events = controls.store.events() if history else ()
        in_force = () if history else controls.kills()
    finally:
        controls.close()
    rows = events or in_force
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(rows), indent=2))
        return
    if not rows:
        click.echo("no kills" if history else "no kills in force")
        return
    if history:
        table = Table("#", "op", "scope", "kill", "by", "at (UTC)", "reason")
        for e in events:
            table.add_row(
                str(e.seq),
                e.op,
                _clean(str(e.scope)),
                e.kill_id,
                _clean(e.by),
                _when(e.at_ns),
                _clean(e.reason),
            )
    else:
        table = Table("scope", "kill", "by", "since (UTC)", "reason")
        for k in in_force:
            table.add_row(
                _clean(str(k.scope)), k.id, _clean(k.by), _when(k.at_ns), _clean(k.reason)
            )
    Console(markup=False, highlight=False).print(table)

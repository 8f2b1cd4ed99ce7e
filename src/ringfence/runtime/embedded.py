"""The embedded default: a policy file, a SQLite audit store in a folder, nothing to run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ringfence.core.policy.engine import Policy
from ringfence.core.policy.load import load_policy
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard import Enforcement, Guard
from ringfence.runtime.ports import Approver
from ringfence.stores.keys import load_or_create_signing_key
from ringfence.stores.sessions import SQLiteSessionStore
from ringfence.stores.sqlite import SQLiteAuditStore

__all__ = ["DEFAULT_DATA_DIR", "open_audit_log", "open_guard"]

DEFAULT_DATA_DIR = ".ringfence"


def open_audit_log(
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    *,
    durability: str = "process",
    checkpoint_every: int = 1000,
    checkpoint_seconds: float = 1.0,
) -> AuditLog:
    """The SQLite audit log in ``data_dir`` (created, with its signing key, if needed)."""
    folder = Path(data_dir)
    store = SQLiteAuditStore(folder / "audit", durability=durability)
    try:
        key = load_or_create_signing_key(folder / "keys")
        return AuditLog(
            store, key, checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds
        )
    except BaseException:
        store.close()
        raise


def open_guard(
    policy: Policy | str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    approver: Approver | None = None,
    agent: str = "anonymous",
    durability: str = "process",
    enforcement: Enforcement = Enforcement.ENFORCE,
    **guard_options: Any,
) -> Guard:
    """A Guard over ``policy`` (a Policy or policy file/folder) recording to ``data_dir``.

    Session state is kept in memory unless ``persistent_sessions=True`` puts it in
    ``data_dir/sessions.sqlite`` (shared by processes, kept across restarts; each update
    rewrites the session's whole state, so it costs more as a session's history grows).
    Kills and the policy's ``limits:`` live in ``data_dir/controls`` (``controls_dir=`` names
    another folder, to share them with processes that have their own data folders).
    ``approval_queue=True`` (with no ``approver``) sends require_approval decisions to the
    queue in ``data_dir/approvals.sqlite`` that ``ringfence approvals`` answers; the call
    waits ``approval_wait_s`` seconds (default: the queue's request timeout; 0: answer
    "pending" at once, and let the same call, retried once approved, redeem the receipt).
    A kill cancels the pending approvals in its scope.  With a QueueApprover (made here, or
    passed as ``approver``) every answer to the queue — given here, by ``ringfence approvals``
    in another process, by a kill or a timeout — is written to this Guard's audit log as an
    ``approval_answer`` record: those still unrecorded at once, later ones as they come
    (:meth:`QueueApprover.watch`), the rest when the Guard closes.
    """
    compiled = policy if isinstance(policy, Policy) else load_policy(policy)
    audit = open_audit_log(data_dir, durability=durability)
    if guard_options.pop("persistent_sessions", False):
        # Session state shared by every process using this folder and kept across restarts.
        try:
            guard_options["sessions"] = SQLiteSessionStore(Path(data_dir) / "sessions.sqlite")
        except BaseException:
            audit.close()
            raise
    if "controls" not in guard_options:
        # Kill switch and the policy's limits, shared by every process using the same
        # controls folder (data_dir/controls, or controls_dir=...).
        from ringfence.runtime.controls import open_controls

        try:
            guard_options["controls"] = open_controls(
                data_dir,
                compiled.spec.limit_set,
                store_dir=guard_options.pop("controls_dir", None),
                audit=audit,
            )
        except BaseException:
            audit.close()
            raise
    queue = None
    wait_s = guard_options.pop("approval_wait_s", None)
    if guard_options.pop("approval_queue", False) and approver is None:
        from ringfence.runtime.approvals import open_approval_queue
        from ringfence.runtime.approver import QueueApprover

        try:
            queue = open_approval_queue(Path(data_dir), signing=False)
        except BaseException:
            audit.close()
            raise
        approver = QueueApprover(queue, wait_s=wait_s, resources=compiled.resources_of)
    guard = Guard(
        compiled,
        audit=audit,
        approver=approver,
        agent=agent,
        enforcement=enforcement,
        clock=guard_options.pop("clock", time.time_ns),
        **guard_options,
    )
    if queue is not None:
        _cancel_on_kill(guard, queue, approver)
        close = getattr(queue.store, "close", None)
        if close is not None:
            guard.closing(close)
    if approver is not None:
        from ringfence.runtime.approver import QueueApprover

        if isinstance(approver, QueueApprover):  # record every answer (runtime/approver.py)
            approver.watch()
            guard.closing(approver.close)  # closers run last-first: before the store closes
    return guard


def _cancel_on_kill(guard: Guard, queue: Any, approver: Any) -> None:
    """A kill cancels the pending (and approved, unused) requests in its scope, and the
    cancellations are recorded at once."""
    if guard.controls is None:
        return
    from ringfence.core.approvals import Scope

    def cancel(kill: Any) -> None:
        scope = Scope.of(kill.scope.kind, kill.scope.value)
        if queue.cancel(scope, by=kill.by, note=f"kill {kill.id}: {kill.reason}"):
            approver.record_answers()

    guard.controls.on_kill(cancel)

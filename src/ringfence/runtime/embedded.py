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
    return Guard(
        compiled,
        audit=audit,
        approver=approver,
        agent=agent,
        enforcement=enforcement,
        clock=guard_options.pop("clock", time.time_ns),
        **guard_options,
    )

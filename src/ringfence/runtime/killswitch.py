"""The kill switch of one process: the kills in force, the API, on_kill hooks, audit records.

:class:`ringfence.runtime.controls.Controls` owns one and re-reads it (:meth:`KillSwitch.load`)
whenever the store's generation moves; then :meth:`KillSwitch.announce` writes a ``control``
audit record (``observed: true``) and calls the on_kill hooks for each kill history entry
made elsewhere.  Entries made here are recorded (``observed: false``) and announced by
:meth:`KillSwitch.kill` / :meth:`KillSwitch.unkill` themselves, exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from ringfence.core.audit.control import control_record
from ringfence.core.killswitch import Kill, KillEvent, KillScope, KillSet
from ringfence.errors import AuditError
from ringfence.runtime.ids import IdSource
from ringfence.runtime.ports import Clock, KillSwitchStore

if TYPE_CHECKING:
    from ringfence.runtime.audit import AuditLog

__all__ = ["KillSwitch"]

log = logging.getLogger("ringfence.controls")


class KillSwitch:
    """Kills of one store as this process sees them; see the module docstring.

    ``lock`` is the owner's refresh lock and ``refresh`` its refresh: a change made here is
    read back through the same path as one made elsewhere.
    """

    def __init__(
        self,
        store: KillSwitchStore,
        *,
        audit: AuditLog | None,
        clock: Clock,
        ids: IdSource,
        lock: threading.RLock,
        refresh: Callable[[], None],
    ) -> None:
        self.store = store
        self.audit = audit
        self._clock = clock
        self._ids = ids
        self._lock = lock
        self._refresh = refresh
        self._hooks: list[Callable[[Kill], None]] = []
        self._mine: set[int] = set()
        self.in_force = KillSet()
        history = store.events()
        self._seq = history[-1].seq if history else 0

    def load(self) -> list[tuple[KillEvent, Kill | None]]:
        """Re-read the kills in force (the owner's lock is held); the history entries made
        elsewhere since the last load, each with its kill if still in force."""
        kills = self.store.kills()
        events = self.store.events(self._seq)
        self.in_force = KillSet(kills)
        if events:
            self._seq = events[-1].seq
        by_id = {k.id: k for k in kills}
        out = []
        for event in events:
            if event.seq in self._mine:
                self._mine.discard(event.seq)
            else:
                out.append((event, by_id.get(event.kill_id)))
        return out

    def announce(self, seen: list[tuple[KillEvent, Kill | None]]) -> None:
        """Record and hook entries made elsewhere (outside the owner's lock)."""
        for event, kill in seen:
            self._audit(event, observed=True)
            if event.op == "kill":
                self._fire(
                    kill or Kill(event.scope, event.kill_id, event.reason, event.by, event.at_ns)
                )

    def kill(self, scope: KillScope, reason: str, by: str) -> Kill:
        """See :meth:`ringfence.runtime.controls.Controls.kill`."""
        kill = Kill(scope, self._ids(), reason, by, self._clock())
        with self._lock:  # the watcher must not take our own entry for someone else's
            event = self.store.add_kill(kill)
            if event is not None:
                self._mine.add(event.seq)
        if event is None:
            current = next((k for k in self.store.kills() if k.scope == scope), None)
            return current or kill
        self._refresh()
        self._fire(kill)
        self._audit(event, observed=False)
        return kill

    def unkill(self, scope: KillScope, reason: str, by: str) -> KillEvent | None:
        """See :meth:`ringfence.runtime.controls.Controls.unkill`."""
        with self._lock:
            event = self.store.remove_kill(scope, by=by, reason=reason, at_ns=self._clock())
            if event is not None:
                self._mine.add(event.seq)
        if event is not None:
            self._refresh()
            self._audit(event, observed=False)
        return event

    def on_kill(self, hook: Callable[[Kill], None]) -> None:
        """See :meth:`ringfence.runtime.controls.Controls.on_kill`."""
        self._hooks.append(hook)

    def _fire(self, kill: Kill) -> None:
        for hook in list(self._hooks):
            try:
                hook(kill)
            except Exception:
                log.exception("on_kill hook failed for kill %s", kill.id)

    def _audit(self, event: KillEvent, *, observed: bool) -> None:
        if self.audit is None:
            return
        record = control_record(event, time_ns=self._clock(), observed=observed)
        try:
            self.audit.append(msgspec.to_builtins(record))
        except AuditError as exc:
            if observed:
                log.error(
                    "could not record %s %s in the audit log: %s", event.op, event.kill_id, exc
                )
                return
            raise AuditError(
                f"{event.op} {event.kill_id} of {event.scope} is in force, but the audit log "
                f"could not record it: {exc.message}"
            ) from exc

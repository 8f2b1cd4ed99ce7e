"""Kill switch values: what a kill covers, and the kills and their history as data.

A kill stops every action in its scope until it is lifted: an agent (also when it appears
in an action's delegation chain, so sub-agents acting for it stop too), a tool, a session,
a user, or everything.  A scope's value may be a name glob (``github__*``: every tool of
one MCP server).  Only one kill per scope is active; killing it again keeps the first.

Pure: ids and times come in from the caller (``ringfence.runtime.controls``).
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

from ringfence.core.policy.globs import is_glob, name_regex
from ringfence.errors import InputError

__all__ = ["ALL", "Kill", "KillEvent", "KillKind", "KillScope", "KillSet"]

ALL = "*"
MAX_VALUE = 512
_VALUE = re.compile(r"^[^\x00-\x1f\x7f]+$")


class KillKind(StrEnum):
    """What a kill is scoped to."""

    AGENT = "agent"
    TOOL = "tool"
    SESSION = "session"
    USER = "user"
    ALL = "all"


class KillScope(msgspec.Struct, frozen=True, gc=False):
    """``kind`` and ``value`` (an exact name or a name glob; ``*`` for ``all``)."""

    kind: str
    value: str

    @classmethod
    def of(cls, kind: str, value: str | None = None) -> KillScope:
        """A checked scope; InputError ``input.kill_scope`` if it is not one."""
        try:
            k = KillKind(kind)
        except ValueError:
            raise InputError(
                f"unknown kill scope {kind!r} (use {', '.join(KillKind)})", code="input.kill_scope"
            ) from None
        if k is KillKind.ALL:
            if value not in (None, ALL):
                raise InputError("a kill of everything takes no value", code="input.kill_scope")
            return cls(k.value, ALL)
        if not value or len(value) > MAX_VALUE or not _VALUE.match(value):
            raise InputError(
                f"a {k.value} kill needs a name (1-{MAX_VALUE} printable characters)",
                code="input.kill_scope",
            )
        if value.strip("*?") == "":
            raise InputError(
                f"{value!r} would match every {k.value}; use the 'all' scope for that",
                code="input.kill_scope",
            )
        return cls(k.value, value)

    def __str__(self) -> str:
        return "everything" if self.kind == KillKind.ALL else f"{self.kind}={self.value}"


class Kill(msgspec.Struct, frozen=True, gc=False):
    """An active kill: its scope, id, why, who made it, and when (ns since the epoch)."""

    scope: KillScope
    id: str
    reason: str
    by: str
    at_ns: int


class KillEvent(msgspec.Struct, frozen=True, gc=False):
    """One entry of the kill history: ``op`` is ``kill`` or ``unkill``; ``seq`` orders them.

    For an unkill, ``kill_id`` is the id of the kill lifted and ``reason``/``by``/``at_ns``
    are the unkill's own.
    """

    seq: int
    op: str
    scope: KillScope
    kill_id: str
    reason: str
    by: str
    at_ns: int


class KillSet:
    """The active kills, indexed for the per-decision check.

    Exact values are dictionary lookups; globs are tried only when some are active.  An
    empty set answers :meth:`hit` with one truth test.
    """

    __slots__ = ("_all", "_exact", "_globs", "kills")

    def __init__(self, kills: tuple[Kill, ...] = ()) -> None:
        self.kills = kills
        self._all: Kill | None = None
        self._exact: dict[str, dict[str, Kill]] = {k.value: {} for k in KillKind}
        self._globs: list[tuple[str, re.Pattern[str], Kill]] = []
        for kill in kills:
            kind, value = kill.scope.kind, kill.scope.value
            if kind == KillKind.ALL:
                self._all = kill
            elif is_glob(value):
                self._globs.append((kind, name_regex(value), kill))
            else:
                self._exact[kind][value] = kill

    def __bool__(self) -> bool:
        return bool(self.kills)

    def hit(
        self,
        agent: str,
        tool: str,
        session: str | None,
        user: str | None,
        delegation: tuple[str, ...] = (),
    ) -> Kill | None:
        """The kill that stops an action with these fields, or None."""
        if self._all is not None:
            return self._all
        exact = self._exact
        kill = exact["agent"].get(agent) or exact["tool"].get(tool)
        if kill is None and session is not None:
            kill = exact["session"].get(session)
        if kill is None and user is not None:
            kill = exact["user"].get(user)
        if kill is None and delegation:
            agents = exact["agent"]
            kill = next((agents[a] for a in delegation if a in agents), None)
        if kill is not None or not self._globs:
            return kill
        fields = {"agent": (agent, *delegation), "tool": (tool,)}
        if session is not None:
            fields["session"] = (session,)
        if user is not None:
            fields["user"] = (user,)
        for kind, regex, glob_kill in self._globs:
            if any(regex.match(v) for v in fields.get(kind, ())):
                return glob_kill
        return None

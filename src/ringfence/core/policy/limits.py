"""The policy's ``limits:`` section: rate limits, budgets, circuit breakers, loop limit.

::

    limits:
      rate:
        - id: email-per-agent
          per: agent                 # agent | session | tool | user | global: one bucket each
          tool: send_email           # optional scope: tool, kind, agent, user (globs)
          limit: 10
          window: 60s                # ms, s, m, h, d; or a whole number of seconds
          burst: 20                  # optional: the bucket's capacity (default: limit)
      budgets:
        - id: session-spend
          per: session               # session | agent | user | global
          calls: 200                 # any of calls, tokens, cost
          tokens: 100000
          cost: 5.00
          window: 1d                 # optional: starts afresh every window (default: never)
      breakers:
        - id: github
          tool: "github__*"          # required: the tools it guards
          per: global                # global (one breaker for all of them) | tool
          failure_rate: 0.5          # open at this share of failed or slow calls ...
          min_calls: 10              # ... once this many finished in the window
          window: 60s
          slow: 5s                   # optional: a call slower than this counts as failed
          open_for: 30s              # then half-open: let `probes` calls through
          probes: 1
      loop:
        max_repeats: 3               # the session's state.repeats, as a limit

Several files may each have a ``limits:`` section; ids must be unique within ``rate``,
``budgets`` and ``breakers`` across all of them, and ``loop`` may be given once.  Errors name
the file, line and field like the rest of the parser.  The semantics are in
:mod:`ringfence.core.limits` and docs/controls.md.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ringfence.core.limits import (
    MICROS,
    PER,
    BreakerSpec,
    Budget,
    LimitSet,
    LoopLimit,
    RateLimit,
    Selector,
)
from ringfence.core.policy.yamlsrc import Located, Path
from ringfence.errors import PolicyError

__all__ = ["parse_duration", "parse_limits"]

_SECTION_KEYS = {"rate", "budgets", "breakers", "loop"}
_SCOPE_KEYS = {"tool", "kind", "agent", "user"}
_RATE_KEYS = {"id", "per", "limit", "window", "burst", "description", *_SCOPE_KEYS}
_BUDGET_KEYS = {"id", "per", "calls", "tokens", "cost", "window", "description", "agent", "user"}
_BREAKER_KEYS = {
    "id",
    "per",
    "tool",
    "kind",
    "failure_rate",
    "min_calls",
    "window",
    "slow",
    "open_for",
    "probes",
    "description",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9_*?\[\].:/@-][A-Za-z0-9_*?\[\].:/@+-]{0,255}$")
_DURATION = re.compile(r"^([1-9][0-9]{0,9})(ms|s|m|h|d)$")
_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
MAX_DURATION_NS = 366 * 86400 * 10**9
MAX_COUNT = 1 << 40
MAX_UNITS = 1 << 62  # burst x window in microseconds: bucket levels stay within 64 bits


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def parse_duration(doc: Located, value: Any, path: Path) -> tuple[int, str]:
    """(ns, text as written) of ``60s``/``500ms``/``5m``/``2h``/``1d`` or whole seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        ns, text = value * 10**9, f"{value}s"
    elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
        ns, text = int(m.group(1)) * _UNITS[m.group(2)], value.strip()
    else:
        raise doc.error(
            path,
            f"expected a duration such as 500ms, 60s, 5m, 1h or 1d, got {value!r}",
            "policy.type",
        )
    if ns > MAX_DURATION_NS:
        raise doc.error(path, "a duration may be at most 366d", "policy.type")
    return ns, text


class _Section:
    """Typed accessors over one document's ``limits:`` section."""

    def __init__(self, doc: Located) -> None:
        self.doc = doc

    def fail(self, path: Path, message: str, code: str = "policy.invalid") -> PolicyError:
        return self.doc.error(path, message, code)

    def mapping(self, value: Any, path: Path, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}", "policy.type")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*path, key),
                    f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})",
                    "policy.unknown_key",
                )
        return value

    def items(self, value: Any, path: Path) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}", "policy.type")
        return value

    def count(self, body: dict[str, Any], key: str, path: Path, default: int | None) -> int:
        if key not in body:
            if default is None:
                raise self.fail(path, f"needs {key!r}", "policy.missing_key")
            return default
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_COUNT:
            raise self.fail(
                (*path, key), f"{key!r} is a whole number from 1 to {MAX_COUNT}", "policy.type"
            )
        return value

    def ident(self, body: dict[str, Any], path: Path, seen: dict[str, int | None]) -> str:
        if "id" not in body:
            raise self.fail(path, "needs 'id'", "policy.missing_key")
        value = body["id"]
        if not isinstance(value, str) or not _ID.match(value):
            raise self.fail((*path, "id"), f"{value!r} is not a valid id", "policy.type")
        if value in seen:
            raise self.fail(
                (*path, "id"),
                f"id {value!r} is already used (line {seen[value]})",
                "policy.duplicate_limit",
            )
        seen[value] = self.doc.line(path)
        if "description" in body and not isinstance(body["description"], str):
            raise self.fail((*path, "description"), "expected a string", "policy.type")
        return value

    def per(self, body: dict[str, Any], path: Path, allowed: tuple[str, ...], default: str) -> str:
        value = body.get("per", default)
        if value not in allowed:
            raise self.fail(
                (*path, "per"),
                f"'per' is one of {', '.join(allowed)}, got {value!r}",
                "policy.type",
            )
        return str(value)

    def names(self, body: dict[str, Any], key: str, path: Path) -> tuple[str, ...] | None:
        if key not in body:
            return None
        raw = body[key]
        values = [raw] if isinstance(raw, str) else raw
        if not isinstance(values, list) or not values:
            raise self.fail(
                (*path, key), f"expected a name or a list of names, got {_kind(raw)}", "policy.type"
            )
        for i, v in enumerate(values):
            where = (*path, key) if isinstance(raw, str) else (*path, key, i)
            if not isinstance(v, str) or not _NAME.match(v):
                raise self.fail(where, f"{v!r} is not a name or name glob", "policy.type")
        return tuple(values)

    def selector(self, body: dict[str, Any], path: Path) -> Selector:
        return Selector(
            tools=self.names(body, "tool", path),
            kinds=self.names(body, "kind", path),
            agents=self.names(body, "agent", path),
            users=self.names(body, "user", path),
        )

    def rate(self, raw: Any, path: Path, seen: dict[str, int | None]) -> RateLimit:
        body = self.mapping(raw, path, _RATE_KEYS)
        rid = self.ident(body, path, seen)
        per = self.per(body, path, PER, "global")
        limit = self.count(body, "limit", path, None)
        if "window" not in body:
            raise self.fail(path, "needs 'window' (limit calls per window)", "policy.missing_key")
        window_ns, text = parse_duration(self.doc, body["window"], (*path, "window"))
        burst = self.count(body, "burst", path, limit)
        if burst * (window_ns // 1000) > MAX_UNITS:
            raise self.fail((*path, "burst"), "burst x window is too large", "policy.type")
        return RateLimit(rid, per, limit, window_ns, burst, self.selector(body, path), text)

    def budget(self, raw: Any, path: Path, seen: dict[str, int | None]) -> Budget:
        body = self.mapping(raw, path, _BUDGET_KEYS)
        bid = self.ident(body, path, seen)
        per = self.per(body, path, ("session", "agent", "user", "global"), "session")
        if not {"calls", "tokens", "cost"} & body.keys():
            raise self.fail(path, "a budget needs calls, tokens or cost", "policy.missing_key")
        calls = self.count(body, "calls", path, 0) or None
        tokens = self.count(body, "tokens", path, 0) or None
        cost = None
        if "cost" in body:
            cost = self.cost(body["cost"], (*path, "cost"))
        window_ns, text = (None, "")
        if "window" in body:
            window_ns, text = parse_duration(self.doc, body["window"], (*path, "window"))
        select = Selector(
            agents=self.names(body, "agent", path), users=self.names(body, "user", path)
        )
        return Budget(bid, per, calls, tokens, cost, window_ns, select, text)

    def cost(self, value: Any, path: Path) -> int:
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if not bad and isinstance(value, float) and not math.isfinite(value):
            bad = True
        if not bad:
            try:
                micros = Decimal(str(value)) * MICROS
            except InvalidOperation:
                bad = True
        if bad or micros <= 0 or micros != micros.to_integral_value() or micros > MAX_COUNT:
            raise self.fail(
                path, "'cost' is a positive amount with at most 6 decimals", "policy.type"
            )
        return int(micros)

    def breaker(self, raw: Any, path: Path, seen: dict[str, int | None]) -> BreakerSpec:
        body = self.mapping(raw, path, _BREAKER_KEYS)
        bid = self.ident(body, path, seen)
        if "tool" not in body:
            raise self.fail(
                path, "a breaker needs 'tool': the tools it guards", "policy.missing_key"
            )
        per = self.per(body, path, ("global", "tool"), "global")
        rate = body.get("failure_rate", 0.5)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise self.fail(
                (*path, "failure_rate"), "'failure_rate' is a number in (0, 1]", "policy.type"
            )
        window_ns = parse_duration(self.doc, body.get("window", "60s"), (*path, "window"))[0]
        open_ns = parse_duration(self.doc, body.get("open_for", "30s"), (*path, "open_for"))[0]
        slow_ns = None
        if "slow" in body:
            slow_ns = parse_duration(self.doc, body["slow"], (*path, "slow"))[0]
        return BreakerSpec(
            bid,
            per,
            float(rate),
            self.count(body, "min_calls", path, 10),
            window_ns,
            open_ns,
            slow_ns,
            self.count(body, "probes", path, 1),
            Selector(tools=self.names(body, "tool", path), kinds=self.names(body, "kind", path)),
        )

    def loop(self, raw: Any, path: Path) -> LoopLimit:
        body = self.mapping(raw, path, {"max_repeats"})
        return LoopLimit(self.count(body, "max_repeats", path, None))


def parse_limits(documents: list[Located]) -> LimitSet:
    """The ``limits:`` sections of every document, merged."""
    rates: list[RateLimit] = []
    budgets: list[Budget] = []
    breakers: list[BreakerSpec] = []
    loop: LoopLimit | None = None
    seen: dict[str, dict[str, int | None]] = {"rate": {}, "budgets": {}, "breakers": {}}
    for doc in documents:
        top = doc.value
        if not isinstance(top, dict) or "limits" not in top:
            continue
        s = _Section(doc)
        section = s.mapping(top["limits"], ("limits",), _SECTION_KEYS)
        for i, raw in enumerate(s.items(section.get("rate", []), ("limits", "rate"))):
            rates.append(s.rate(raw, ("limits", "rate", i), seen["rate"]))
        for i, raw in enumerate(s.items(section.get("budgets", []), ("limits", "budgets"))):
            budgets.append(s.budget(raw, ("limits", "budgets", i), seen["budgets"]))
        for i, raw in enumerate(s.items(section.get("breakers", []), ("limits", "breakers"))):
            breakers.append(s.breaker(raw, ("limits", "breakers", i), seen["breakers"]))
        if "loop" in section:
            if loop is not None:
                raise s.fail(("limits", "loop"), "'loop' is given in more than one file")
            loop = s.loop(section["loop"], ("limits", "loop"))
    return LimitSet(tuple(rates), tuple(budgets), tuple(breakers), loop)

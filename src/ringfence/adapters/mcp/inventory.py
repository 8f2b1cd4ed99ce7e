"""``ringfence inventory``: every configured server and every tool it was seen to offer.

Read from the configuration, the pin file (what each server last listed, and the approval
state) and the policy (which rules can reach each tool) — no server is contacted, so it
works while the gateway runs elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ringfence.adapters.mcp.config import SEPARATOR, GatewayConfig
from ringfence.adapters.mcp.pinstore import load_pins
from ringfence.core.action import ActionKind
from ringfence.core.policy.engine import Policy
from ringfence.core.policy.globs import names_match

__all__ = ["build_inventory"]


def build_inventory(config: GatewayConfig, policy: Policy) -> list[dict[str, Any]]:
    """One row per tool (or per server never seen), sorted by server and tool."""
    pins = load_pins(config.pins_path, missing_ok=True)
    rows: list[dict[str, Any]] = []
    for name, server in sorted(config.servers.items()):
        base = {
            "server": name,
            "transport": server.transport,
            "target": server.command if server.command is not None else server.url,
        }
        sp = pins.servers.get(name)
        if sp is None or not sp.tools:
            rows.append(
                {
                    **base,
                    "tool": None,
                    "exposed": None,
                    "status": "never seen",
                    "digest": None,
                    "first_seen": None,
                    "last_changed": None,
                    "rules": [],
                    "reason": None,
                }
            )
            continue
        for tool, record in sorted(sp.tools.items()):
            status, reason = sp.status(tool)
            exposed = f"{name}{SEPARATOR}{tool}"
            rows.append(
                {
                    **base,
                    "tool": tool,
                    "exposed": exposed,
                    "status": "removed" if record.removed_at else str(status),
                    "digest": record.observed.digest,
                    "approved_digest": record.pinned.digest if record.pinned else None,
                    "first_seen": _iso(record.first_seen),
                    "last_changed": _iso(record.last_changed),
                    "rules": _covering(policy, exposed),
                    "reason": reason,
                }
            )
    return rows


def _covering(policy: Policy, exposed: str) -> list[str]:
    return [
        f"{r.id} ({r.effect.value})"
        for r in policy.rules
        if (r.kinds is None or ActionKind.TOOL_CALL in r.kinds)
        and (r.tools is None or names_match(r.tools, exposed))
    ]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")

"""``ringfence gateway run|diff|approve`` and ``ringfence inventory``: the MCP gateway."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from ringfence.errors import ConfigError

CONFIG_HELP = "Gateway configuration file (YAML)."


def _config(path: str) -> Any:
    try:
        from ringfence.adapters.mcp.config import load_config
    except ImportError as exc:  # the SDK is an optional extra
        raise ConfigError(
            f"the MCP gateway needs the 'mcp' extra: pip install 'ringfence[mcp]' ({exc.name})",
            code="config.missing_extra",
        ) from None
    return load_config(path)


@click.group()
def gateway() -> None:
    """An MCP proxy: every tool call checked by the policy and recorded before it goes on."""


@gateway.command()
@click.option("--config", "config_path", required=True, type=click.Path(), help=CONFIG_HELP)
@click.option("--http", is_flag=True, help="Serve Streamable HTTP (the config's 'listen').")
def run(config_path: str, http: bool) -> None:
    """Serve MCP clients on stdio (default; a client launches this) or over HTTP."""
    import importlib.util

    import anyio

    from ringfence.adapters.mcp.config import HttpListen
    from ringfence.adapters.mcp.run import serve_http, serve_stdio

    config = _config(config_path)
    # uvloop (in the mcp extra) halves the event loop's own cost per message; without it,
    # the standard loop serves the same.
    loop = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}
    if http:
        if config.listen is None:
            import msgspec

            config = msgspec.structs.replace(config, listen=HttpListen())
        anyio.run(serve_http, config, backend_options=loop)
    else:
        anyio.run(serve_stdio, config, backend_options=loop)


@gateway.command()
@click.option("--config", "config_path", required=True, type=click.Path(), help=CONFIG_HELP)
@click.argument("server", required=False)
def diff(config_path: str, server: str | None) -> None:
    """Show what changed in quarantined tools: approved version against the one observed."""
    from ringfence.adapters.mcp.pins import approved_surface, observed_surface
    from ringfence.adapters.mcp.pinstore import load_pins
    from ringfence.adapters.mcp.surface import diff_surfaces

    config = _config(config_path)
    pins = load_pins(config.pins_path, missing_ok=True)
    names = [server] if server else sorted(pins.servers)
    shown = False
    for name in names:
        if name not in pins.servers:
            raise ConfigError(f"no pins for server {name!r} in {config.pins_path}")
        d = diff_surfaces(approved_surface(pins, name), observed_surface(pins, name))
        if not d.empty:
            click.echo(d.render())
            shown = True
    if not shown:
        click.echo("no changes: every observed tool matches its approved version")


@gateway.command()
@click.option("--config", "config_path", required=True, type=click.Path(), help=CONFIG_HELP)
@click.option("--digest", help="Approve only if the observed version has this digest.")
@click.argument("server")
@click.argument("tool", required=False)
def approve(config_path: str, server: str, tool: str | None, digest: str | None) -> None:
    """Accept the observed version of TOOL (or, without TOOL, the server's instructions)."""
    from ringfence.adapters.mcp.pins import approve as approve_pin
    from ringfence.adapters.mcp.pinstore import load_pins, save_pins

    config = _config(config_path)
    pins = load_pins(config.pins_path)
    pins = approve_pin(pins, server, tool, digest, datetime.now(UTC))
    save_pins(config.pins_path, pins)
    what = f"tool {tool!r}" if tool else "instructions"
    click.echo(f"approved {what} of server {server!r}; a running gateway uses it on the next call")


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(), help=CONFIG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inventory(config_path: str, as_json: bool) -> None:
    """Servers, tools, digests, first seen / last changed, pin status, covering policy rules."""
    from ringfence.adapters.mcp.inventory import build_inventory
    from ringfence.core.policy.load import load_policy

    config = _config(config_path)
    rows = build_inventory(config, load_policy(config.path(config.policy)))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"MCP inventory ({config.pins_path})")
    for col in (
        "server",
        "transport",
        "tool",
        "status",
        "digest",
        "first seen",
        "last changed",
        "rules",
    ):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["server"],
            r["transport"],
            r["tool"] or "-",
            r["status"],
            (r["digest"] or "-")[:19],
            r["first_seen"] or "-",
            r["last_changed"] or "-",
            ", ".join(r["rules"]) or "(none: default deny)",
        )
    Console(file=sys.stdout, width=200).print(table)

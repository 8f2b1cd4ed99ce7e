"""``ringfence owasp``: the OWASP Agentic Top 10 coverage of a policy and its configuration."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click


@click.command()
@click.option("-p", "--policy", "policy_path", type=click.Path(), help="Policy file or folder.")
@click.option("--gateway", "gateway_path", type=click.Path(), help="MCP gateway configuration.")
@click.option("--approver", is_flag=True, help="An approver answers require_approval decisions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def owasp(policy_path: str | None, gateway_path: str | None, approver: bool, as_json: bool) -> None:
    """Which rules and controls of the LOADED policy and configuration address each OWASP
    Agentic Top 10 risk (ASI01-ASI10), what is not covered, and where a test shows the block."""
    from ringfence.core.policy.coverage import Features, owasp_coverage
    from ringfence.core.policy.load import load_policy
    from ringfence.errors import ConfigError

    features = Features(approver=approver)
    if gateway_path is not None:
        from ringfence.cli.gateway import _config

        config = _config(gateway_path)
        features = Features(
            gateway=True,
            pinning=config.pinning,
            scan=config.scan,
            approver=True,  # the gateway's approval queue (ringfence approvals)
            kill_switch=True,
            secrets=config.secrets is not None,
            identity=config.identity.verify,  # client credentials verified on every request
        )
        policy_path = policy_path or str(config.path(config.policy))
    if policy_path is None:
        raise ConfigError("give a policy (-p) or a gateway configuration (--gateway)")
    items = owasp_coverage(load_policy(policy_path), features)
    if as_json:
        click.echo(json.dumps([{**asdict(i), "status": i.status} for i in items], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "risk",
        "status",
        "rules and controls",
        "not covered",
        "shown by",
        title="OWASP Agentic Top 10 (2026)",
    )
    colours = {"covered": "green", "partial": "yellow", "not covered": "red"}
    for i in items:
        table.add_row(
            f"{i.risk} {i.title}",
            f"[{colours[i.status]}]{i.status}[/]",
            "\n".join(i.rules + i.controls) or "-",
            "\n".join(i.gaps) or "-",
            "\n".join(i.tests) or "-",
        )
    Console(file=sys.stdout, width=220).print(table)

"""``ringfence eval``: replay the scenario suite through a policy and report both numbers.

Exit 0 when the targets are met (attacked sessions stopped, benign sessions fully allowed),
1 when not; 2 for unusable input (a policy or scenario file that does not load).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ringfence.eval.runner import Summary


@click.command(name="eval")
@click.option(
    "--policy",
    "-p",
    "policy_path",
    type=click.Path(exists=True),
    help="Policy file or folder (default: the default pack, every family).",
)
@click.option(
    "--scenarios",
    "scenarios_path",
    type=click.Path(exists=True),
    help="Scenario file or folder (default: the built-in suite).",
)
@click.option(
    "--internal-domain",
    "internal_domains",
    multiple=True,
    help="For the default pack: the organisation's e-mail domain (repeatable; default: the "
    "built-in suite's organisation).",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="For the default pack: a host HTTP writes may go to (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def eval_(
    policy_path: str | None,
    scenarios_path: str | None,
    internal_domains: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
    as_json: bool,
) -> None:
    """Replay scripted agent sessions (benign and attacked) through a policy: the share of
    benign sessions fully allowed, with no deny, and of attacked sessions stopped at or
    before their first harmful call.  Approvals are refused (no approver)."""
    from ringfence.core.policy.load import PolicyErrors, load_policy
    from ringfence.errors import InputError
    from ringfence.eval import (
        SUITE_ALLOWED_HOSTS,
        SUITE_INTERNAL_DOMAINS,
        default_policy,
        load_scenarios,
        run_suite,
    )

    if policy_path is not None and (internal_domains or allowed_hosts):
        raise InputError(
            "--internal-domain and --allowed-host apply to the default pack, not to --policy",
            code="input.usage",
        )
    scenarios = load_scenarios(scenarios_path)
    try:
        policy = (
            load_policy(policy_path)
            if policy_path is not None
            else default_policy(
                internal_domains or SUITE_INTERNAL_DOMAINS, allowed_hosts or SUITE_ALLOWED_HOSTS
            )
        )
    except PolicyErrors as exc:
        for err in exc.errors:
            click.echo(f"error[{err.code}]: {err.message}", err=True)
        sys.exit(2)
    summary = run_suite(policy, scenarios)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print(summary)
    sys.exit(0 if summary.targets_met else 1)


def _print(summary: Summary) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ringfence.eval.report import explain

    table = Table(title="Scenario suite")
    for col in ("scenario", "kind", "attack", "result", "what happened"):
        table.add_column(col, overflow="fold")
    for r in summary.results:
        sc = r.scenario
        attack = "-" if sc.attack is None else f"{sc.attack.injection} → {sc.attack.harm}"
        if r.passed:
            mark = "[green]ok[/]"
        elif not sc.attacked and not r.denied:
            mark = "[yellow]approval[/]"
        else:
            mark = "[red]FAIL[/]"
        table.add_row(sc.id, sc.variant, attack, mark, escape(explain(r)))
    console = Console(file=sys.stdout, width=max(Console().width, 160))
    console.print(table)
    for line in summary.lines():
        console.print(escape(line))

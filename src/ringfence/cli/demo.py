"""``ringfence demo``: the scripted agent, live, then the audit log verified and tampered."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    help="Where to put the workspace and log (default: a new temporary folder).",
)
@click.option(
    "--mcp",
    is_flag=True,
    help="The MCP gateway demo: a scripted MCP client, real MCP servers, a rug pull caught.",
)
def demo(workdir: str | None, mcp: bool) -> None:
    """Run a scripted agent (no LLM) with real tools under an example policy, show every
    decision, verify the audit log, then show that a tampered copy fails verification.

    With --mcp: the same story through ``ringfence gateway`` in front of real MCP servers."""
    if mcp:
        from ringfence.cli.demo_mcp import mcp_demo

        mcp_demo(workdir)
        return
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from ringfence.demo.script import AGENT, REQUEST, Step, run_agent, tamper, verify

    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=170)
    root = Path(workdir or tempfile.mkdtemp(prefix="ringfence-demo-"))
    console.print(f"[bold]Agent[/] {AGENT}\n[bold]Task[/]  {REQUEST}\n[bold]Folder[/] {root}\n")
    table = Table("#", "agent", "tool", "key argument", "effect", "rule", "reason / result")
    table.columns[6].overflow = "fold"
    colours = {"allow": "green", "deny": "red", "require_approval": "yellow"}
    counts: dict[str, int] = {}

    def show(step: Step) -> None:
        counts[step.effect] = counts.get(step.effect, 0) + 1
        colour = colours.get(step.effect, "white")
        table.add_row(
            str(table.row_count + 1),
            "report-writer",
            step.tool,
            step.argument[:48],
            f"[{colour}]{step.effect}[/]",
            step.rule,
            (step.reason + " " + step.detail).strip(),
        )

    with Live(table, console=console, refresh_per_second=8):
        data_dir = run_agent(root, show)
    console.print(
        "\n"
        + "  ".join(f"{n} {effect}" for effect, n in sorted(counts.items()))
        + "   (approvals were answered automatically by the demo's stand-in approver)\n"
    )
    report = verify(data_dir)
    if report.ok:
        console.print(
            f"[green]audit verify: OK[/] — {report.records} records, {report.checkpoints} signed "
            f"checkpoints, root {report.root[:16]}…"
        )
    else:
        console.print(f"[red]audit verify: FAILED[/] {report.problems}")
    seq, tampered = tamper(data_dir, root / "tampered")
    if tampered.ok:
        console.print("[red]tampered copy verified — this must not happen[/]")
    else:
        console.print(
            f"[bold]tampered copy[/] (record {seq}: a deny rewritten as allow): "
            f"[red]FAILED as it should[/] — {tampered.problems[0]}"
        )
    console.print(
        f"\nInspect it yourself:  ringfence audit tail --data {data_dir}\n"
        f"                      ringfence audit verify --data {data_dir}"
    )
    sys.exit(0 if report.ok and not tampered.ok else 1)

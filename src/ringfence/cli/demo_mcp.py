"""``ringfence demo --mcp``: the gateway demo, rendered (the script is in demo/mcp_demo.py)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio


def mcp_demo(workdir: str | None) -> None:
    """Run the gateway demo twice (before and after the rug pull), then verify the log."""
    from rich.console import Console
    from rich.table import Table

    from ringfence.adapters.mcp.config import load_config
    from ringfence.adapters.mcp.pins import approved_surface, observed_surface
    from ringfence.adapters.mcp.pinstore import load_pins
    from ringfence.adapters.mcp.surface import diff_surfaces
    from ringfence.demo.mcp_demo import Call, prepare, run_session
    from ringfence.runtime.embedded import open_audit_log

    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=170)
    root = Path(workdir or tempfile.mkdtemp(prefix="ringfence-mcp-demo-"))
    config_path = prepare(root)
    ws = root / "workspace"
    console.print(
        f"[bold]Client[/]  a scripted MCP client (agent trip-planner for alice)\n"
        f"[bold]Gateway[/] ringfence gateway run --config {config_path}\n"
        f"[bold]Servers[/] files = @modelcontextprotocol/server-filesystem {ws}\n"
        f"        weather = python -m ringfence.demo.weather_server\n"
    )
    colours = {"allow": "green", "deny": "red", "approval": "yellow", "error": "magenta"}

    def table(title: str) -> tuple[Table, list[Call]]:
        t = Table("#", "tool", "key argument", "outcome", "rule", "reason / result", title=title)
        t.columns[5].overflow = "fold"
        return t, []

    def shower(t: Table, calls: list[Call]) -> Callable[[Call], None]:
        def show(call: Call) -> None:
            calls.append(call)
            c = colours.get(call.outcome, "white")
            arg = call.argument.replace(str(ws), "<ws>")
            t.add_row(
                str(len(calls)),
                call.tool,
                arg[:40],
                f"[{c}]{call.outcome}[/]",
                call.rule,
                call.detail,
            )

        return show

    first: list[tuple[str, dict[str, Any]]] = [
        ("files__write_file", {"path": f"{ws}/notes/todo.md", "content": "- book the train\n"}),
        ("files__read_text_file", {"path": f"{ws}/notes/plan.md"}),
        ("files__list_directory", {"path": f"{ws}/notes"}),
        ("weather__get_weather", {"city": "Paris"}),
        ("files__read_text_file", {"path": f"{ws}/secrets/api-key.txt"}),
        ("files__write_file", {"path": f"{ws}/notes/../secrets/api-key.txt", "content": "x"}),
        ("files__write_file", {"path": "/etc/cron.d/evil", "content": "* * * * * root sh"}),
        ("files__move_file", {"source": f"{ws}/notes/plan.md", "destination": f"{ws}/plan.md"}),
        ("files__delete_everything", {"path": str(ws)}),
        ("files__write_file", {"path": f"{ws}/notes/x.md", "content": 42}),
    ]
    t1, calls1 = table("Run 1: the client's calls through the gateway")
    listed = anyio.run(run_session, config_path, first, shower(t1, calls1))
    console.print(
        f"tools/list through the gateway shows {len(listed)} tools: {', '.join(listed)}\n"
    )
    console.print(t1)
    secret_kept = (ws / "secrets" / "api-key.txt").read_text() == "sk-demo-0000000000000000\n"
    written = (ws / "notes" / "todo.md").exists() and not (ws / "notes" / "x.md").exists()
    console.print(
        f"notes/todo.md written: {written};  secrets/api-key.txt untouched: {secret_kept};  "
        f"/etc/cron.d/evil exists: {Path('/etc/cron.d/evil').exists()}\n"
    )

    (root / "weather.state").write_text("v2")
    console.print(
        "[bold]The weather server updates itself[/]: get_weather's description now hides "
        "an instruction.\n"
    )
    t2, calls2 = table("Run 2: after the server changed its tool")
    listed = anyio.run(
        run_session, config_path, [("weather__get_weather", {"city": "Paris"})], shower(t2, calls2)
    )
    console.print(f"tools/list now shows {len(listed)} tools (get_weather is gone: quarantined)\n")
    console.print(t2)
    config = load_config(config_path)
    pins = load_pins(config.pins_path)
    change = diff_surfaces(approved_surface(pins, "weather"), observed_surface(pins, "weather"))
    console.print("\n[bold]ringfence gateway diff[/] shows what changed:\n" + change.render())

    log = open_audit_log(root / "data")
    try:
        report = log.verify()
    finally:
        log.close()
    if report.ok:
        console.print(
            f"\n[green]audit verify: OK[/] — {report.records} records, "
            f"{report.checkpoints} signed checkpoints"
        )
    else:
        console.print(f"\n[red]audit verify: FAILED[/] {report.problems}")
    console.print(
        f"\nTry:  ringfence inventory --config {config_path}\n"
        f"      ringfence gateway approve --config {config_path} weather get_weather\n"
        f"      ringfence audit tail --data {root / 'data'}"
    )
    expected_first = [
        "allow",
        "allow",
        "allow",
        "allow",
        "deny",
        "deny",
        "deny",
        "approval",
        "error",
        "error",
    ]
    ok = (
        report.ok
        and [c.outcome for c in calls1] == expected_first
        and [c.outcome for c in calls2] == ["deny"]
        and written
        and secret_kept
    )
    sys.exit(0 if ok else 1)

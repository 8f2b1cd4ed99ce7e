"""Run every benchmark, Ringfence and its peers side by side, and print one table.

    .venv/bin/python bench/run.py [--quick] [--json bench/results/latest.json]

Peers run in their own venv (.venv-bench, made by bench/setup-peers.sh) through
bench/peers/run_peer.py, on the same workload (bench/workload.py) and the same harness.
Figures are medians and p99 in microseconds; "ratio" is the peer's p50 over Ringfence's.
The last section is the MCP gateway's added latency per tools/call (bench/gateway.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway  # noqa: E402
import ours  # noqa: E402

PEER_PY = HERE.parent / ".venv-bench" / "bin" / "python"
PEERS = ["agt-evaluator", "agt-policyengine", "agt-govern", "cedar", "rego"]
RULES = [1, 100, 1000]


def peer(engine: str, rules: int, samples: int) -> dict[str, Any] | str:
    """The peer's JSON result, or why it could not run."""
    if not PEER_PY.exists():
        return "not installed (run bash bench/setup-peers.sh)"
    done = subprocess.run(
        [
            str(PEER_PY),
            str(HERE / "peers" / "run_peer.py"),
            "--engine",
            engine,
            "--rules",
            str(rules),
            "--n",
            str(samples),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["failed"])[-1][:120]
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return "unreadable output"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer samples, smaller runs.")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--no-peers", action="store_true")
    opts = parser.parse_args()
    samples = 5_000 if opts.quick else 20_000
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, "
        f"Python {platform.python_version()}, {_cpus()} cores",
        "decision": {},
        "peers": {},
    }
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    console.print(f"[bold]Ringfence benchmarks[/] — {results['machine']} — {results['date']}")

    table = Table("rules", "probe", "engine", "p50 µs", "p99 µs", "peer p50 / ours")
    for n in RULES:
        mine = ours.decisions(n, samples)
        results["decision"][n] = mine
        rows = [("ringfence", mine)]
        if not opts.no_peers:
            for engine in PEERS:
                got = peer(engine, n, max(samples // 4, 2_000) if n == 1000 else samples // 2)
                results["peers"].setdefault(engine, {})[n] = got
                rows.append((engine, got))
        for probe in ("match", "nomatch", "forbid"):
            for engine, data in rows:
                if isinstance(data, str):
                    if probe == "match":
                        table.add_row(str(n), "", engine, "-", "-", data)
                    continue
                m = data["probes"][probe] if engine != "ringfence" else data[probe]
                ratio = (
                    "" if engine == "ringfence" else f"{m['p50_us'] / mine[probe]['p50_us']:.0f}x"
                )
                table.add_row(
                    str(n), probe, engine, f"{m['p50_us']:.2f}", f"{m['p99_us']:.2f}", ratio
                )
        table.add_section()
    console.print(table)

    seconds = 1.0 if opts.quick else 3.0
    guarded = {d: ours.guarded_call(samples, seconds, d) for d in ("process", "fsync")}
    results["guarded_call"] = guarded
    g = Table("guarded call (durable audit)", "p50 µs", "p99 µs", "calls/s", "peer p50 / ours")
    for d, m in guarded.items():
        g.add_row(
            f"ringfence, durability={d}",
            f"{m['p50_us']:.2f}",
            f"{m['p99_us']:.2f}",
            f"{m['calls_per_s']:,.0f}",
            "",
        )
    for n in RULES:
        govern = results["peers"].get("agt-govern", {}).get(n)
        if isinstance(govern, dict):
            m = govern["probes"]["match"]
            g.add_row(
                f"agt govern(), {n} rules (audit in memory)",
                f"{m['p50_us']:.2f}",
                f"{m['p99_us']:.2f}",
                "",
                f"{m['p50_us'] / guarded['process']['p50_us']:.0f}x",
            )
    console.print(g)

    v = ours.verify_throughput(20_000 if opts.quick else 150_000)
    results["verify"] = v
    console.print(
        f"audit verify: {v['records_per_s']:,.0f} records/s "
        f"({v['records_per_s_incl_read']:,.0f}/s including reading SQLite), "
        f"{v['records']:,} records"
    )
    mem = ours.memory(200_000 if opts.quick else 1_000_000)
    results["memory"] = mem
    console.print(
        f"RSS over {mem['decisions']:,} guarded decisions (1,000 rules, durable audit): "
        + ", ".join(f"{n:,}: {kib / 1024:.1f} MiB" for n, kib in mem["rss_kib"])
        + f"; growth after warm-up {mem['bytes_per_decision_after_warmup']:.2f} B/decision"
    )
    imp = ours.import_time()
    results["import"] = imp
    console.print("import: " + ", ".join(f"{k} {v:.1f}" for k, v in imp.items()))

    try:
        gw = gateway.gateway_latency(300 if opts.quick else 2_000, 50 if opts.quick else 200)
        gw["in_process"] = gateway.in_process(2_000 if opts.quick else 10_000)
    except ImportError as exc:  # the gateway needs the 'mcp' extra
        results["gateway"] = f"not run: {exc}"
        console.print(f"MCP gateway: not run ({exc})")
    else:
        results["gateway"] = gw
        console.print(gateway.table(gw))
        for line in gateway.audit_lines(gw):
            console.print(line)
        console.print(gateway.in_process_line(gw["in_process"]))
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(results, indent=2, default=str))
    console.print(f"written to {opts.json}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()

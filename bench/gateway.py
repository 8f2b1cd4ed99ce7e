"""The MCP gateway's added latency: tools/call through Ringfence against the server called directly.

    .venv/bin/python bench/gateway.py [--quick] [--calls 2000] [--modes auto,legacy]
                                      [--repeat 1] [--json bench/results/gateway.json]

One upstream, ``echo_server.py`` (an ``echo`` tool that does no work), is called by the
official SDK's ``Client`` over stdio three ways, each with its own copy of the server:

- ``direct``: the client launches the echo server itself;
- ``passthrough``: through a bare proxy built from the same SDK (a low-level ``Server`` that
  forwards every call with a ``Client``; no checks, no audit) — the floor for any Python MCP
  proxy on this SDK, so the gateway's own cost is ``gateway - passthrough``;
- ``gateway``: through ``ringfence gateway run`` (stdio to the client and to the upstream),
  with a policy of a few rules allowing ``bench__echo`` and the default durable audit log
  (``durability: process``) in a temporary data folder.

The three clients are open at once and called in alternating blocks, so a noisy neighbour
slows them alike.  Each call is timed alone with ``perf_counter_ns`` (GC off while sampling).
A denied call (a deny rule matches; it never reaches the upstream) is timed the same way, and
so are calls whose arguments and results are new every time ("new results"), through the
gateway and directly (its baseline): the other paths repeat one call, and a result the
session has just seen is not taken in again, while a new one is scanned for tripwires and
traced for provenance.

Afterwards the run fails loudly unless: every result was right; each upstream counted exactly
the calls it should have (none of the denied ones); the gateway's audit log verifies and holds
a decision and an outcome per allowed call, a decision per denied call, and the tool-surface
records (pins), nothing else.

Both protocol eras: ``auto`` negotiates 2026-07-28 with this SDK; ``legacy`` is the
initialize handshake (2025-11-25).  In each era the gateway and the passthrough speak that era
to the upstream too (the gateway's ``protocol: handshake`` for the legacy era), as the direct
client does, so the comparison is one era end to end; ``--upstream-era auto`` leaves them on
the newest era the upstream speaks (the gateway's default), which costs a legacy client the
2026-07-28 era's dearer processing in the upstream.

On a shared machine one full run moves by a few hundredths of a millisecond from the next;
``--repeat N`` makes N full runs, prints each, and then the median (and range) over the runs of
each path's added p50 and p99: the figure to quote.

Profiling the gateway process: ``RINGFENCE_BENCH_PROFILE=/tmp/gw.prof`` runs it under
cProfile (the stats file gets the era appended); ``RINGFENCE_BENCH_PYSPY=/tmp/gw`` under
``py-spy record --gil`` (raw collapsed stacks, one file per era; ``pip install py-spy``).
Profiled runs slow the gateway down: read their stacks, not their latencies.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
ECHO = HERE / "echo_server.py"
BLOCK = 50  # calls per path before moving on to the next one
MODES = ("auto", "legacy")
TARGET_P50_MS = 0.3
TARGET_P99_MS = 1.0
PATHS = ("direct", "relay", "passthrough", "gateway")
# Through the gateway too: a call a deny rule stops, and calls whose results are all new (the
# others repeat one call, whose result the session has just seen: see bench/README.md).
EXTRA = ("denied", "direct_new", "new")
LABELS = {
    "denied": "gateway, denied",
    "direct_new": "direct, new results",
    "new": "gateway, new results",
}
ARGS = {"text": "hello", "n": 1}
DENIED_ARGS = {"text": "/etc/passwd", "n": 1}

POLICY = """\
version: 1
name: bench-gateway
tools:
  bench__echo:
    args:
      type: object
      properties: {text: {type: string}, n: {type: integer}}
rules:
  - {id: no-etc, effect: deny, tool: "bench__*", when: [{arg: text, startswith: /etc/}]}
  - {id: echo-ok, effect: allow, tool: bench__echo, when: [{arg: n, lt: 1000000}]}
  - {id: no-other, effect: deny, tool: "other__*", reason: not in this benchmark}
"""
# --ask-provenance: a rule that asks where every call's text came from (the provenance
# operator), so each result is taken into the session's provenance before the next decision.
ASK_PROVENANCE_RULE = (
    "  - {id: no-injected, effect: deny, tool: bench__echo,"
    " when: [{arg: text, provenance: untrusted_only}]}\n"
)


def bench_policy(ask_provenance: bool = False) -> str:
    """The benchmark's policy (with ``--ask-provenance``, one more rule; see above)."""
    return POLICY + (ASK_PROVENANCE_RULE if ask_provenance else "")


def _gateway_yaml(count_file: Path, upstream: str = "auto") -> str:
    return (
        "policy: policy.yaml\n"
        "data_dir: data\n"
        "servers:\n"
        "  bench:\n"
        f"    command: {json.dumps(sys.executable)}\n"
        f"    args: {json.dumps([str(ECHO), '--count-file', str(count_file)])}\n"
        "    trusted: true\n"
        f"    protocol: {upstream}\n"
    )


def _echo_command(count_file: Path) -> list[str]:
    return [sys.executable, str(ECHO), "--count-file", str(count_file)]


def _gateway_command(config: Path, era: str) -> list[str]:
    cli = "import sys; from ringfence.cli.main import main; sys.exit(main())"
    args = ["gateway", "run", "--config", str(config)]
    prof = os.environ.get("RINGFENCE_BENCH_PROFILE")
    if prof:
        out = f"{prof}.{era}"
        code = (
            "import cProfile, sys; from ringfence.cli.main import main; "
            f"sys.argv = ['ringfence', *{args!r}]; cProfile.run('main()', {out!r})"
        )
        return [sys.executable, "-c", code]
    spy = os.environ.get("RINGFENCE_BENCH_PYSPY")
    if spy:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        record = [
            pyspy,
            "record",
            "--gil",
            "-r",
            "1000",
            "-f",
            "raw",
            "-o",
            f"{spy}.{era}.txt",
            "--",
        ]
        return [*record, sys.executable, "-c", cli, *args]
    return [sys.executable, "-c", cli, *args]


def _stats(samples: list[int]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50_us": s[len(s) // 2] / 1000,
        "p99_us": s[int(len(s) * 0.99)] / 1000,
        "mean_us": sum(s) / len(s) / 1000,
        "calls_per_s": len(s) / (sum(s) / 1e9),
        "n": float(len(s)),
    }


async def _timed(call: Callable[[], Awaitable[Any]], n: int, out: list[int], check: Any) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        result = await call()
        out.append(clock() - t0)
        check(result)


def _allowed_ok(result: Any) -> None:
    text = result.content[0].text if result.content else None
    if result.is_error or text != json.dumps(ARGS, sort_keys=True):
        raise SystemExit(f"gateway benchmark: wrong echo result {result!r}")


def _varied(client: Any, tool: str) -> tuple[Callable[[], Awaitable[Any]], Callable[[Any], None]]:
    """Calls of ``tool`` (an echo) whose arguments, and so results, are new every time, and
    the check of each result: the same sequence for every client it is made for."""
    sent: list[dict[str, Any]] = [{}]
    count = iter(range(1, 1 << 62))

    def call() -> Awaitable[Any]:
        n = next(count)
        sent[0] = {"text": f"note {n} for item-{n % 9973}", "n": n}
        return client.call_tool(tool, sent[0])

    def check(result: Any) -> None:
        text = result.content[0].text if result.content else None
        if result.is_error or text != json.dumps(sent[0], sort_keys=True):
            raise SystemExit(f"gateway benchmark: wrong echo result {result!r}")

    return call, check


def _denied_ok(result: Any) -> None:
    decision = (result.meta or {}).get("io.ringfence/decision") or {}
    if (
        not result.is_error
        or decision.get("effect") != "deny"
        or decision.get("rules") != ["no-etc"]
    ):
        raise SystemExit(f"gateway benchmark: the denied call was not denied: {result!r}")


async def _one_era(
    folder: Path,
    mode: str,
    calls: int,
    warmup: int,
    upstream_era: str = "same",
    ask_provenance: bool = False,
) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    folder.mkdir()
    counts = {p: folder / f"upstream-{p}.count" for p in PATHS}
    (folder / "policy.yaml").write_text(bench_policy(ask_provenance))
    config = folder / "gateway.yaml"
    # "same": the proxies speak the client's era to the upstream too, as the direct client
    # does; "auto": they take the newest era the upstream speaks, whatever the client's.
    handshake = upstream_era == "same" and mode == "legacy"
    config.write_text(_gateway_yaml(counts["gateway"], "handshake" if handshake else "auto"))
    through = ["--legacy-upstream"] if handshake else []
    commands = {
        "direct": _echo_command(counts["direct"]),
        "relay": [
            sys.executable,
            str(Path(__file__).resolve()),
            "--relay",
            "--",
            *_echo_command(counts["relay"]),
        ],
        "passthrough": [
            sys.executable,
            str(Path(__file__).resolve()),
            "--passthrough",
            *through,
            "--",
            *_echo_command(counts["passthrough"]),
        ],
        "gateway": _gateway_command(config, "legacy" if mode == "legacy" else "modern"),
    }
    tool = {"direct": "echo", "relay": "echo", "passthrough": "echo", "gateway": "bench__echo"}
    env = dict(os.environ)
    env.pop("RINGFENCE_BENCH_PROFILE", None)
    env.pop("RINGFENCE_BENCH_PYSPY", None)
    errlog_path = folder / "stderr.txt"
    samples: dict[str, list[int]] = {p: [] for p in (*PATHS, *EXTRA)}
    cpu = {p: {"client": 0, "server": 0, "behind": 0} for p in samples}
    with errlog_path.open("w") as errlog:
        try:
            async with AsyncExitStack() as stack:
                clients: dict[str, Any] = {}
                pids: dict[str, int | None] = {}
                for path in PATHS:
                    params = StdioServerParameters(
                        command=commands[path][0], args=commands[path][1:], env=env
                    )
                    had = set(_children(os.getpid()))
                    clients[path] = await stack.enter_async_context(
                        Client(stdio_client(params, errlog=errlog), cache=None, mode=mode)
                    )
                    new = set(_children(os.getpid())) - had
                    pids[path] = new.pop() if len(new) == 1 else None
                era = {p: clients[p].protocol_version for p in PATHS}
                if len(set(era.values())) != 1:
                    raise SystemExit(f"gateway benchmark: eras differ: {era}")
                listed = [t.name for t in (await clients["gateway"].list_tools()).tools]
                if listed != ["bench__echo"]:
                    raise SystemExit(f"gateway benchmark: the gateway lists {listed}")

                def call(path: str, args: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
                    client, name = clients[path], tool[path]
                    return lambda: client.call_tool(name, args)

                plan = [(p, call(p, ARGS), BLOCK, _allowed_ok) for p in PATHS]
                plan.append(("denied", call("gateway", DENIED_ARGS), BLOCK // 2, _denied_ok))
                # Second, on its own so as not to change what the first measures: calls whose
                # arguments and results are all new, through the gateway and, as the baseline,
                # directly (the same sequence of calls: longer, and new to the SDK each time).
                direct_new, direct_new_ok = _varied(clients["direct"], tool["direct"])
                gateway_new, gateway_new_ok = _varied(clients["gateway"], tool["gateway"])
                later = [
                    ("direct_new", direct_new, BLOCK, direct_new_ok),
                    ("new", gateway_new, BLOCK, gateway_new_ok),
                ]
                owner = {**{p: p for p in PATHS}, "denied": "gateway", "new": "gateway"}
                owner["direct_new"] = "direct"
                for phase in (plan, later):
                    for _, fn, _, check in phase:
                        await _timed(fn, warmup, [], check)
                    gc_was_enabled = gc.isenabled()
                    gc.disable()
                    try:
                        for block in range(max(calls // BLOCK, 1)):
                            k = block % len(phase)  # rotate who goes first
                            for path, fn, size, check in phase[k:] + phase[:k]:
                                before = _cpu(pids[owner[path]])
                                await _timed(fn, size, samples[path], check)
                                after = _cpu(pids[owner[path]])
                                for i, part in enumerate(("client", "server", "behind")):
                                    cpu[path][part] += after[i] - before[i]
                    finally:
                        if gc_was_enabled:
                            gc.enable()
        except BaseException:
            sys.stderr.write(errlog_path.read_text()[-4000:])
            raise
    allowed = 2 * warmup + len(samples["gateway"]) + len(samples["new"])
    denied = warmup + len(samples["denied"])
    for path in PATHS:
        expected = allowed if path == "gateway" else warmup + len(samples[path])
        if path == "direct":
            expected += warmup + len(samples["direct_new"])
        got = _read_count(counts[path])
        if got != expected:
            raise SystemExit(
                f"gateway benchmark: the {path} upstream served {got} calls, expected {expected}"
                + (" (denied calls must not reach it)" if path == "gateway" else "")
            )
    audit = _check_audit(folder / "data", allowed, denied)
    out: dict[str, Any] = {"protocol": era["gateway"]}
    for path, taken in samples.items():
        out[path] = _stats(taken)
        n = len(taken)
        out[path]["cpu_us_per_call"] = {k: v / n / 1000 for k, v in cpu[path].items()}
    d, p, g = out["direct"], out["passthrough"], out["gateway"]
    out["added"] = {
        "p50_us": g["p50_us"] - d["p50_us"],
        "p99_us": g["p99_us"] - d["p99_us"],
        "mean_us": g["mean_us"] - d["mean_us"],
    }
    base, new = out["direct_new"], out["new"]
    out["added_new_results"] = {k: new[k] - base[k] for k in ("p50_us", "p99_us", "mean_us")}
    out["sdk_hop"] = {k: p[k] - d[k] for k in ("p50_us", "p99_us", "mean_us")}
    out["ringfence_share"] = {k: g[k] - p[k] for k in ("p50_us", "p99_us", "mean_us")}
    out["audit"] = audit
    out["upstream_calls"] = {"allowed_forwarded": allowed, "denied_not_forwarded": denied}
    return out


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc; empty elsewhere)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def _ticks(pid: int) -> int:
    """User + system CPU of ``pid`` (all its threads), in ns; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * _TICK_NS
    except (OSError, IndexError, ValueError):
        return 0


def _cpu(pid: int | None) -> tuple[int, int, int]:
    """CPU ns so far of this process, of ``pid``, and of everything ``pid`` started."""
    if pid is None:
        return time.process_time_ns(), 0, 0
    behind, todo = 0, _children(pid)
    while todo:
        child = todo.pop()
        behind += _ticks(child)
        todo += _children(child)
    return time.process_time_ns(), _ticks(pid), behind


def _read_count(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _check_audit(data_dir: Path, allowed: int, denied: int) -> dict[str, Any]:
    """The gateway's log verifies and holds exactly what the calls should have written."""
    import ringfence

    log = ringfence.open_audit_log(data_dir)
    try:
        report = log.verify()
        kinds: dict[str, int] = {}
        effects: dict[str, int] = {}
        for _, raw in log.store.records():
            rec = json.loads(raw)
            kinds[rec["type"]] = kinds.get(rec["type"], 0) + 1
            if rec["type"] == "decision":
                effects[rec["effect"]] = effects.get(rec["effect"], 0) + 1
    finally:
        log.close()
    surface = kinds.get("mcp_surface", 0) + kinds.get("mcp_scan", 0)
    expected = {"decision": allowed + denied, "outcome": allowed}
    problems = list(report.problems) if not report.ok else []
    if {k: kinds.get(k, 0) for k in expected} != expected:
        problems.append(f"records by type {kinds}, expected {expected} plus the surface")
    if effects != {"allow": allowed, "deny": denied}:
        problems.append(f"decisions by effect {effects}, expected {allowed} allow, {denied} deny")
    if surface == 0 or report.records != 2 * allowed + denied + surface:
        problems.append(
            f"{report.records} records; expected 2 x {allowed} + {denied} + surface ({surface})"
        )
    if problems:
        raise SystemExit("gateway benchmark: the audit log is wrong: " + "; ".join(problems))
    return {
        "records": report.records,
        "checkpoints": report.checkpoints,
        "verified": report.ok,
        "by_type": kinds,
    }


def gateway_latency(
    calls: int = 2_000,
    warmup: int = 200,
    modes: tuple[str, ...] = MODES,
    upstream_era: str = "same",
    ask_provenance: bool = False,
) -> dict[str, Any]:
    """Direct, passthrough and gateway tools/call latency per protocol era (see the docstring)."""
    eras: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rf-gw-bench-") as tmp:
        for mode in modes:
            got = anyio.run(
                _one_era, Path(tmp) / mode, mode, calls, warmup, upstream_era, ask_provenance
            )
            eras[got["protocol"]] = got
    return {
        "calls": calls,
        "warmup": warmup,
        "block": BLOCK,
        "upstream_era": upstream_era,
        "ask_provenance": ask_provenance,
        "eras": eras,
    }


def added_by_path(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{era: {path: {"p50_us", "p99_us"}}}``: what each path adds over its direct baseline
    in one run (the direct path making the same calls: repeated, or new for "new")."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for era, r in results["eras"].items():
        out[era] = {}
        for path in (*PATHS, *EXTRA):
            if path in ("direct", "direct_new"):
                continue
            base = r["direct_new" if path == "new" else "direct"]
            out[era][path] = {k: r[path][k] - base[k] for k in ("p50_us", "p99_us")}
    return out


def median_added(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Over several full runs, per era and path: the median, lowest and highest added p50
    and p99 (µs)."""
    per_run = [added_by_path(r) for r in runs]
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for era, paths in per_run[0].items():
        out[era] = {}
        for path in paths:
            out[era][path] = {}
            for key in ("p50_us", "p99_us"):
                values = sorted(run[era][path][key] for run in per_run if era in run)
                out[era][path][key] = [statistics.median(values), values[0], values[-1]]
    return out


def median_table(summary: dict[str, Any], n: int) -> Any:
    """A rich Table of :func:`median_added`."""
    from rich.table import Table

    t = Table(
        "era",
        "path",
        "added p50 ms: median (range)",
        "added p99 ms: median (range)",
        title=f"Over {n} full runs (target: added ≤ {TARGET_P50_MS} ms p50, "
        f"≤ {TARGET_P99_MS} ms p99)",
    )
    for era, paths in summary.items():
        first = True
        for path, m in paths.items():
            cells = [
                f"{v[0] / 1000:+.3f} ({v[1] / 1000:+.3f} to {v[2] / 1000:+.3f})"
                for v in (m["p50_us"], m["p99_us"])
            ]
            t.add_row(era if first else "", LABELS.get(path, path), *cells)
            first = False
        t.add_section()
    return t


def table(results: dict[str, Any]) -> Any:
    """A rich Table of ``gateway_latency`` results."""
    from rich.table import Table

    t = Table(
        "era",
        "path",
        "p50 ms",
        "p99 ms",
        "calls/s",
        "added p50 ms",
        "added p99 ms",
        "CPU µs/call: client / proxy / upstream",
        title=f"MCP tools/call over stdio, {results['calls']:,} sequential calls per path "
        f"(target: added ≤ {TARGET_P50_MS} ms p50, ≤ {TARGET_P99_MS} ms p99)",
    )
    for era, r in results["eras"].items():
        for path in (*PATHS, *EXTRA):
            m = r[path]
            d = r["direct_new" if path == "new" else "direct"]
            label = LABELS.get(path, path)
            added = (
                ("", "")
                if path in ("direct", "direct_new")
                else (
                    f"{(m['p50_us'] - d['p50_us']) / 1000:+.3f}",
                    f"{(m['p99_us'] - d['p99_us']) / 1000:+.3f}",
                )
            )
            c = m["cpu_us_per_call"]
            if path in ("direct", "direct_new"):  # the client's own child is the upstream
                cpu = f"{c['client']:.0f} / - / {c['server']:.0f}"
            else:
                cpu = f"{c['client']:.0f} / {c['server']:.0f} / {c['behind']:.0f}"
            t.add_row(
                era if path == "direct" else "",
                label,
                f"{m['p50_us'] / 1000:.3f}",
                f"{m['p99_us'] / 1000:.3f}",
                f"{m['calls_per_s']:,.0f}",
                *added,
                cpu,
            )
        t.add_section()
    return t


def audit_lines(results: dict[str, Any]) -> list[str]:
    """What was checked after each era's run."""
    out = []
    for era, r in results["eras"].items():
        a, u = r["audit"], r["upstream_calls"]
        surface = a["records"] - 2 * u["allowed_forwarded"] - u["denied_not_forwarded"]
        out.append(
            f"{era}: audit log verified, {a['records']:,} records = 2 x {u['allowed_forwarded']:,}"
            f" allowed + {u['denied_not_forwarded']:,} denied + {surface} tool-surface, "
            f"{a['checkpoints']} signed checkpoints; the upstream served "
            f"{u['allowed_forwarded']:,} calls, none of the denied ones"
        )
    return out


def in_process_line(costs: dict[str, dict[str, float]]) -> str:
    """One line summing up ``in_process``."""
    return "gateway's own work per call, in process (p50 / p99 µs): " + ", ".join(
        f"{name} {m['p50_us']:.1f} / {m['p99_us']:.1f}" for name, m in costs.items()
    )


def in_process(samples: int = 5_000) -> dict[str, dict[str, float]]:
    """The gateway's own work per call, in process (no MCP, no pipes), with the shared harness.

    ``admit`` is everything before forwarding (resolve the tool, input gate, the upstream's
    JSON Schema, the policy decision and its durable audit record); ``record`` is the outcome
    record after the upstream answered; ``schema`` and ``check`` are parts of ``admit``.
    """

    import echo_server
    import ringfence
    from harness import measure
    from ringfence.adapters.mcp.config import config_from_text
    from ringfence.adapters.mcp.gateway import Connection, Gateway, _check_schema

    with tempfile.TemporaryDirectory(prefix="rf-gw-bench-") as tmp:
        folder = Path(tmp)
        (folder / "policy.yaml").write_text(POLICY)
        config = config_from_text(_gateway_yaml(folder / "count"), base=tmp)
        guard = ringfence.open_guard(
            config.path(config.policy), data_dir=config.path(config.data_dir), agent="mcp-client"
        )
        try:
            gw = Gateway(config, guard)
            gw.catalog.observe("bench", [echo_server.ECHO], None)
            conn = Connection(config.identity)
            entry, action, decision = gw.admit(conn, "bench__echo", ARGS)
            if not decision.allowed or gw.admit(conn, "bench__echo", DENIED_ARGS)[2].allowed:
                raise SystemExit("gateway benchmark: in-process decisions are wrong")
            text = json.dumps(ARGS, sort_keys=True)
            result = {"content": [{"type": "text", "text": text}], "isError": False}
            runs = {
                "admit_allowed": lambda: gw.admit(conn, "bench__echo", ARGS),
                "admit_denied": lambda: gw.admit(conn, "bench__echo", DENIED_ARGS),
                "record_outcome": lambda: gw._record(entry, action, decision, 0, result),
                "schema": lambda: _check_schema(entry, ARGS),
                "check": lambda: guard.check(action),
            }
            return {name: measure(fn, n=samples, warmup=samples // 10) for name, fn in runs.items()}
        finally:
            guard.close()


async def _relay(command: list[str]) -> None:
    """Copy bytes between our stdio and ``command``'s, parsing nothing: the floor for any
    proxy that is a process of its own (same event loop as the gateway's)."""
    import asyncio

    loop = asyncio.get_running_loop()
    child = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)

    async def up() -> None:
        assert child.stdin is not None
        while data := await reader.read(1 << 16):
            child.stdin.write(data)
        child.stdin.close()

    async def down() -> None:
        assert child.stdout is not None
        while data := await child.stdout.read(1 << 16):
            out.write(data)

    await asyncio.gather(up(), down())
    await child.wait()


async def _passthrough(command: list[str], legacy: bool = False) -> None:
    """Serve stdio, forwarding tools/list and tools/call to ``command`` with no checks."""
    import mcp_types as types
    from mcp import Client, StdioServerParameters
    from mcp.server import Server, ServerRequestContext
    from mcp.server.stdio import stdio_server

    params = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(params, cache=None, mode="legacy" if legacy else "auto") as upstream:

        async def list_tools(
            ctx: ServerRequestContext[Any], p: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            page = await upstream.list_tools(cursor=p.cursor if p else None, cache_mode="bypass")
            return types.ListToolsResult(tools=page.tools, next_cursor=page.next_cursor)

        async def call_tool(
            ctx: ServerRequestContext[Any], p: types.CallToolRequestParams
        ) -> types.CallToolResult:
            return await upstream.call_tool(p.name, p.arguments)

        server: Server[Any] = Server(
            "bench-passthrough", on_list_tools=list_tools, on_call_tool=call_tool
        )
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000, help="Timed calls per path.")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="300 calls, 50 warm-up.")
    parser.add_argument("--modes", default=",".join(MODES), help="auto, legacy or both")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "gateway.json")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Full runs; the median over them is reported."
    )
    parser.add_argument(
        "--upstream-era",
        choices=("same", "auto"),
        default="same",
        help="same: the proxies speak the client's protocol era to the upstream (as the "
        "direct client does); auto: the newest era the upstream speaks, whatever the client's.",
    )
    parser.add_argument(
        "--ask-provenance",
        action="store_true",
        help="Add a rule that asks where every call's text came from (provenance), so each "
        "result is taken into the session before the next decision.",
    )
    parser.add_argument("--passthrough", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--legacy-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.passthrough:
        anyio.run(_passthrough, opts.command, opts.legacy_upstream)
        return
    if opts.relay:
        loop = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}
        anyio.run(_relay, opts.command, backend_options=loop)
        return
    import platform

    from rich.console import Console

    calls, warmup = (300, 50) if opts.quick else (opts.calls, opts.warmup)
    console = Console(width=160)
    runs: list[dict[str, Any]] = []
    for _ in range(max(opts.repeat, 1)):
        run = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, Python {platform.python_version()}, "
            f"{len(os.sched_getaffinity(0))} cores",
            **gateway_latency(
                calls, warmup, tuple(opts.modes.split(",")), opts.upstream_era, opts.ask_provenance
            ),
        }
        asks = " — the policy asks about provenance" if opts.ask_provenance else ""
        console.print(f"[bold]Ringfence MCP gateway[/] — {run['machine']} — {run['date']}{asks}")
        console.print(table(run))
        for line in audit_lines(run):
            console.print(line)
        runs.append(run)
    results = {**runs[-1], "in_process": in_process(2_000 if opts.quick else 10_000)}
    if len(runs) > 1:
        results["runs"] = [{"date": r["date"], "added": added_by_path(r)} for r in runs]
        results["median_added"] = median_added(runs)
        console.print(median_table(results["median_added"], len(runs)))
    console.print(in_process_line(results["in_process"]))
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(results, indent=2))
    console.print(f"written to {opts.json}")


if __name__ == "__main__":
    main()

"""Ringfence's side of the benchmarks: the same workload the peers get (see workload.py)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ringfence
from harness import measure
from workload import allow_rules, probes, tools


def policy_text(n: int) -> str:
    """The workload's rules in Ringfence's policy language."""
    lines = ["version: 1", "name: bench", "tools:"]
    for t in tools(n):
        lines += [
            f"  {t}:",
            "    args:",
            "      type: object",
            "      properties: {amount: {type: integer}, path: {type: string}}",
        ]
    lines += [
        "rules:",
        "  - id: deny-etc",
        "    effect: deny",
        "    when: [{arg: path, startswith: /etc/}]",
    ]
    for r in allow_rules(n):
        lines += [
            f"  - id: {r.rule_id}",
            "    effect: allow",
            f"    tool: {r.tool}",
            "    when: [{arg: amount, lt: 1000}, {arg: path, startswith: /data/}]",
        ]
    return "\n".join(lines) + "\n"


def decisions(n: int, samples: int) -> dict[str, Any]:
    """p50/p99 of Policy.evaluate for each probe of an n-rule workload."""
    policy = ringfence.policy_from_text(policy_text(n))
    out = {}
    for probe in probes(n):
        action = ringfence.Action(kind="tool_call", tool=probe.tool, args=probe.args)
        got = policy.evaluate(action).effect.value
        if got != probe.expected:
            raise SystemExit(f"ringfence gave {got} for {probe.name} at {n} rules")
        out[probe.name] = measure(lambda a=action: policy.evaluate(a, "d-1"), n=samples)
    return out


def guarded_call(samples: int, seconds: float, durability: str) -> dict[str, Any]:
    """A protected function (1 allow rule) with the SQLite audit log: latency and throughput."""
    policy = ringfence.policy_from_text(policy_text(2))
    with tempfile.TemporaryDirectory() as folder:
        guard = ringfence.open_guard(policy, data_dir=folder, durability=durability)

        calls = [0]

        def tool_0(amount: int, path: str) -> None:
            calls[0] += 1

        call = guard.wrap(tool_0)
        latency = measure(lambda: call(5, "/data/report.csv"), n=samples)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(1000):
                call(5, "/data/report.csv")
            count += 1000
        rate = count / (time.perf_counter() - start)
        guard.close()
        log = ringfence.open_audit_log(folder)
        report = log.verify()
        log.close()
        if not report.ok or report.records != 2 * calls[0]:
            raise SystemExit(
                f"benchmark log is wrong: {report.records} records for {calls[0]} calls, "
                f"{report.problems}"
            )
    return {**latency, "calls_per_s": rate, "records": report.records}


def verify_throughput(records: int) -> dict[str, Any]:
    """Records per second for a full verification of a stored SQLite log."""
    from ringfence.core.audit.verify import verify_log
    from ringfence.stores.keys import load_public_key
    from ringfence.stores.sqlite import SQLiteAuditStore

    policy = ringfence.policy_from_text(policy_text(2))
    with tempfile.TemporaryDirectory() as folder:
        guard = ringfence.open_guard(policy, data_dir=folder)
        action = guard.action("tool_0", {"amount": 5, "path": "/data/report.csv"})
        for _ in range(records):
            guard.check(action)
        guard.close()
        keys = load_public_key(Path(folder) / "keys" / "audit-signing.pub")
        store = SQLiteAuditStore(Path(folder) / "audit", readonly=True)
        rows = list(store.records())  # read once, so the figure is verification, not disk
        cps = store.checkpoints()
        start = time.perf_counter()
        report = verify_log(rows, cps, keys, log_id=store.log_id)
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        report2 = verify_log(store.records(), store.checkpoints(), keys, log_id=store.log_id)
        elapsed_with_read = time.perf_counter() - start
        store.close()
    if not (report.ok and report2.ok) or report.records != records:
        raise SystemExit(f"verify failed in benchmark: {report.records} of {records} records")
    return {
        "records": report.records,
        "records_per_s": report.records / elapsed,
        "records_per_s_incl_read": report.records / elapsed_with_read,
    }


def _rss_kib() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def memory(total: int) -> dict[str, Any]:
    """RSS while making ``total`` decisions through the Guard (with durable audit)."""
    policy = ringfence.policy_from_text(policy_text(1000))
    points = []
    with tempfile.TemporaryDirectory() as folder:
        guard = ringfence.open_guard(policy, data_dir=folder)
        action = guard.action("tool_998", {"amount": 5, "path": "/data/report.csv"})
        step = total // 4
        points.append((0, _rss_kib()))
        for i in range(1, total + 1):
            guard.check(action)
            if i % step == 0:
                points.append((i, _rss_kib()))
        guard.close()
    growth = (points[-1][1] - points[1][1]) * 1024 / max(points[-1][0] - points[1][0], 1)
    return {
        "decisions": total,
        "rss_kib": points,
        "bytes_per_decision_after_warmup": growth,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def import_time() -> dict[str, Any]:
    """Cold import cost, best of 5 fresh interpreters: ``import ringfence`` as reported by
    ``python -X importtime`` (cumulative), and loading everything a Guard needs."""
    probe = (
        "import time; t = time.perf_counter(); import ringfence; a = time.perf_counter(); "
        "ringfence.Guard; ringfence.load_policy; ringfence.open_guard; "
        "print(a - t, time.perf_counter() - t)"
    )
    best: dict[str, float] = {}
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", probe],
            capture_output=True,
            text=True,
            check=True,
        )
        cumulative = 0
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == "ringfence" and parts[1].strip().isdigit():
                cumulative = int(parts[1])
        plain, full = (float(x) for x in done.stdout.split())
        for key, value in (
            ("import_ringfence_ms (importtime)", cumulative / 1000),
            ("import_ringfence_ms (wall)", plain * 1000),
            ("guard_path_loaded_ms (wall)", full * 1000),
        ):
            best[key] = min(best.get(key, value), value)
    return best

"""The human-approval round trip and the cost of a receipt.

    .venv/bin/python bench/approvals.py [--quick] [--json bench/results/approvals.json]

Round trip: ``Guard.check`` of a require_approval call whose QueueApprover blocks until a
reviewer approves, the receipt is redeemed and recorded, and the caller resumes (an in-memory
audit log on both sides, so only the approval path differs).  The reviewer is a loop that
waits for a pending request and approves it at once — no human, so the figure is Ringfence's
own latency:

* memory store, reviewer in another thread (condition variable wake-up);
* SQLite store, reviewer in another thread on its own connection (``PRAGMA data_version``
  polling, at the default 20 ms and at 5 ms);
* SQLite store, reviewer in another *process* (what ``ringfence approvals approve`` does,
  without the interpreter start-up), 20 ms polling;
* the CLI itself: ``ringfence approvals approve ID`` spawned per request (interpreter start-up
  included), a handful of samples.

Receipt costs (per call, µs): signing at approval, and redeeming (Ed25519 verify + binding
check + the atomic single-use write) on the memory and the SQLite store.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nacl.signing import SigningKey  # noqa: E402

import ringfence  # noqa: E402
from ringfence.core.approvals import ApprovalLimits  # noqa: E402
from ringfence.runtime.approvals import ApprovalQueue, open_approval_queue  # noqa: E402
from ringfence.runtime.approver import QueueApprover  # noqa: E402
from ringfence.runtime.audit import AuditLog  # noqa: E402
from ringfence.runtime.guard import Guard  # noqa: E402
from ringfence.stores.approvals import SQLiteApprovalStore  # noqa: E402
from ringfence.stores.approvals_memory import MemoryApprovalStore  # noqa: E402
from ringfence.stores.memory import MemoryAuditStore  # noqa: E402

POLICY = """
version: 1
tools:
  send_email:
    args: {type: object, properties: {to: {type: string}, body: {type: string}}}
rules:
  - {id: external, effect: require_approval, tool: send_email}
"""
UNCAPPED = ApprovalLimits(
    max_pending_per_session=10**6,
    max_requests_per_session=10**9,
    max_requests_per_window=10**9,
)
REVIEWER = r"""
import sys, time
from ringfence.runtime.approvals import open_approval_queue
q = open_approval_queue(sys.argv[1], poll_s=float(sys.argv[2]))
print("ready", flush=True)
v = q.store.version()
while True:
    for r in q.list():
        q.approve(r.id, "bench-reviewer")
    v = q.store.wait(v, 1.0)
"""


def pct(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "p50": s[len(s) // 2],
        "p99": s[min(len(s) - 1, int(len(s) * 0.99))],
        "mean": statistics.fmean(s),
        "n": float(len(s)),
    }


def guard_for(queue: ApprovalQueue) -> tuple[Guard, AuditLog]:
    log = AuditLog(MemoryAuditStore(), SigningKey.generate(), checkpoint_every=10**9)
    policy = ringfence.policy_from_text(POLICY)
    return Guard(policy, audit=log, approver=QueueApprover(queue, wait_s=30, audit=log)), log


def round_trips(guard: Guard, n: int, resumed: list[float] | None = None) -> list[float]:
    """Milliseconds per approved check (each call has new arguments: no grouping help);
    the moment each call resumed is appended to ``resumed``."""
    out = []
    with guard.context(agent="bench", session="s1"):
        for i in range(n):
            action = guard.action("send_email", {"to": f"p{i}@partner.test", "body": "x"})
            t0 = time.perf_counter()
            decision = guard.check(action)
            t1 = time.perf_counter()
            out.append((t1 - t0) * 1e3)
            if resumed is not None:
                resumed.append(t1)
            assert decision.allowed, decision.reasons
    return out


def thread_reviewer(
    queue: ApprovalQueue, stop: threading.Event, approved: list[float]
) -> threading.Thread:
    def run() -> None:
        version = queue.store.version()
        while not stop.is_set():
            for r in queue.list():
                queue.approve(r.id, "bench-reviewer")
                approved.append(time.perf_counter())
            version = queue.store.wait(version, 0.2)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def in_thread(
    make_store: Callable[[], Any], key: SigningKey, n: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(the round trip, from the approval's commit until the caller resumed), in ms."""
    agent_q = ApprovalQueue(make_store(), key, limits=UNCAPPED)
    review_q = ApprovalQueue(make_store(), key, limits=UNCAPPED)  # its own connection
    guard, log = guard_for(agent_q)
    stop = threading.Event()
    approved: list[float] = []
    resumed: list[float] = []
    t = thread_reviewer(review_q, stop, approved)
    try:
        round_trips(guard, 5, resumed)
        total = pct(round_trips(guard, n, resumed))
        after = [(b - a) * 1e3 for a, b in zip(approved, resumed, strict=True)][5:]
        return total, pct(after)
    finally:
        stop.set()
        t.join()
        log.close()


def memory_round_trip(n: int) -> tuple[dict[str, float], dict[str, float]]:
    store = MemoryApprovalStore()
    return in_thread(lambda: store, SigningKey.generate(), n)


def sqlite_thread_round_trip(
    folder: Path, n: int, poll: float
) -> tuple[dict[str, float], dict[str, float]]:
    path = folder / f"t{poll}.sqlite"
    return in_thread(lambda: SQLiteApprovalStore(path, poll_s=poll), SigningKey.generate(), n)


def sqlite_process_round_trip(folder: Path, n: int, poll: float) -> dict[str, float]:
    data = folder / f"p{poll}"
    queue = open_approval_queue(data, poll_s=poll, limits=UNCAPPED)
    proc = subprocess.Popen(
        [sys.executable, "-c", REVIEWER, str(data), str(poll)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        guard, log = guard_for(queue)
        round_trips(guard, 5)
        result = pct(round_trips(guard, n))
        log.close()
        return result
    finally:
        proc.kill()
        proc.wait()


def cli_round_trip(folder: Path, n: int) -> dict[str, float]:
    data = folder / "cli"
    queue = open_approval_queue(data, limits=UNCAPPED)
    guard, log = guard_for(queue)
    out: list[float] = []

    def approve_via_cli() -> None:
        version = queue.store.version()
        done = 0
        while done < n:
            for r in queue.list():
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "ringfence.cli",
                        "approvals",
                        "approve",
                        r.id,
                        "--data",
                        str(data),
                    ],
                    check=True,
                    capture_output=True,
                )
                done += 1
            version = queue.store.wait(version, 0.2)

    t = threading.Thread(target=approve_via_cli, daemon=True)
    t.start()
    out = round_trips(guard, n)
    t.join()
    log.close()
    return pct(out)


def receipt_costs(folder: Path, n: int) -> dict[str, dict[str, float]]:
    key = SigningKey.generate()
    policy = ringfence.policy_from_text(POLICY)
    results: dict[str, dict[str, float]] = {}
    for name, store in (
        ("memory", MemoryApprovalStore()),
        ("sqlite", SQLiteApprovalStore(folder / "redeem.sqlite")),
    ):
        queue = ApprovalQueue(store, key, limits=UNCAPPED)
        issued = []
        sign: list[float] = []
        for i in range(n):
            action = ringfence.Action(
                kind="tool_call",
                tool="send_email",
                args={"to": f"p{i}@x.test"},
                agent="bench",
                session="s1",
            )
            sub = queue.submit(action, policy.evaluate(action, f"d-{i}"))
            assert sub.request is not None
            t0 = time.perf_counter_ns()
            receipt = queue.approve(sub.request.id, "reviewer")
            sign.append((time.perf_counter_ns() - t0) / 1e3)
            issued.append((receipt, action))
        redeem: list[float] = []
        for receipt, action in issued:
            t0 = time.perf_counter_ns()
            queue.redeem(receipt, action, policy_version=policy.version)
            redeem.append((time.perf_counter_ns() - t0) / 1e3)
        results[f"approve (sign + store), {name}"] = pct(sign)
        results[f"redeem (verify + bind + single-use write), {name}"] = pct(redeem)
        store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n = 100 if args.quick else 400
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "round_trip_ms": {},
        "resume_after_approval_ms": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rt, resume = report["round_trip_ms"], report["resume_after_approval_ms"]
        for name, (total, after) in (
            ("memory store, reviewer thread", memory_round_trip(n)),
            ("SQLite, reviewer thread, poll 20 ms", sqlite_thread_round_trip(folder, n, 0.02)),
            ("SQLite, reviewer thread, poll 5 ms", sqlite_thread_round_trip(folder, n, 0.005)),
        ):
            rt[name], resume[name] = total, after
        rt["SQLite, reviewer process, poll 20 ms"] = sqlite_process_round_trip(folder, n, 0.02)
        rt["CLI `ringfence approvals approve` per request"] = cli_round_trip(
            folder, 5 if args.quick else 20
        )
        report["receipt_us"] = receipt_costs(folder, 500 if args.quick else 2000)
    print(f"Approval round trip (ms) — {report['machine']}, {report['date']}")
    for name, r in report["round_trip_ms"].items():
        print(f"  {name:<48} p50 {r['p50']:8.2f}  p99 {r['p99']:8.2f}  (n={int(r['n'])})")
    print("From the approval's commit until the waiting call resumed (ms)")
    for name, r in report["resume_after_approval_ms"].items():
        print(f"  {name:<48} p50 {r['p50']:8.2f}  p99 {r['p99']:8.2f}")
    print("Receipts (µs per call)")
    for name, r in report["receipt_us"].items():
        print(f"  {name:<48} p50 {r['p50']:8.1f}  p99 {r['p99']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

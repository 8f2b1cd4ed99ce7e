"""SIGKILL a process that is busy calling a protected function; nothing that ran goes unrecorded.

A child process (crash_child.py) calls a protected function in a loop; the function appends its
call number to a side file, which it can only do after the decision record is durable.  The
parent kills the child at a random moment once enough calls have run, then reopens the store
(recovering the journal) and checks that (a) every number in the side file has an allow
decision record with exactly those arguments, (b) the log verifies against the public key file,
(c) seq numbers are contiguous.  Several crashes hit the same folder, one of them recovered by
the next child rather than by the parent.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import ringfence
from ringfence.core.audit.encoding import decode
from ringfence.core.audit.verify import verify_log
from ringfence.stores.keys import load_public_key
from ringfence.stores.sqlite import SQLiteAuditStore

CHILD = Path(__file__).with_name("crash_child.py")
CALLS_BEFORE_KILL = 5_000
START_TIMEOUT = 30.0


@dataclass
class Crashes:
    """What the children reported as having run, across every crash in one folder."""

    data_dir: Path
    ran: set[int] = field(default_factory=set)
    attempts: int = 0
    threads_total: int = 0


def side_numbers(path: Path) -> set[int]:
    numbers = set()
    for line in path.read_bytes().split(b"\n")[:-1]:  # only complete lines
        n, mode = line.split(b" ")
        assert mode == b"ok", f"a denied call ran: {line!r}"
        numbers.add(int(n))
    return numbers


def crash_once(
    crashes: Crashes,
    threads: int,
    rng: random.Random,
    tmp_path: Path,
    sizes: tuple[int, int] | None,
) -> None:
    """Run a child until CALLS_BEFORE_KILL calls have run, then SIGKILL it at a random moment."""
    run = crashes.attempts
    crashes.attempts += 1
    crashes.threads_total += threads
    side = tmp_path / f"side-{run}.txt"
    stderr = tmp_path / f"child-{run}.err"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with stderr.open("wb") as err:
        child = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                str(crashes.data_dir),
                str(side),
                str(threads),
                str(run * 10**9),
                *(str(n) for n in sizes or ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                lines = side.read_bytes().count(b"\n") if side.exists() else 0
                if lines >= CALLS_BEFORE_KILL:
                    break
                if child.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"child {run} stopped early (exit {child.returncode}) after {lines} "
                        f"calls:\n{stderr.read_text()}"
                    )
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.03))
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL, stderr.read_text()
    crashes.ran |= side_numbers(side)


def check(crashes: Crashes) -> None:
    """Recover the journal with a new writer, then check every promise the log makes."""
    with ringfence.open_audit_log(crashes.data_dir) as log:
        assert log.verify().ok
    store = SQLiteAuditStore(crashes.data_dir / "audit", readonly=True)
    try:
        rows = list(store.records())
        keys = load_public_key(crashes.data_dir / "keys" / "audit-signing.pub")
        report = verify_log(rows, store.checkpoints(), keys, log_id=store.log_id)
    finally:
        store.close()

    assert report.ok, report.problems  # (b)
    assert report.unsealed == 0
    assert [seq for seq, _ in rows] == list(range(len(rows)))  # (c)
    allowed: dict[int, int] = {}
    denied: set[int] = set()
    for seq, data in rows:
        record = decode(data)
        assert record["seq"] == seq
        if record["type"] != "decision":
            continue
        n = record["args"]["n"]
        if record["effect"] == "allow":
            assert record["args"] == {"n": n, "mode": "ok"}
            assert record["rules"] == ["work"]
            allowed[n] = allowed.get(n, 0) + 1
        else:
            assert record["args"] == {"n": n, "mode": "bad"}
            assert record["rules"] == ["no-bad-mode"]
            denied.add(n)
    missing = crashes.ran - set(allowed)
    assert not missing, (
        f"{len(missing)} calls ran without an allow record, e.g. {sorted(missing)[:5]}"
    )  # (a)
    assert all(count == 1 for count in allowed.values())
    assert not crashes.ran & denied
    # A call decided but killed before its body wrote the side file: at most one per thread.
    assert len(set(allowed) - crashes.ran) <= crashes.threads_total


@pytest.mark.integration
@pytest.mark.parametrize(
    ("threads", "sizes"),
    [(1, None), (4, None), (4, (256, 64 << 10))],
    ids=["one-thread", "four-threads", "four-threads-small-batches"],
)
def test_sigkill_loses_no_record_of_anything_that_ran(
    tmp_path: Path, threads: int, sizes: tuple[int, int] | None
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    crashes = Crashes(tmp_path / "data")
    try:
        crash_once(crashes, threads, rng, tmp_path, sizes)
        crash_once(crashes, threads, rng, tmp_path, sizes)  # this child recovers the first crash
        check(crashes)
        crash_once(crashes, threads, rng, tmp_path, sizes)
        check(crashes)
    except BaseException as exc:
        exc.add_note(f"random seed {seed}")
        raise
    assert len(crashes.ran) >= 3 * CALLS_BEFORE_KILL

"""The kill switch and rate limits across real processes sharing one SQLite controls store.

- a kill made in one process (the Python API, or ``ringfence kill`` — a process of its own)
  is seen by another process's next check within 1 second, and reaches its on_kill hooks
  within 1 second even while it checks nothing;
- several processes hammering one rate limit never allow more than the limit in total;
- kills survive every process stopping (a fresh process starts killed), and unkill lifts
  them for fresh processes too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.core.killswitch import KillScope
from ringfence.runtime.controls import open_controls

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("controls_child.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """Every child a test started is stopped and its pipes closed, even when it failed."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def child(store: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(store), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _STARTED.append(proc)
    return proc


def ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "ready", (
        f"child did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    )


def result(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out.strip()


@pytest.mark.parametrize("mode", ["watch", "hook"])
def test_a_kill_reaches_another_process_within_a_second(tmp_path: Path, mode: str) -> None:
    store = tmp_path / "controls"
    watchers = [child(store, mode) for _ in range(2)]
    for w in watchers:
        ready(w)
    time.sleep(0.2)  # both are checking (or idle, for hooks) before the kill
    controls = open_controls(store_dir=store, watch_seconds=None)
    controls.kill(KillScope.of("agent", "bot"), "incident", "test")
    killed_at = time.time_ns()
    controls.close()
    for w in watchers:
        seen = int(result(w))
        assert seen - killed_at < 10**9, f"seen {(seen - killed_at) / 1e9:.3f} s after the kill"


def test_a_kill_from_the_command_line_reaches_a_running_process(tmp_path: Path) -> None:
    store = tmp_path / "controls"
    watcher = child(store, "watch")
    ready(watcher)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "ringfence.cli",
            "kill",
            "--tool",
            "send",
            "--store",
            str(store),
            "--data",
            str(tmp_path / "data"),
            "--reason",
            "from the CLI",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    killed_at = time.time_ns()
    assert cli.returncode == 0, cli.stderr
    assert int(result(watcher)) - killed_at < 10**9


def test_processes_hammering_one_rate_limit_never_exceed_it(tmp_path: Path) -> None:
    store = tmp_path / "controls"
    hammers = [child(store, "hammer", "400") for _ in range(4)]
    time.sleep(1.0)  # let them import and open the store
    for h in hammers:
        assert h.stdin is not None
        h.stdin.write("go\n")
        h.stdin.flush()
    allowed = [int(result(h)) for h in hammers]
    # 300 per hour: the test's few seconds refill well under one token
    assert sum(allowed) <= 300, allowed
    assert sum(allowed) >= 300 - 4 * 19, allowed  # leases cost fairness only


def test_kills_survive_every_process_stopping(tmp_path: Path) -> None:
    store = tmp_path / "controls"
    assert result(child(store, "once")) == "free"
    controls = open_controls(store_dir=store, watch_seconds=None)
    controls.kill(KillScope.of("session", "s1"), "survives", "test")
    controls.close()
    assert result(child(store, "once")) == "killed"  # a fresh process, after a "restart"
    controls = open_controls(store_dir=store, watch_seconds=None)
    controls.unkill(KillScope.of("session", "s1"), "done", "test")
    controls.close()
    assert result(child(store, "once")) == "free"

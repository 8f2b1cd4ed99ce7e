"""The gateway's recorder (recorder.py): jobs in order, none lost, flush waits for all."""

from __future__ import annotations

import threading
import time

import pytest

from ringfence.adapters.mcp.recorder import Recorder


def test_without_a_thread_a_job_runs_at_once() -> None:
    done: list[int] = []
    recorder = Recorder()
    recorder.submit(lambda: done.append(1))
    assert done == [1]


def test_jobs_run_in_order_and_flush_returns_only_when_all_ran() -> None:
    recorder = Recorder(threaded=True)
    done: list[int] = []
    gate = threading.Event()

    def slow(i: int) -> None:
        gate.wait(5)
        time.sleep(0.001)
        done.append(i)

    try:
        for i in range(50):
            recorder.submit(lambda i=i: slow(i))
        assert len(done) < 50  # still waiting for the gate: flush must not return early
        gate.set()
        recorder.flush()
        assert done == list(range(50))
    finally:
        recorder.close()


def test_flush_runs_waiting_jobs_itself_when_the_thread_is_busy() -> None:
    recorder = Recorder(threaded=True)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def blocking() -> None:
        started.set()
        release.wait(5)
        order.append("first")

    try:
        recorder.submit(blocking)
        assert started.wait(5)
        recorder.submit(lambda: order.append("second"))
        threading.Timer(0.05, release.set).start()
        recorder.flush()  # waits for the first, then runs or waits for the second
        assert order == ["first", "second"]
    finally:
        recorder.close()


def test_a_failing_job_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(threaded=True)
    done: list[int] = []

    def boom() -> None:
        raise RuntimeError("store failed")

    try:
        recorder.submit(boom)
        recorder.submit(lambda: done.append(2))
        recorder.flush()
    finally:
        recorder.close()
    assert done == [2]
    assert "recording an outcome failed" in caplog.text


def test_close_writes_what_is_left_and_later_jobs_run_at_once() -> None:
    recorder = Recorder(threaded=True)
    done: list[int] = []
    for i in range(20):
        recorder.submit(lambda i=i: done.append(i))
    recorder.close()
    assert done == list(range(20))
    recorder.submit(lambda: done.append(99))
    assert done[-1] == 99


def test_many_submitters_lose_no_count() -> None:
    recorder = Recorder(threaded=True)
    done: list[int] = []
    lock = threading.Lock()

    def job() -> None:
        with lock:
            done.append(1)

    def submit_many() -> None:
        for _ in range(500):
            recorder.submit(job)

    threads = [threading.Thread(target=submit_many) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recorder.flush()
        assert len(done) == 2000
    finally:
        recorder.close()


def test_the_idle_hook_runs_once_after_jobs_stop() -> None:
    ran = threading.Event()
    calls: list[float] = []
    idle_after = 0.05

    def idle() -> None:
        calls.append(time.monotonic())
        ran.set()

    recorder = Recorder(threaded=True, idle=idle, idle_after=idle_after)
    try:
        time.sleep(3 * idle_after)
        assert not calls  # no job yet: nothing to be idle after
        last_job = [0.0]
        for _ in range(3):
            recorder.submit(lambda: last_job.__setitem__(0, time.monotonic()))
        recorder.flush()
        assert ran.wait(5)
        assert calls[0] - last_job[0] >= idle_after * 0.9
        time.sleep(3 * idle_after)
        assert len(calls) == 1  # once per quiet spell, not every interval
        ran.clear()
        recorder.submit(lambda: None)
        assert ran.wait(5)
        assert len(calls) == 2
    finally:
        recorder.close()


def test_a_failing_idle_hook_is_logged_and_the_thread_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def idle() -> None:
        raise RuntimeError("idle hook broke")

    recorder = Recorder(threaded=True, idle=idle, idle_after=0.01)
    try:
        recorder.submit(lambda: None)
        deadline = time.monotonic() + 5
        while "idle hook broke" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "idle hook broke" in caplog.text
        done: list[int] = []
        recorder.submit(lambda: done.append(1))
        recorder.flush()
        assert done == [1]
    finally:
        recorder.close()

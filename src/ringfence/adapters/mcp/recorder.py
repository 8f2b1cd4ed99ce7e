"""Outcome records written after the client has its answer, on a thread of their own.

Once a tool's answer is written to the client, what is left — observing the result into the
session (tripwire scan, provenance) and appending the outcome record — is the gateway's
largest piece of work per call.  Done on the event loop's thread it competes with the client
for the processor just as the client starts on the answer (measured in ``bench/gateway.py``).
:class:`Recorder` hands it to a thread, which runs while the event loop waits for the next
message.

Nothing is decided without it: :meth:`Recorder.flush` runs at the start of every request the
gateway turns into an action (``Requests.action``) and returns only when every record handed
over before has been written — by the thread, or right there if the thread has not got to it.
Jobs run one at a time, in the order they were handed over.  An outcome whose record is still
waiting when the process is killed is lost, as it would be if the process died while writing
it inline; its decision record was durable before the call was forwarded.

``idle``, if given, is called on the thread once no job has come for ``idle_after`` seconds
after the last one: the gateway takes in the session provenance its jobs left waiting
(:meth:`ringfence.runtime.sessions.Sessions.settle_all`), so a client that calls one tool at a
time, as an agent does, finds it taken in before its next call; calls that come faster are
taken in by the batch.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable

__all__ = ["Recorder"]

log = logging.getLogger("ringfence.gateway")


class Recorder:
    """Runs record jobs in order, on a thread (``threaded``) or at once in the caller."""

    def __init__(
        self,
        *,
        threaded: bool = False,
        idle: Callable[[], None] | None = None,
        idle_after: float = 0.005,
    ) -> None:
        self._idle = idle
        self._idle_after = idle_after
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._running = threading.Lock()  # held while a job runs: one at a time, in order
        self._waiting = 0  # handed over and not finished
        self._count = threading.Lock()  # for _waiting: += is not atomic between threads
        # A lock used as a doorbell: released by submit() to wake the thread, which waits
        # by acquiring it (cheaper than an Event's condition variable on every call).
        self._bell = threading.Lock()
        self._bell.acquire()
        self._closed = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(
                target=self._loop, name="ringfence-recorder", daemon=True
            )
            self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` soon (now, without a thread or once closed)."""
        if self._thread is None or self._closed:
            self._run(job)
            return
        with self._count:
            self._waiting += 1
        self._jobs.append(job)
        self._ring()

    def flush(self) -> None:
        """Return once every job handed over so far has run (running what is left here)."""
        while self._waiting:
            with self._running:
                try:
                    job = self._jobs.popleft()
                except IndexError:
                    continue  # the thread is finishing the last one: its count comes next
                self._finish(job)

    def close(self) -> None:
        """Run what is left and stop the thread; later jobs run at once."""
        self._closed = True
        self._ring()
        self.flush()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _ring(self) -> None:
        # Rung already and not yet answered: the thread will look at the jobs anyway.
        with contextlib.suppress(RuntimeError):
            self._bell.release()

    def _loop(self) -> None:
        busy = False  # jobs ran since the idle hook last did
        while not self._closed:
            if busy and self._idle is not None:
                if not self._bell.acquire(timeout=self._idle_after):
                    busy = False
                    self._run(self._idle)
                    continue
            else:
                self._bell.acquire()
            busy = True
            while self._jobs:
                with self._running:
                    try:
                        job = self._jobs.popleft()
                    except IndexError:
                        break
                    self._finish(job)

    def _finish(self, job: Callable[[], None]) -> None:
        try:
            self._run(job)
        finally:
            with self._count:
                self._waiting -= 1

    @staticmethod
    def _run(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a record job reports its own failures; this is the last net
            log.exception("recording an outcome failed")

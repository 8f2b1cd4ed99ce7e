"""Feed a sandboxed process its stdin and collect its outputs, within a cap and a deadline.

One thread, one selector: stdout and stderr are read as they come (the first ``cap`` bytes of
each are kept, the rest is read and dropped so the child never blocks on a full pipe), stdin
is written as the child reads it, and a pidfd says when the process has exited.  At the
deadline, or as soon as the main process has exited, ``kill`` is called: it must kill
everything the run started (the process group, or the bwrap namespace), which also closes any
copy of the pipes a left-behind child still holds.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Collected", "pump"]

_CHUNK = 1 << 16
_GRACE = 2.0  # seconds to drain the pipes after everything was killed
_POLL = 0.05  # without a pidfd, how often to look whether the process has exited


@dataclass
class Collected:
    """What :func:`pump` gathered."""

    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    cpu_seconds: float  # user + system time of the process and every descendant it reaped


def pump(
    proc: subprocess.Popen[bytes],
    stdin: bytes,
    *,
    cap: int,
    deadline: float,
    kill: Callable[[], None],
) -> Collected:
    """Run ``proc`` to its end (or ``deadline``, a :func:`time.monotonic` value); reap it."""
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    sel = selectors.DefaultSelector()
    bufs: dict[int, bytearray] = {}
    truncated: dict[int, bool] = {}
    for stream in (proc.stdout, proc.stderr):
        fd = stream.fileno()
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, "out")
        bufs[fd], truncated[fd] = bytearray(), False
    stdin_fd = proc.stdin.fileno()
    pending = memoryview(stdin)
    if pending:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE, "in")
    else:
        proc.stdin.close()
    pidfd = _pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    timed_out = exited = False
    usage: list[float] = []
    stop_at: float | None = None  # when to give up draining
    open_outputs = 2
    try:
        while True:
            now = time.monotonic()
            if not exited and _reap(proc, usage, block=False):
                exited = True
                kill()  # whatever the main process left running
                stop_at = now + _GRACE
                if pidfd is not None:
                    sel.unregister(pidfd)
            if not timed_out and not exited and now >= deadline:
                timed_out = True
                kill()
                stop_at = now + _GRACE
            if exited and open_outputs == 0:
                break
            if stop_at is not None and now >= stop_at:
                break
            wait = (stop_at if stop_at is not None else deadline) - now
            if pidfd is None and not exited:
                wait = min(wait, _POLL)
            for key, _ in sel.select(max(wait, 0.0)):
                fd = int(key.fd)
                if key.data == "out":
                    open_outputs -= _read(fd, bufs[fd], truncated, cap, sel)
                elif key.data == "in":
                    pending = _write(fd, pending, sel, proc)
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if not stream.closed:
                stream.close()
        if proc.returncode is None:
            kill()
            _reap(proc, usage, block=True)
    out_fd, err_fd = list(bufs)  # registered in this order: stdout, stderr
    return Collected(
        stdout=bytes(bufs[out_fd]),
        stderr=bytes(bufs[err_fd]),
        stdout_truncated=truncated[out_fd],
        stderr_truncated=truncated[err_fd],
        timed_out=timed_out,
        cpu_seconds=usage[0] if usage else 0.0,
    )


def _read(
    fd: int,
    buf: bytearray,
    truncated: dict[int, bool],
    cap: int,
    sel: selectors.BaseSelector,
) -> int:
    """Read what is there; 1 if the stream ended (and was unregistered), else 0."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return 0
    if not data:
        sel.unregister(fd)
        return 1
    room = cap - len(buf)
    if room > 0:
        buf += data[:room]
    if len(data) > room:
        truncated[fd] = True
    return 0


def _write(
    fd: int, pending: memoryview, sel: selectors.BaseSelector, proc: subprocess.Popen[bytes]
) -> memoryview:
    try:
        sent = os.write(fd, pending[:_CHUNK])
    except BlockingIOError:
        return pending
    except (BrokenPipeError, ConnectionResetError):
        sent = len(pending)  # the child stopped reading: drop the rest
    pending = pending[sent:]
    if not pending:
        sel.unregister(fd)
        assert proc.stdin is not None
        proc.stdin.close()
    return pending


def _reap(proc: subprocess.Popen[bytes], usage: list[float], *, block: bool) -> bool:
    """Reap ``proc`` with wait4 (for its CPU time, which Popen does not give); True if done."""
    try:
        pid, status, rusage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: nothing more to learn
        if proc.returncode is None:
            proc.returncode = -1
        return True
    if pid == 0:
        return False
    proc.returncode = os.waitstatus_to_exitcode(status)
    usage.append(rusage.ru_utime + rusage.ru_stime)
    return True


def _pidfd(pid: int) -> int | None:
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None

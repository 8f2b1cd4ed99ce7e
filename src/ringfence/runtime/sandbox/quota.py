"""The disk limit of a work directory on the host: measured while the run goes, not enforced by
the kernel.

The bwrap tier's private work directory is a tmpfs of ``disk_bytes``, so the kernel refuses
the write that would pass it (``ENOSPC``).  A work directory that is a host directory — every
run of the process tier, and a profile's ``workdir`` bound into a bwrap sandbox — has no such
bound, and ``RLIMIT_FSIZE`` caps each file, not their sum.  :class:`DiskWatch` measures such
a directory before the run, every ``POLL_S`` while it goes and once more after it ended;
when the run has added more than ``disk_bytes``, or more entries than its allowance, the run
is killed (its process group) and reported over the limit.

Measuring (:func:`measure`) is an ``os.scandir`` walk that follows no symbolic link and
counts what each entry takes on disk, ``st_blocks`` * 512: a sparse file counts what it
holds, a ``fallocate``'d one what it reserves, a hard-linked file once.  Its cost is bounded
by a cap on entries (reaching it is over the limit: an allowance of ``disk_bytes`` / 4 KiB
new entries, at least 10 000, which also stops a run filling the inode table with empty
files), and a slow walk is repeated less often: the watcher waits four times as long as the
last walk took, at least ``POLL_S``, so it uses at most a fifth of one CPU.  A directory the
walk cannot read counts as over the limit: a run must not hide what it wrote.

What it cannot see: what a run writes between two walks (a fast writer passes the limit by
about its write rate * ``POLL_S`` before it is stopped); files deleted while still open
(bounded by ``processes`` * ``open_files`` * ``file_size_bytes``, and freed when the run is
killed); files moved about to dodge a walk in progress.  See docs/sandbox.md.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ringfence.errors import SandboxError

__all__ = ["POLL_S", "DiskWatch", "Usage", "measure"]

POLL_S = 0.05
BLOCK = 4096  # the smallest a non-empty file takes on the usual file systems
MIN_NEW_ENTRIES = 10_000
BASELINE_ENTRIES = 1_000_000  # what a work directory may hold before a run


@dataclass(frozen=True)
class Usage:
    """What a directory holds: bytes on disk and entries beneath it.  ``full``: the walk
    stopped at its cap on entries; ``problem``: a directory that could not be read."""

    bytes: int
    entries: int
    full: bool = False
    problem: str | None = None


def measure(root: str, max_entries: int) -> Usage:
    """Bytes on disk (``st_blocks`` * 512, the root included, a hard-linked file once) and
    entries beneath ``root``, without following symbolic links; at most ``max_entries``."""
    try:
        total = os.lstat(root).st_blocks * 512
    except OSError as exc:
        return Usage(0, 0, problem=f"cannot read {root}: {exc.strerror}")
    entries = 0
    linked: set[tuple[int, int]] = set()
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        return Usage(total, entries, full=True)
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed since it was listed
                    if stat.S_ISDIR(info.st_mode):
                        folders.append(entry.path)
                    elif info.st_nlink > 1:
                        if (info.st_dev, info.st_ino) in linked:
                            continue
                        linked.add((info.st_dev, info.st_ino))
                    total += info.st_blocks * 512
        except FileNotFoundError:
            if folder == root:
                return Usage(total, entries, problem=f"{root} was removed")
        except OSError as exc:
            return Usage(total, entries, problem=f"cannot read {folder}: {exc.strerror}")
    return Usage(total, entries)


class DiskWatch:
    """The disk limit of one run whose work directory ``root`` is on the host (module doc).

    Made before the run: the directory's content then is its baseline (a profile's
    ``workdir`` may hold files already; only what the run adds counts).  SandboxError
    (``sandbox.disk_limit``) if the baseline cannot be measured.
    """

    def __init__(self, root: str, limit: int, *, poll_s: float = POLL_S) -> None:
        self.root = root
        self.limit = limit
        self.poll_s = poll_s
        self.base = measure(root, BASELINE_ENTRIES)
        if self.base.problem is not None or self.base.full:
            why = self.base.problem or f"more than {BASELINE_ENTRIES} entries"
            raise SandboxError(
                f"the work directory {root} cannot be measured for its disk limit: {why}",
                code="sandbox.disk_limit",
            )
        self.allowance = max(MIN_NEW_ENTRIES, limit // BLOCK)
        self.reason: str | None = None  # why the run is over the limit
        self.stopped = False  # True: the watcher killed the run while it went
        self._done = threading.Event()

    def over(self) -> str | None:
        """Why the directory is now over the limit, or None."""
        now = measure(self.root, self.base.entries + self.allowance)
        if now.problem is not None:
            return now.problem
        if now.full:
            return f"more than {self.allowance} new files and directories"
        grown = now.bytes - self.base.bytes
        if grown > self.limit:
            return f"{grown} bytes written, more than disk_bytes ({self.limit})"
        return None

    @contextlib.contextmanager
    def watching(self, kill: Callable[[], None]) -> Iterator[None]:
        """Measure every ``poll_s`` (or slower, see the module doc) while the block runs, and
        call ``kill`` (once) when over the limit."""
        thread = threading.Thread(
            target=self._watch, args=(kill,), name="ringfence-sandbox-disk", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            self._done.set()
            thread.join()

    def _watch(self, kill: Callable[[], None]) -> None:
        wait = self.poll_s
        while not self._done.wait(wait):
            started = time.monotonic()
            try:
                why = self.over()
            except Exception as exc:  # a bug must not leave the run unwatched: stop it
                why = f"the disk watcher failed: {exc!r}"
            if why is not None:
                self.reason, self.stopped = why, True
                kill()
                return
            wait = max(self.poll_s, 4 * (time.monotonic() - started))

    def verdict(self) -> str | None:
        """After the run: why it went over the limit (stopped, or ended over it), or None."""
        if self.reason is None:
            self.reason = self.over()
        return self.reason

    def note(self) -> bytes:
        """The line added to the run's stderr when it went over the limit."""
        how = "was stopped" if self.stopped else "ended"
        return (
            f"ringfence sandbox: sandbox.disk_limit: the run {how} over its work directory's "
            f"disk limit: {self.reason}\n"
        ).encode("utf-8", "replace")

"""A generation number shared by every process using one store folder, read in one load.

A store keeps its real generation in SQLite (bumped in the same transaction as the change)
and publishes it into an 8-byte word in a small file every process maps (``<name>.gen``).
Readers load the word (~0.1 µs) instead of querying SQLite; publishers copy the committed
number under an exclusive file lock (``<name>.lock``), so the word only moves forward.  A
writer that dies between its commit and the copy leaves the word behind until a reader
notices SQLite changed (``PRAGMA data_version``) and publishes again.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SharedWord"]

_WORD = struct.Struct("<Q")


class SharedWord:
    """The mapped word ``folder/<name>.gen`` and the lock file ``folder/<name>.lock``."""

    def __init__(self, folder: Path, name: str) -> None:
        self._lock_path = folder / f"{name}.lock"
        self._fd = os.open(folder / f"{name}.gen", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(self._fd).st_size < _WORD.size:
                os.ftruncate(self._fd, _WORD.size)
            self._map = mmap.mmap(self._fd, _WORD.size)
        except BaseException:
            os.close(self._fd)
            raise
        self._read = _WORD.unpack_from

    def read(self) -> int:
        """The published generation."""
        value: int = self._read(self._map, 0)[0]
        return value

    def set(self, value: int) -> None:
        """Publish ``value``; call it holding :meth:`locked`, with the committed number."""
        if self.read() != value:
            _WORD.pack_into(self._map, 0, value)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The exclusive file lock publishers (and store set-up) hold."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        """Unmap and close the word."""
        self._map.close()
        os.close(self._fd)

"""The write-ahead journal in front of the SQLite audit store.

One ``write(2)`` (or one copy into a memory map) per record puts it in the kernel's page
cache before ``append`` returns, so it survives the process being killed at any moment
(and, with ``durability="fsync"``, a power cut: writers then share an ``fdatasync`` —
group commit).  A background thread moves records into SQLite in batches; a journal file is
deleted only after everything in it is committed there.  Frames::

    type (1 byte) | seq (8, little-endian) | length (4) | payload | crc32 (4) of all before it

A frame cut short or with a bad CRC can only be the last one, from a write that never
returned: reading stops there.  So does a zero type byte: with ``durability="process"`` a
journal file is preallocated and memory-mapped (a record is then a memory copy into the page
cache, about 0.6 µs cheaper than a ``write(2)``, and as safe against the process being
killed), so its unused tail reads as zeros.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CHECKPOINT",
    "RECORD",
    "JournalFile",
    "encode_frame",
    "journal_files",
    "read_frames",
]

log = logging.getLogger(__name__)

RECORD = 1
CHECKPOINT = 2
_HEAD = struct.Struct("<BQI")
_CRC = struct.Struct("<I")
_pack_head = _HEAD.pack
_pack_crc = _CRC.pack
_crc32 = zlib.crc32
MAX_FRAME = 64 << 20


def write_parts(fd: int, parts: tuple[bytes, bytes, bytes], offset: int) -> int:
    """Write a frame's parts at ``offset`` with one ``pwritev`` (one syscall); its size."""
    size = len(parts[0]) + len(parts[1]) + len(parts[2])
    n = os.pwritev(fd, parts, offset)
    if n != size:  # a short write: finish it byte-exactly
        rest = memoryview(b"".join(parts))[n:]
        offset += n
        while rest:
            done = os.pwrite(fd, rest, offset)
            rest, offset = rest[done:], offset + done
    return size


class JournalFile:
    """One journal file being appended to: frames go to a memory map or through ``pwritev``.

    ``mapped`` asks for the preallocated, memory-mapped form (``capacity`` bytes, reserved
    with ``posix_fallocate`` so a write into the map can never fault for lack of disk).  If
    the file system cannot preallocate, frames are written with ``pwritev`` instead; so is a
    frame that does not fit in what is left of the map.  Not thread-safe: the store's lock
    serialises writers.
    """

    def __init__(self, path: Path, *, mapped: bool, capacity: int) -> None:
        self.path = path
        self.used = 0
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._map: mmap.mmap | None = None
        self._capacity = 0
        if mapped:
            try:
                os.posix_fallocate(self.fd, 0, capacity)
                self._map = mmap.mmap(self.fd, capacity, mmap.MAP_SHARED, mmap.PROT_WRITE)
                self._capacity = capacity
            except OSError as exc:
                # No preallocation here (some file systems) or no space for it: plain writes,
                # which report a full disk as an error instead of a SIGBUS.
                level = logging.DEBUG if exc.errno == errno.EOPNOTSUPP else logging.WARNING
                log.log(level, "journal %s: not memory-mapped (%s)", path, exc)
                os.ftruncate(self.fd, 0)

    @property
    def mapped(self) -> bool:
        """Whether frames are being copied into a memory map."""
        return self._map is not None

    def write(self, kind: int, seq: int, payload: bytes) -> int:
        """Append one frame; its size.  Raises OSError (plain writes only)."""
        n = len(payload)
        head = _pack_head(kind, seq, n)
        crc = _pack_crc(_crc32(payload, _crc32(head)))
        pos = self.used
        end = pos + 17 + n  # head 13 + payload + crc 4
        m = self._map
        if m is not None and end <= self._capacity:
            m[pos:end] = b"".join((head, payload, crc))  # one copy into the map
        else:
            write_parts(self.fd, (head, payload, crc), pos)
        self.used = end
        return end - pos

    def close(self) -> None:
        """Unmap and close (idempotent); the file keeps exactly the frames written."""
        if self.fd < 0:
            return
        try:
            if self._map is not None:
                self._map.close()
                self._map = None
                if self.used < self._capacity:
                    os.ftruncate(self.fd, self.used)  # tidiness only: zeros end a journal
        finally:
            os.close(self.fd)
            self.fd = -1

    def abandon(self) -> None:
        """Unmap and close without tidying, as a killed process would (for tests)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def encode_frame(kind: int, seq: int, payload: bytes) -> bytes:
    """One journal frame."""
    body = _HEAD.pack(kind, seq, len(payload)) + payload
    return body + _CRC.pack(zlib.crc32(body))


def read_frames(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(type, seq, payload) of every complete frame in one journal file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    pos, end = 0, len(data)
    while pos + _HEAD.size <= end:
        kind, seq, length = _HEAD.unpack_from(data, pos)
        stop = pos + _HEAD.size + length
        if kind not in (RECORD, CHECKPOINT) or length > MAX_FRAME or stop + _CRC.size > end:
            return
        (crc,) = _CRC.unpack_from(data, stop)
        if zlib.crc32(data[pos:stop]) != crc:
            return
        yield kind, seq, data[pos + _HEAD.size : stop]
        pos = stop + _CRC.size


def journal_files(directory: Path) -> list[tuple[int, Path]]:
    """(generation, path) of every journal file, oldest first."""
    out = []
    for p in directory.glob("audit-journal.*"):
        suffix = p.name.rsplit(".", 1)[-1]
        if suffix.isdigit():
            out.append((int(suffix), p))
    return sorted(out)

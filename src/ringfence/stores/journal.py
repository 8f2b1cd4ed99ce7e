"""The write-ahead journal in front of the SQLite audit store.

One ``write(2)`` (or one copy into a memory map) per record puts it in the kernel's page
cache before ``append`` returns, so it survives the process being killed at any moment
(and, with ``durability="fsync"``, a power cut: writers then share an ``fdatasync`` —
group commit).  A background thread moves records into SQLite in batches; a journal file is
deleted only after everything in it is committed there.  Frames::

    type (1 byte) | seq (8, little-endian) | length (4) | payload | crc32 (4) of all before it
    3 (1 byte)    | seq (8)  | length (4)  | payload | leaf (32) | crc32 (4) of the 13-byte head

The second form is a record whose payload is checked by its RFC 9162 leaf hash,
``SHA-256(0x00 || payload)``, which the audit log computes for every record anyway, and whose
head by a CRC32 of its own: writing it costs a copy of 32 bytes instead of a CRC32 over the
whole frame (≈ 0.25 µs a record); reading checks it with one SHA-256.  It reads back as an
ordinary record.  A frame cut short or failing its check can only be the last one, from a
write that never returned: reading stops there.  So does a zero type byte: with
``durability="process"`` a journal file is preallocated and memory-mapped (a record is then a
memory copy into the page cache, about 0.6 µs cheaper than a ``write(2)``, and as safe
against the process being killed), so its unused tail reads as zeros.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CHECKPOINT",
    "HASHED_RECORD",
    "RECORD",
    "JournalFile",
    "encode_frame",
    "journal_files",
    "journal_path",
    "read_frames",
]

log = logging.getLogger(__name__)

RECORD = 1
CHECKPOINT = 2
HASHED_RECORD = 3  # on disk only: read back as RECORD
_LEAF = hashlib.sha256(b"\x00")  # RFC 9162 leaf prefix
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

    def write(self, kind: int, seq: int, payload: bytes, leaf: bytes | None = None) -> int:
        """Append one frame; its size.  Raises OSError (plain writes only).  ``leaf``: a
        record's leaf hash, which then checks the frame instead of a CRC32."""
        n = len(payload)
        if leaf is not None and kind == RECORD and len(leaf) == 32:
            head = _pack_head(HASHED_RECORD, seq, n)
            tail = leaf + _pack_crc(_crc32(head))
        else:
            head = _pack_head(kind, seq, n)
            tail = _pack_crc(_crc32(payload, _crc32(head)))
        pos = self.used
        end = pos + 13 + n + len(tail)
        m = self._map
        if m is not None and end <= self._capacity:
            m[pos:end] = b"".join((head, payload, tail))  # one copy into the map
        else:
            write_parts(self.fd, (head, payload, tail), pos)
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
        if length > MAX_FRAME:
            return
        if kind == HASHED_RECORD:
            if stop + 36 > end:
                return
            (crc,) = _CRC.unpack_from(data, stop + 32)
            if zlib.crc32(data[pos : pos + _HEAD.size]) != crc:
                return
            payload = data[pos + _HEAD.size : stop]
            leaf = _LEAF.copy()
            leaf.update(payload)
            if leaf.digest() != data[stop : stop + 32]:
                return
            yield RECORD, seq, payload
            pos = stop + 36
            continue
        if kind not in (RECORD, CHECKPOINT) or stop + _CRC.size > end:
            return
        (crc,) = _CRC.unpack_from(data, stop)
        if zlib.crc32(data[pos:stop]) != crc:
            return
        yield kind, seq, data[pos + _HEAD.size : stop]
        pos = stop + _CRC.size


# Journal files this version writes may hold hashed record frames, which an older Ringfence
# cannot read: they get a name an older version never looks at (it would take their records
# for missing and could delete the file).  Both names are read, in generation order.
JOURNAL_NAME = "audit-journal2"
_READ_NAMES = ("audit-journal", JOURNAL_NAME)


def journal_path(directory: Path, generation: int) -> Path:
    """Where journal file ``generation`` is written."""
    return directory / f"{JOURNAL_NAME}.{generation}"


def journal_files(directory: Path) -> list[tuple[int, Path]]:
    """(generation, path) of every journal file (either name), oldest first."""
    out = []
    for name in _READ_NAMES:
        for p in directory.glob(f"{name}.*"):
            suffix = p.name.rsplit(".", 1)[-1]
            if suffix.isdigit():
                out.append((int(suffix), p))
    return sorted(out)

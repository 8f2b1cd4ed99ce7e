"""The write-ahead journal in front of the SQLite audit store.

One ``write(2)`` per record puts it in the kernel's page cache before ``append`` returns, so
it survives the process being killed at any moment (and, with ``durability="fsync"``, a
power cut: writers then share an ``fdatasync`` — group commit).  A background thread moves
records into SQLite in batches; a journal file is deleted only after everything in it is
committed there.  Frames::

    type (1 byte) | seq (8, little-endian) | length (4) | payload | crc32 (4) of all before it

A frame cut short or with a bad CRC can only be the last one, from a write that never
returned: reading stops there.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CHECKPOINT", "RECORD", "encode_frame", "journal_files", "read_frames"]

RECORD = 1
CHECKPOINT = 2
_HEAD = struct.Struct("<BQI")
_CRC = struct.Struct("<I")
MAX_FRAME = 64 << 20


def frame_parts(kind: int, seq: int, payload: bytes) -> tuple[bytes, bytes, bytes]:
    """A frame as (head, payload, crc), for one ``writev`` without copying the payload."""
    head = _HEAD.pack(kind, seq, len(payload))
    return head, payload, _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def write_parts(fd: int, parts: tuple[bytes, bytes, bytes]) -> int:
    """Write a frame's parts with one ``writev`` (one syscall, one append); its size."""
    size = len(parts[0]) + len(parts[1]) + len(parts[2])
    n = os.writev(fd, parts)
    if n != size:  # a short write: finish it byte-exactly, as write_all does
        write_all(fd, b"".join(parts)[n:])
    return size


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


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (one syscall in practice; loops on a short write)."""
    n = os.write(fd, data)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    while view:
        view = view[os.write(fd, view) :]

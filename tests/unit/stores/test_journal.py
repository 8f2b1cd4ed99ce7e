"""Journal frames: round trip, and a damaged tail ends the readable part there."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from ringfence.stores import journal
from ringfence.stores.journal import (
    CHECKPOINT,
    MAX_FRAME,
    RECORD,
    encode_frame,
    journal_files,
    read_frames,
    write_all,
)


def write(path: Path, *frames: bytes) -> Path:
    path.write_bytes(b"".join(frames))
    return path


def test_frame_layout() -> None:
    frame = encode_frame(RECORD, 7, b"abc")
    head = struct.pack("<BQI", RECORD, 7, 3)
    assert frame == head + b"abc" + struct.pack("<I", zlib.crc32(head + b"abc"))


def test_round_trip(tmp_path: Path) -> None:
    frames = [(RECORD, 0, b"{}"), (RECORD, 1, b""), (CHECKPOINT, 2, b"\x00\xff" * 100)]
    path = write(tmp_path / "j", *(encode_frame(*f) for f in frames))
    assert list(read_frames(path)) == frames


def test_missing_file_reads_as_empty(tmp_path: Path) -> None:
    assert list(read_frames(tmp_path / "gone")) == []


@pytest.mark.parametrize("cut", range(1, 21))
def test_every_truncation_of_the_last_frame_drops_only_it(tmp_path: Path, cut: int) -> None:
    good = encode_frame(RECORD, 0, b"first")
    last = encode_frame(RECORD, 1, b"second")
    assert len(last) == 23
    path = write(tmp_path / "j", good, last[: len(last) - cut])
    assert list(read_frames(path)) == [(RECORD, 0, b"first")]


@pytest.mark.parametrize("position", range(23))
def test_any_flipped_byte_in_the_last_frame_drops_only_it(tmp_path: Path, position: int) -> None:
    last = bytearray(encode_frame(RECORD, 1, b"second"))
    last[position] ^= 0x40
    path = write(tmp_path / "j", encode_frame(RECORD, 0, b"first"), bytes(last))
    assert list(read_frames(path)) == [(RECORD, 0, b"first")]


def test_unknown_frame_type_stops_reading(tmp_path: Path) -> None:
    head = struct.pack("<BQI", 3, 0, 1)
    bogus = head + b"x" + struct.pack("<I", zlib.crc32(head + b"x"))
    path = write(
        tmp_path / "j", encode_frame(RECORD, 0, b"a"), bogus, encode_frame(RECORD, 1, b"b")
    )
    assert list(read_frames(path)) == [(RECORD, 0, b"a")]


def test_oversized_length_stops_reading(tmp_path: Path) -> None:
    head = struct.pack("<BQI", RECORD, 0, MAX_FRAME + 1)
    path = write(tmp_path / "j", head + b"\x00" * 64)
    assert list(read_frames(path)) == []


def test_journal_files_sort_numerically_and_ignore_strangers(tmp_path: Path) -> None:
    for name in ("audit-journal.10", "audit-journal.9", "audit-journal.1", "audit-journal.tmp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "audit.sqlite").write_bytes(b"")
    assert [(g, p.name) for g, p in journal_files(tmp_path)] == [
        (1, "audit-journal.1"),
        (9, "audit-journal.9"),
        (10, "audit-journal.10"),
    ]


def test_write_all_survives_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    calls: list[int] = []

    def one_byte(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real(fd, bytes(data[:1]))

    fd = os.open(tmp_path / "j", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        monkeypatch.setattr(journal.os, "write", one_byte)
        write_all(fd, b"hello")
    finally:
        monkeypatch.undo()
        os.close(fd)
    assert (tmp_path / "j").read_bytes() == b"hello"
    assert calls == [5, 4, 3, 2, 1]


def test_short_writev_is_finished_byte_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.writev

    def short(fd: int, parts: list[bytes]) -> int:  # the kernel may write less than asked
        data = b"".join(parts)
        return os.write(fd, data[:7])

    path = tmp_path / "audit-journal.1"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    monkeypatch.setattr(journal.os, "writev", short)
    parts = journal.frame_parts(journal.RECORD, 3, b'{"a":1}')
    assert journal.write_parts(fd, parts) == len(b"".join(parts))
    monkeypatch.setattr(journal.os, "writev", real)
    os.close(fd)
    assert list(journal.read_frames(path)) == [(journal.RECORD, 3, b'{"a":1}')]
    assert path.read_bytes() == journal.encode_frame(journal.RECORD, 3, b'{"a":1}')

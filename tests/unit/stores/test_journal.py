"""Journal frames: round trip, and a damaged tail ends the readable part there."""

from __future__ import annotations

import errno
import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest

from ringfence.stores import journal
from ringfence.stores.journal import (
    CHECKPOINT,
    HASHED_RECORD,
    MAX_FRAME,
    RECORD,
    JournalFile,
    encode_frame,
    journal_files,
    read_frames,
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


def test_short_pwritev_is_finished_byte_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = os.pwrite

    def short(fd: int, parts: list[bytes], offset: int) -> int:  # the kernel may write less
        return real(fd, b"".join(parts)[:7], offset)

    def one_byte(fd: int, data: bytes, offset: int) -> int:
        calls.append(len(data))
        return real(fd, bytes(data[:1]), offset)

    path = tmp_path / "audit-journal.1"
    monkeypatch.setattr(journal.os, "pwritev", short)
    jf = JournalFile(path, mapped=False, capacity=0)
    jf.write(RECORD, 3, b'{"a":1}')
    monkeypatch.setattr(journal.os, "pwrite", one_byte)
    jf.write(RECORD, 4, b"xy")
    monkeypatch.undo()
    jf.close()
    assert list(read_frames(path)) == [(RECORD, 3, b'{"a":1}'), (RECORD, 4, b"xy")]
    assert path.read_bytes() == encode_frame(RECORD, 3, b'{"a":1}') + encode_frame(RECORD, 4, b"xy")
    assert calls == list(range(len(encode_frame(RECORD, 4, b"xy")) - 7, 0, -1))


def test_mapped_journal_is_preallocated_and_cut_to_its_frames_on_close(tmp_path: Path) -> None:
    path = tmp_path / "audit-journal.1"
    jf = JournalFile(path, mapped=True, capacity=1 << 20)
    assert jf.mapped
    jf.write(RECORD, 0, b"first")
    jf.write(CHECKPOINT, 1, b"cp")
    assert path.stat().st_size == 1 << 20  # space reserved up front
    # Readable while open (another process reads the same page cache), zeros ending it.
    assert list(read_frames(path)) == [(RECORD, 0, b"first"), (CHECKPOINT, 1, b"cp")]
    jf.close()
    jf.close()  # idempotent
    expected = encode_frame(RECORD, 0, b"first") + encode_frame(CHECKPOINT, 1, b"cp")
    assert path.read_bytes() == expected


def test_an_abandoned_mapped_journal_keeps_its_frames(tmp_path: Path) -> None:
    path = tmp_path / "audit-journal.1"
    jf = JournalFile(path, mapped=True, capacity=1 << 16)
    for seq in range(5):
        jf.write(RECORD, seq, b"r%d" % seq)
    jf.abandon()
    assert path.stat().st_size == 1 << 16
    assert [seq for _, seq, _ in read_frames(path)] == [0, 1, 2, 3, 4]


def test_frames_past_the_map_are_written_after_it(tmp_path: Path) -> None:
    path = tmp_path / "audit-journal.1"
    jf = JournalFile(path, mapped=True, capacity=4096)
    payloads = [bytes([65 + i]) * 1500 for i in range(6)]  # the third no longer fits
    for seq, payload in enumerate(payloads):
        jf.write(RECORD, seq, payload)
    assert [p for _, _, p in read_frames(path)] == payloads
    jf.close()
    assert path.read_bytes() == b"".join(encode_frame(RECORD, s, p) for s, p in enumerate(payloads))


def test_without_preallocation_frames_are_plain_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(journal.os, "posix_fallocate", unsupported)
    path = tmp_path / "audit-journal.1"
    jf = JournalFile(path, mapped=True, capacity=1 << 20)
    assert not jf.mapped
    jf.write(RECORD, 0, b"x")
    assert path.read_bytes() == encode_frame(RECORD, 0, b"x")  # no zero tail
    jf.close()


def test_a_full_disk_at_preallocation_falls_back_and_reports_on_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "posix_fallocate", no_space)
    jf = JournalFile(tmp_path / "audit-journal.1", mapped=True, capacity=1 << 20)
    assert not jf.mapped
    monkeypatch.setattr(journal.os, "pwritev", no_space)
    with pytest.raises(OSError, match="No space"):
        jf.write(RECORD, 0, b"x")
    jf.close()


def test_an_existing_journal_file_is_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "audit-journal.1"
    path.write_bytes(encode_frame(RECORD, 0, b"old"))
    with pytest.raises(FileExistsError):
        JournalFile(path, mapped=True, capacity=4096)
    assert list(read_frames(path)) == [(RECORD, 0, b"old")]


# -- records checked by their leaf hash ----------------------------------------------------------


def leaf_of(payload: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + payload).digest()


def hashed(tmp_path: Path, *frames: tuple[int, int, bytes]) -> bytes:
    """The bytes JournalFile.write puts down for ``frames``, records with their leaf hash."""
    path = tmp_path / "hashed.journal"
    f = JournalFile(path, mapped=False, capacity=0)
    for kind, seq, payload in frames:
        f.write(kind, seq, payload, leaf_of(payload) if kind == RECORD else None)
    f.close()
    data = path.read_bytes()
    path.unlink()
    return data


def test_a_hashed_record_frame_is_its_leaf_hash_not_a_crc(tmp_path: Path) -> None:
    data = hashed(tmp_path, (RECORD, 7, b"abc"))
    head = struct.pack("<BQI", HASHED_RECORD, 7, 3)
    assert data == head + b"abc" + leaf_of(b"abc") + struct.pack("<I", zlib.crc32(head))


def test_hashed_and_crc_frames_read_back_alike(tmp_path: Path) -> None:
    frames = [(RECORD, 0, b"{}"), (CHECKPOINT, 1, b"\x00\xff" * 100), (RECORD, 2, b"")]
    data = hashed(tmp_path, *frames) + encode_frame(RECORD, 3, b"old")
    path = write(tmp_path / "j", data)
    assert list(read_frames(path)) == [*frames, (RECORD, 3, b"old")]


@pytest.mark.parametrize("cut", range(1, 13 + 6 + 36))
def test_every_truncation_of_a_hashed_frame_drops_only_it(tmp_path: Path, cut: int) -> None:
    data = hashed(tmp_path, (RECORD, 0, b"first"), (RECORD, 1, b"second"))
    path = write(tmp_path / "j", data[: len(data) - cut])
    assert list(read_frames(path)) == [(RECORD, 0, b"first")]


@pytest.mark.parametrize("position", range(13 + 6 + 36))
def test_any_flipped_byte_in_a_hashed_frame_drops_only_it(tmp_path: Path, position: int) -> None:
    data = bytearray(hashed(tmp_path, (RECORD, 0, b"first"), (RECORD, 1, b"second")))
    data[13 + 5 + 36 + position] ^= 0x40
    path = write(tmp_path / "j", bytes(data))
    assert list(read_frames(path)) == [(RECORD, 0, b"first")]


def test_a_leaf_of_the_wrong_size_or_for_a_checkpoint_falls_back_to_a_crc(tmp_path: Path) -> None:
    path = tmp_path / "j"
    f = JournalFile(path, mapped=False, capacity=0)
    f.write(RECORD, 0, b"a", b"short")
    f.write(CHECKPOINT, 1, b"b", leaf_of(b"b"))
    f.close()
    assert path.read_bytes() == encode_frame(RECORD, 0, b"a") + encode_frame(CHECKPOINT, 1, b"b")
    assert list(read_frames(path)) == [(RECORD, 0, b"a"), (CHECKPOINT, 1, b"b")]

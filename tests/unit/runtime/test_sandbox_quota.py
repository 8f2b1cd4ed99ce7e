"""The disk limit of a work directory on the host (runtime/sandbox/quota.py): what a walk
counts and refuses to be fooled by, the baseline of a directory that held files before the
run, the watcher that kills a run over the limit, and failing closed when the directory
cannot be measured.  No sandbox, no timings: where the watcher thread must act, the test
waits for it with a generous deadline."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from ringfence.errors import SandboxError
from ringfence.runtime.sandbox import quota
from ringfence.runtime.sandbox.quota import DiskWatch, measure

MiB = 1 << 20
EVERYTHING = 1_000_000


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def used(path: Path) -> int:
    return measure(str(path), EVERYTHING).bytes


# -- measuring ---------------------------------------------------------------------------------


def test_files_in_nested_folders_are_counted(tmp_path: Path) -> None:
    empty = used(tmp_path)
    write(tmp_path / "a", MiB)
    write(tmp_path / "d" / "e" / "b", 2 * MiB)
    usage = measure(str(tmp_path), EVERYTHING)
    assert usage.bytes - empty >= 3 * MiB
    assert usage.entries == 4  # a, d, d/e, d/e/b
    assert usage.problem is None and not usage.full


def test_a_sparse_file_counts_what_it_holds_not_its_size(tmp_path: Path) -> None:
    empty = used(tmp_path)
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(64 * MiB)
    assert used(tmp_path) - empty < MiB


def test_reserved_space_counts(tmp_path: Path) -> None:
    empty = used(tmp_path)
    fd = os.open(tmp_path / "reserved", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, 4 * MiB)
    except OSError:
        pytest.skip("this file system cannot reserve space")
    finally:
        os.close(fd)
    assert used(tmp_path) - empty >= 4 * MiB


def test_a_hard_linked_file_counts_once(tmp_path: Path) -> None:
    write(tmp_path / "one", 2 * MiB)
    single = used(tmp_path)
    for i in range(5):
        os.link(tmp_path / "one", tmp_path / f"link{i}")
    assert used(tmp_path) - single < MiB


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside, work = tmp_path / "outside", tmp_path / "work"
    write(outside / "big", 4 * MiB)
    work.mkdir()
    empty = used(work)
    (work / "to-file").symlink_to(outside / "big")
    (work / "to-dir").symlink_to(outside)
    (work / "loop").symlink_to(work)
    usage = measure(str(work), EVERYTHING)
    assert usage.bytes - empty < MiB
    assert usage.entries == 3


def test_the_walk_stops_at_its_cap_on_entries(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"e{i}").touch()  # empty files: no blocks, but entries
    usage = measure(str(tmp_path), 10)
    assert usage.full
    assert usage.entries == 11
    assert not measure(str(tmp_path), 30).full


def refuse(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder`` unreadable to the walk (chmod 0 does not stop root)."""
    real = os.scandir

    def scandir(path: str) -> object:
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(quota.os, "scandir", scandir)


def test_a_folder_that_cannot_be_read_is_a_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "hidden" / "big", MiB)
    refuse(monkeypatch, tmp_path / "hidden")
    usage = measure(str(tmp_path), EVERYTHING)
    assert usage.problem is not None and "cannot read" in usage.problem


def test_a_folder_made_unreadable_is_a_problem() -> None:
    """Real permissions: as root (which reads any directory) the walk runs in a child that
    has dropped to ``nobody`` first, as a sandboxed run's files would be measured for it."""
    root = Path(tempfile.mkdtemp(prefix="ringfence-quota-"))  # under /tmp: anyone may enter
    try:
        root.chmod(0o755)
        hidden = root / "hidden"
        write(hidden / "big", MiB)
        assert _measure_as_user(root) is None  # the folder itself can be read
        hidden.chmod(0)
        problem = _measure_as_user(root)
        hidden.chmod(0o700)
        assert problem is not None and "cannot read" in problem and "hidden" in problem
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure_as_user(folder: Path) -> str | None:
    if os.geteuid() != 0:
        return measure(str(folder), EVERYTHING).problem
    return _measured_as_nobody(folder)


def _measured_as_nobody(folder: Path) -> str | None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, measure, report the problem through the pipe
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            problem = measure(str(folder), EVERYTHING).problem
            os.write(write_end, (problem or "").encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return said or None


def test_a_missing_root_is_a_problem(tmp_path: Path) -> None:
    assert measure(str(tmp_path / "gone"), EVERYTHING).problem is not None


# -- the watch ---------------------------------------------------------------------------------


def test_files_there_before_the_run_do_not_count(tmp_path: Path) -> None:
    write(tmp_path / "repo" / "big", 6 * MiB)
    watch = DiskWatch(str(tmp_path), 4 * MiB)
    assert watch.over() is None
    write(tmp_path / "new", 3 * MiB)
    assert watch.over() is None
    write(tmp_path / "more", 2 * MiB)
    why = watch.over()
    assert why is not None and "more than disk_bytes (4194304)" in why


def test_deleting_old_files_makes_room(tmp_path: Path) -> None:
    write(tmp_path / "old", 4 * MiB)
    watch = DiskWatch(str(tmp_path), 2 * MiB)
    (tmp_path / "old").unlink()
    write(tmp_path / "new", 5 * MiB)
    assert watch.over() is None  # the directory holds less than when the run began + 2 MiB


def test_too_many_new_entries_are_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quota, "MIN_NEW_ENTRIES", 20)
    for i in range(50):
        (tmp_path / f"old{i}").touch()
    watch = DiskWatch(str(tmp_path), 1 * MiB)  # allowance: max(20, 1 MiB / 4 KiB) = 256
    assert watch.allowance == 256
    for i in range(256):
        (tmp_path / f"new{i}").touch()
    assert watch.over() is None
    (tmp_path / "one-too-many").touch()
    why = watch.over()
    assert why is not None and "more than 256 new files and directories" in why


def test_a_baseline_that_cannot_be_measured_refuses_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SandboxError) as info:
        DiskWatch(str(tmp_path / "missing"), MiB)
    assert info.value.code == "sandbox.disk_limit"
    monkeypatch.setattr(quota, "BASELINE_ENTRIES", 3)
    for i in range(5):
        (tmp_path / f"f{i}").touch()
    with pytest.raises(SandboxError, match="more than 3 entries") as info:
        DiskWatch(str(tmp_path), MiB)
    assert info.value.code == "sandbox.disk_limit"


def test_a_folder_hidden_during_the_run_is_over_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = DiskWatch(str(tmp_path), 4 * MiB)
    write(tmp_path / "hidden" / "small", 1024)
    refuse(monkeypatch, tmp_path / "hidden")
    why = watch.over()
    assert why is not None and "cannot read" in why


def test_the_watcher_kills_a_run_over_the_limit_once(tmp_path: Path) -> None:
    watch = DiskWatch(str(tmp_path), MiB, poll_s=0.01)
    killed = threading.Event()
    kills: list[int] = []

    def kill() -> None:
        kills.append(1)
        killed.set()

    with watch.watching(kill):
        write(tmp_path / "a", 2 * MiB)
        assert killed.wait(30), "the watcher did not stop the run"
    assert kills == [1]
    assert watch.stopped
    assert watch.verdict() == watch.reason
    assert watch.reason is not None and "bytes written" in watch.reason
    assert b"sandbox.disk_limit" in watch.note() and b"was stopped" in watch.note()


def test_a_run_under_the_limit_is_left_alone(tmp_path: Path) -> None:
    watch = DiskWatch(str(tmp_path), 4 * MiB, poll_s=0.01)
    kills: list[int] = []
    with watch.watching(lambda: kills.append(1)):
        write(tmp_path / "a", MiB)
        threading.Event().wait(0.1)  # let the watcher measure a few times
    assert kills == []
    assert not watch.stopped
    assert watch.verdict() is None


def test_a_run_that_ends_over_the_limit_between_walks_is_caught_at_the_end(
    tmp_path: Path,
) -> None:
    watch = DiskWatch(str(tmp_path), MiB, poll_s=3600)  # the watcher never gets to walk
    kills: list[int] = []
    with watch.watching(lambda: kills.append(1)):
        write(tmp_path / "a", 2 * MiB)
    assert kills == []
    assert not watch.stopped
    assert watch.verdict() is not None
    assert b"ended over" in watch.note()


def test_a_failing_walk_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watch = DiskWatch(str(tmp_path), MiB, poll_s=0.01)

    def broken(root: str, max_entries: int) -> quota.Usage:
        raise RuntimeError("walk bug")

    monkeypatch.setattr(quota, "measure", broken)
    killed = threading.Event()
    with watch.watching(killed.set):
        assert killed.wait(30), "a failing watcher must stop the run"
    assert watch.stopped
    assert watch.reason is not None and "walk bug" in watch.reason

"""Escape attempts that must fail inside each sandbox tier, and the happy paths.

Every test runs once per tier.  A tier this machine cannot run is skipped locally, but fails
under CI (``CI=true``): the setup installs bubblewrap and CI's kernel has Landlock, so a skip
there would hide a sandbox that silently stopped working.
"""

from __future__ import annotations

import ast
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.runtime.sandbox import LocalSandbox, SandboxLimits, SandboxProfile, Tier

pytestmark = pytest.mark.integration

_BOX = LocalSandbox()


@pytest.fixture(params=list(Tier), ids=[t.value for t in Tier])
def tier(request: pytest.FixtureRequest) -> Tier:
    tier: Tier = request.param
    found = _BOX.availability(tier)
    if not found.available:
        message = f"the {tier} sandbox tier is not available here: {found.detail}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run every tier: see scripts/setup-sandbox.sh)")
        pytest.skip(message)
    return tier


def _profile(tier: Tier, **limits: float) -> SandboxProfile:
    base = SandboxLimits(wall_seconds=20)
    values = {**base.__dict__, **limits}
    return SandboxProfile(name=f"test-{tier}", tier=tier, limits=SandboxLimits(**values))


def _py(tier: Tier, code: str, **limits: float) -> tuple[int, str, str]:
    result = _BOX.run(_profile(tier, **limits), code=code)
    assert result.tier_used is tier
    return result.exit_code, result.stdout.decode(), result.stderr.decode()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A host folder anyone may read and write: only the sandbox stands in the way."""
    folder = Path(tempfile.mkdtemp(prefix="ringfence-escape-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _leftovers(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


# -- happy paths ------------------------------------------------------------------------------


def test_python_code_runs(tier: Tier) -> None:
    assert _py(tier, "print(1)") == (0, "1\n", "")


def test_shell_pipeline_runs(tier: Tier) -> None:
    result = _BOX.run(_profile(tier), argv=["sh", "-c", "printf 'b\\na\\nc\\n' | sort | head -n 2"])
    assert (result.exit_code, result.stdout, result.killed_reason) == (0, b"a\nb\n", None)


def test_stdin_reaches_the_program(tier: Tier) -> None:
    result = _BOX.run(_profile(tier), argv=["tr", "a-z", "A-Z"], stdin=b"hello" * 50_000)
    assert result.stdout == b"HELLO" * 50_000


def test_work_directory_is_private_and_writable(tier: Tier) -> None:
    code = "import os; open('f','w').write('x'); print(os.getcwd() == os.environ['HOME'])"
    assert _py(tier, code)[:2] == (0, "True\n")
    assert _py(tier, "import os; print(os.listdir('.'))")[1] == "[]\n"  # fresh each run


def test_runs_as_an_unprivileged_user(tier: Tier) -> None:
    code, out, _ = _py(tier, "import os; print(os.getuid(), os.geteuid())")
    assert code == 0
    uid, euid = map(int, out.split())
    assert uid != 0 and euid != 0
    if os.geteuid() == 0:
        assert uid == 65534


def test_output_is_capped(tier: Tier) -> None:
    profile = _profile(tier, output_bytes=1000)
    result = _BOX.run(profile, argv=["sh", "-c", "yes | head -c 1000000; yes | head -c 5000 >&2"])
    assert result.exit_code == 0
    assert result.stdout == b"y\n" * 500
    assert len(result.stderr) == 1000
    assert result.stdout_truncated and result.stderr_truncated


# -- escapes ----------------------------------------------------------------------------------


def test_no_network_connection(tier: Tier) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    waiter = threading.Thread(target=accept)
    waiter.start()
    code = f"""
import socket
for family, kind, address in [
    (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", {port})),
    (socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", {port})),
    (socket.AF_INET6, socket.SOCK_STREAM, ("::1", {port})),
]:
    try:
        s = socket.socket(family, kind)
        s.settimeout(1)
        s.connect(address)
        s.send(b"x")
        print("CONNECTED", family, kind)
    except OSError as exc:
        print("refused", exc.errno)
"""
    status, out, err = _py(tier, code)
    waiter.join()
    server.close()
    assert status == 0, err
    assert "CONNECTED" not in out
    assert out.count("refused") == 3
    assert accepted == []


def test_no_host_abstract_unix_socket(tier: Tier) -> None:
    name = f"\0ringfence-escape-{secrets.token_hex(4)}"
    server = socket.socket(socket.AF_UNIX)
    server.bind(name)
    server.listen(1)
    try:
        code = f"""
import socket
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect({name!r})
    print("CONNECTED")
except OSError as exc:
    print("refused", exc.errno)
"""
        assert "CONNECTED" not in _py(tier, code)[1]
    finally:
        server.close()


def test_cannot_write_outside_the_work_directory(tier: Tier, open_dir: Path) -> None:
    host_tmp = Path(tempfile.gettempdir(), f"ringfence-escape-{secrets.token_hex(4)}")
    targets = [open_dir / "planted", host_tmp, Path("/etc/ringfence-escape"), Path("/usr/x")]
    code = f"""
for path in {[str(t) for t in targets]!r}:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        print("WROTE", path)
    except OSError as exc:
        print("refused", path, exc.errno)
"""
    status, out, err = _py(tier, code)
    assert status == 0, err
    for target in targets:
        assert not target.exists(), f"the sandbox wrote {target}"
    if tier is Tier.PROCESS:  # bwrap: /tmp is the private work dir, so that write may "work"
        assert "WROTE" not in out


def test_cannot_read_shadow_or_open_host_files(tier: Tier, open_dir: Path) -> None:
    secret = open_dir / "secret.txt"
    secret.write_text("TOPSECRET")
    secret.chmod(0o644)
    code = f"""
for path in ["/etc/shadow", {str(secret)!r}, "/root/.bash_history", "/proc/1/environ"]:
    try:
        with open(path) as f:
            print("READ", path, f.read(200))
    except OSError as exc:
        print("refused", path, exc.errno)
"""
    status, out, err = _py(tier, code)
    assert status == 0, err
    assert "TOPSECRET" not in out
    assert "READ /etc/shadow" not in out or "root:" not in out
    assert "READ /root/" not in out


def test_host_environment_does_not_leak(tier: Tier, monkeypatch: pytest.MonkeyPatch) -> None:
    token = f"hunter2-{secrets.token_hex(8)}"
    monkeypatch.setenv("RINGFENCE_ESCAPE_SECRET", token)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", token)
    code = f"""
import os
print(sorted(os.environ))
for path in ["/proc/{os.getpid()}/environ", "/proc/{os.getppid()}/environ"]:
    try:
        print(open(path, "rb").read())
    except OSError as exc:
        print("refused", exc.errno)
"""
    status, out, err = _py(tier, code)
    assert status == 0, err
    assert token not in out
    names = ast.literal_eval(out.splitlines()[0])
    assert set(names) <= {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "LC_CTYPE"}


def test_fork_bomb_is_contained(tier: Tier) -> None:
    marker = f"ringfence-bomb-{secrets.token_hex(4)}"
    script = "bomb() { bomb | bomb & }; bomb; sleep 2"
    profile = _profile(tier, processes=32, wall_seconds=5)
    result = _BOX.run(profile, argv=["sh", "-c", script, marker])
    assert result.killed_reason in (None, "timeout")
    assert result.duration_ns < 15e9
    assert _leftovers(marker) == []
    assert subprocess.run(["true"], check=False).returncode == 0  # the host can still fork


def test_cannot_fill_the_disk_with_one_file(tier: Tier) -> None:
    code = """
import os
written = 0
try:
    with open("big", "wb") as f:
        for _ in range(256):
            f.write(b"x" * (1 << 20))
            f.flush()
            written += 1 << 20
    print("FILLED", written)
except OSError as exc:
    print("refused", exc.errno, os.path.getsize("big"))
"""
    status, out, err = _py(tier, code, file_size_bytes=4 << 20)
    assert status == 0, err
    assert out.startswith("refused 27 ")  # EFBIG
    assert int(out.split()[2]) <= 4 << 20


def test_cannot_fill_the_disk_with_many_files() -> None:
    tier = Tier.BWRAP  # the process tier has no disk quota: see docs/sandbox.md
    if not _BOX.availability(tier).available:
        if os.environ.get("CI") == "true":
            pytest.fail("bwrap is not available under CI")
        pytest.skip("bwrap is not available here")
    code = """
import errno
total = 0
try:
    for i in range(1000):
        with open(f"f{i}", "wb") as f:
            f.write(b"x" * (1 << 20))
        total += 1 << 20
    print("FILLED", total)
except OSError as exc:
    print("refused", exc.errno, total)
"""
    status, out, err = _py(tier, code, disk_bytes=8 << 20)
    assert status == 0, err
    assert out.startswith("refused 28 ")  # ENOSPC
    assert int(out.split()[2]) <= 8 << 20


def test_wall_clock_timeout_kills_everything(tier: Tier) -> None:
    marker = f"ringfence-sleep-{secrets.token_hex(4)}"
    profile = _profile(tier, wall_seconds=1)
    result = _BOX.run(profile, argv=["sh", "-c", "sleep 60 & sleep 60", marker])
    assert result.killed_reason == "timeout"
    assert result.exit_code < 0
    assert result.duration_ns < 10e9
    assert _leftovers(marker) == []


def test_background_children_do_not_outlive_the_run(tier: Tier) -> None:
    marker = f"ringfence-bg-{secrets.token_hex(4)}"
    result = _BOX.run(_profile(tier), argv=["sh", "-c", "(sleep 60 &) ; echo done", marker])
    assert result.stdout == b"done\n"
    assert result.killed_reason is None
    assert _leftovers(marker) == []


def test_cpu_limit(tier: Tier) -> None:
    result = _BOX.run(_profile(tier, cpu_seconds=1), code="while True: pass")
    assert result.killed_reason == "cpu"


def test_memory_limit(tier: Tier) -> None:
    code = "b = bytearray(1 << 30)\nprint('ALLOCATED')"
    status, out, err = _py(tier, code, memory_bytes=128 << 20)
    assert status != 0
    assert "ALLOCATED" not in out
    assert "MemoryError" in err


def test_no_new_namespaces_or_tracing(tier: Tier) -> None:
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("unshare", libc.unshare(0x10000000), ctypes.get_errno())   # CLONE_NEWUSER
print("ptrace", libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
"""
    status, out, err = _py(tier, code)
    assert status == 0, err
    assert "unshare -1 1" in out
    assert "ptrace -1 1" in out

"""Escape attempts that must fail inside each sandbox tier, and the happy paths; then the
network allowlist of the bwrap tier (egress proxy, relay), deny paths before allow paths.

Every test of the first part runs once per tier.  A tier this machine cannot run is skipped
locally, but fails under CI (``CI=true``): the setup installs bubblewrap and CI's kernel has
Landlock, so a skip there would hide a sandbox that silently stopped working.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import http.server
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.errors import SandboxError, SandboxUnavailable
from ringfence.runtime.sandbox import (
    Availability,
    Egress,
    LocalSandbox,
    SandboxLimits,
    SandboxProfile,
    Tier,
)
from ringfence.runtime.sandbox.egress import parse_host_rule

pytestmark = pytest.mark.integration

_BOX = LocalSandbox()


@pytest.fixture(params=list(Tier), ids=[t.value for t in Tier])
def tier(request: pytest.FixtureRequest) -> Tier:
    tier: Tier = request.param
    _need(tier)
    return tier


def _need(tier: Tier) -> None:
    """Skip unless ``tier`` can run here; under CI, fail instead."""
    found = _BOX.availability(tier)
    if not found.available:
        message = f"the {tier} sandbox tier is not available here: {found.detail}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run every tier: see scripts/setup-sandbox.sh)")
        pytest.skip(message)


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


_MANY_FILES = """
total = 0
try:
    for i in range(200):
        with open(f"f{i}", "wb") as f:
            f.write(b"x" * (256 << 10))
        total += 256 << 10
    print("FILLED", total)
except OSError as exc:
    print("refused", exc.errno, total)
"""


def test_cannot_fill_the_disk_with_many_files(tier: Tier) -> None:
    result = _BOX.run(_profile(tier, disk_bytes=8 << 20), code=_MANY_FILES)
    out, err = result.stdout.decode(), result.stderr.decode()
    if tier is Tier.BWRAP:  # a tmpfs of disk_bytes: the kernel refuses the write
        assert result.exit_code == 0, err
        assert out.startswith("refused 28 ")  # ENOSPC
        assert int(out.split()[2]) <= 8 << 20
        assert result.killed_reason is None
        return
    # The process tier measures the work dir: the run is killed (or, if it finished between
    # two walks, reported) over the limit, and the result says why.
    assert result.killed_reason == "disk"
    assert not result.ok
    assert "sandbox.disk_limit" in err
    assert "more than disk_bytes (8388608)" in err
    assert result.summary()["killed_reason"] == "disk"


def test_a_run_that_keeps_writing_is_stopped_by_the_disk_limit(tier: Tier) -> None:
    code = """
import time
for i in range(64):
    with open(f"f{i}", "wb") as f:
        f.write(b"x" * (256 << 10))
print("WROTE", flush=True)
time.sleep(60)
print("NOT STOPPED")
"""
    result = _BOX.run(_profile(tier, disk_bytes=8 << 20, wall_seconds=30), code=code)
    err = result.stderr.decode()
    if tier is Tier.BWRAP:
        assert result.exit_code == 1 and "No space left on device" in err
        return
    assert result.killed_reason == "disk"
    assert result.exit_code == -signal.SIGKILL
    assert result.stdout == b"WROTE\n"
    assert "the run was stopped over its work directory's disk limit" in err  # not the clock


def test_many_empty_files_are_stopped_too() -> None:
    tier = Tier.PROCESS  # bwrap: the tmpfs's inode count bounds them (half the RAM's pages)
    _need(tier)
    code = """
import time
for i in range(20000):
    open(f"e{i}", "wb").close()
print("MADE", flush=True)
time.sleep(60)
"""
    result = _BOX.run(_profile(tier, disk_bytes=1 << 20, wall_seconds=30), code=code)
    assert result.killed_reason == "disk"
    assert "new files and directories" in result.stderr.decode()


def test_writing_under_the_disk_limit_is_unaffected(tier: Tier) -> None:
    code = """
import os
for i in range(4):
    with open(f"f{i}", "wb") as f:
        f.write(b"x" * (1 << 20))
print(sorted(os.listdir(".")), sum(os.path.getsize(n) for n in os.listdir(".")))
"""
    result = _BOX.run(_profile(tier, disk_bytes=8 << 20), code=code)
    assert result.ok, result.stderr
    assert result.killed_reason is None
    assert result.stdout == b"['f0', 'f1', 'f2', 'f3'] 4194304\n"
    assert b"disk_limit" not in result.stderr


@pytest.fixture
def host_workdir() -> Iterator[Path]:
    """A folder anyone may write, outside /tmp (a work dir beneath /tmp has its own test)."""
    folder = Path(tempfile.mkdtemp(prefix="ringfence-workdir-", dir="/var/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_workdir_on_the_host_is_held_to_the_disk_limit(tier: Tier, host_workdir: Path) -> None:
    (host_workdir / "before").write_bytes(b"x" * (16 << 20))  # already there: does not count
    profile = dataclasses.replace(_profile(tier, disk_bytes=8 << 20), workdir=str(host_workdir))
    fine = _BOX.run(profile, code="open('small', 'wb').write(b'x' * (1 << 20))")
    assert fine.ok, fine.stderr
    over = _BOX.run(profile, code=_MANY_FILES)
    assert over.killed_reason == "disk"
    assert b"sandbox.disk_limit" in over.stderr
    assert (host_workdir / "before").stat().st_size == 16 << 20  # what was there is left alone


def test_a_workdir_beneath_tmp_works_and_temp_files_land_in_it(tier: Tier) -> None:
    folder = Path(tempfile.mkdtemp(prefix="ringfence-workdir-"))  # /tmp/ringfence-workdir-…
    folder.chmod(0o777)
    try:
        profile = dataclasses.replace(_profile(tier), workdir=str(folder))
        code = "import tempfile; print(tempfile.mkstemp(prefix='t-')[1])"
        result = _BOX.run(profile, code=code)
        assert result.ok, result.stderr
        made = Path(result.stdout.decode().strip())
        assert made.parent == folder
        assert [p.name for p in folder.iterdir()] == [made.name]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_workdir_that_cannot_be_measured_runs_nothing(tier: Tier, open_dir: Path) -> None:
    missing = open_dir / "missing"  # neither tier can run in it: nothing may run at all
    profile = dataclasses.replace(_profile(tier), workdir=str(missing))
    with pytest.raises(SandboxError):
        _BOX.run(profile, argv=["sh", "-c", f"touch {open_dir}/ran"])
    assert not (open_dir / "ran").exists()


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


# -- network allowlist (bwrap tier: egress proxy outside, relay inside) ------------------------


def _require_bwrap() -> None:
    found = _BOX.availability(Tier.BWRAP)
    if not found.available:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bwrap is not available under CI: {found.detail}")
        pytest.skip(f"bwrap is not available here: {found.detail}")


class _Web(http.server.BaseHTTPRequestHandler):
    """GET: the path and Host header it was asked for.  POST: the body, back."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(f"path={self.path} host={self.headers['Host']}".encode())

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))

    def _answer(self, body: bytes) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[http.server.ThreadingHTTPServer]:
    _require_bwrap()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Web)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _net(*allow: str, allow_private: bool = True, **limits: float) -> SandboxProfile:
    base = SandboxLimits(wall_seconds=30)
    return SandboxProfile(
        name="net",
        network=Egress(tuple(parse_host_rule(a) for a in allow), allow_private=allow_private),
        limits=SandboxLimits(**{**base.__dict__, **limits}),
    )


def _hits(server: http.server.ThreadingHTTPServer) -> list[str]:
    return server.hits  # type: ignore[attr-defined,no-any-return]


# Runs inside the sandbox: ask the relay for one request head; print the status line.
_ASK = """
import socket, sys
def ask(head, body=b""):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=10)
    s.sendall(head + body)
    data = b""
    while b"\\r\\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.split(b"\\r\\n", 1)[0].decode()
"""


def test_allowed_host_is_reachable_through_the_proxy(
    web: http.server.ThreadingHTTPServer,
) -> None:
    port = web.server_address[1]
    code = f"""
import http.client, os, urllib.request
print(urllib.request.urlopen("http://localhost:{port}/plain").read().decode())
tunnel = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
tunnel.set_tunnel("localhost", {port})
tunnel.request("GET", "/tunnel")
print(tunnel.getresponse().read().decode())
big = os.urandom(2 << 20)
tunnel = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
tunnel.set_tunnel("localhost", {port})
tunnel.request("POST", "/echo", body=big)
print(tunnel.getresponse().read() == big)
print(os.environ["HTTPS_PROXY"], os.environ["http_proxy"], repr(os.environ["NO_PROXY"]))
"""
    profile = _net(f"localhost:{port}")
    result = _BOX.run(profile, code=code, env={"HTTPS_PROXY": "http://evil.example:1"})
    assert result.exit_code == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        f"path=/plain host=localhost:{port}",
        f"path=/tunnel host=localhost:{port}",
        "True",
        "http://127.0.0.1:3128 http://127.0.0.1:3128 ''",  # the profile's proxy wins
    ]
    assert _hits(web) == ["/plain", "/tunnel", "/echo"]
    assert result.egress is not None
    records = result.egress.connections
    assert [(r.method, r.target, r.allowed) for r in records] == [
        ("GET", f"http://localhost:{port}/plain", True),
        ("CONNECT", f"localhost:{port}", True),
        ("CONNECT", f"localhost:{port}", True),
    ]
    assert {r.address for r in records} == {"127.0.0.1"}
    assert {r.rule for r in records} == {f"localhost:{port}"}
    assert records[2].bytes_out > 2 << 20 and records[2].bytes_in > 2 << 20
    assert result.summary()["egress"]["connections"][0]["allowed"] is True


def test_curl_uses_the_proxy(web: http.server.ThreadingHTTPServer) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port = web.server_address[1]
    script = f"curl -sS http://localhost:{port}/curl; echo; curl -sS https://example.com/"
    result = _BOX.run(_net(f"localhost:{port}"), argv=["sh", "-c", script])
    assert result.stdout.decode().splitlines()[0] == f"path=/curl host=localhost:{port}"
    assert b"403" in result.stderr  # curl: CONNECT tunnel failed, response 403
    assert result.egress is not None
    assert [(r.target, r.allowed, r.status) for r in result.egress.connections] == [
        (f"http://localhost:{port}/curl", True, 200),
        ("example.com:443", False, 403),
    ]


def test_hosts_off_the_list_are_refused_and_recorded(
    web: http.server.ThreadingHTTPServer,
) -> None:
    port = web.server_address[1]
    code = (
        _ASK
        + f"""
import urllib.error, urllib.request
for url in ["http://example.com/", "http://localhost:{port + 1 if port < 65535 else 1}/"]:
    try:
        urllib.request.urlopen(url)
        print("FETCHED", url)
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode().strip())
print(ask(b"CONNECT pypi.org:443 HTTP/1.1\\r\\n\\r\\n"))
print(ask(b"CONNECT sub.localhost:{port} HTTP/1.1\\r\\n\\r\\n"))
"""
    )
    result = _BOX.run(_net(f"localhost:{port}"), code=code)
    assert result.exit_code == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "FETCHED" not in out
    lines = out.splitlines()
    assert lines[0].startswith("403 ringfence egress proxy: example.com:80 is not in")
    assert lines[1].startswith("403 ringfence egress proxy: localhost:")
    assert lines[2:] == ["HTTP/1.1 403 Forbidden"] * 2
    assert _hits(web) == []
    assert result.egress is not None
    assert [(r.allowed, r.status) for r in result.egress.connections] == [(False, 403)] * 4
    assert all("allowlist" in r.reason for r in result.egress.connections)


def test_direct_connections_fail_without_the_proxy(web: http.server.ThreadingHTTPServer) -> None:
    port = web.server_address[1]
    code = f"""
import errno, os, socket, urllib.request
for address in [("127.0.0.1", {port}), ("1.1.1.1", 443), ("169.254.169.254", 80)]:
    try:
        socket.create_connection(address, timeout=5).close()
        print("CONNECTED", address)
    except OSError as exc:
        print("refused", errno.errorcode.get(exc.errno, exc.errno))
try:
    socket.getaddrinfo("example.com", 443)
    print("RESOLVED")
except OSError:
    print("no dns")
for name in list(os.environ):
    if name.lower().endswith("_proxy"):
        del os.environ[name]
try:
    urllib.request.urlopen("http://localhost:{port}/direct", timeout=5)
    print("FETCHED")
except OSError as exc:
    print("refused", type(exc).__name__)
"""
    result = _BOX.run(_net(f"localhost:{port}"), code=code)
    assert result.exit_code == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    # The sandbox's own loopback has nothing on the port; nothing else is routed at all.
    assert lines == [
        "refused ECONNREFUSED",
        "refused ENETUNREACH",
        "refused ENETUNREACH",
        "no dns",
        "refused URLError",
    ]
    assert _hits(web) == []
    assert result.egress is not None and result.egress.connections == ()


def test_other_socket_families_stay_refused(web: http.server.ThreadingHTTPServer) -> None:
    code = """
import socket
for name, family, kind in [
    ("netlink", socket.AF_NETLINK, socket.SOCK_RAW),
    ("packet", socket.AF_PACKET, socket.SOCK_RAW),
    ("vsock", 40, socket.SOCK_STREAM),  # AF_VSOCK: not namespaced, reaches the hypervisor
    ("raw", socket.AF_INET, socket.SOCK_RAW),
]:
    try:
        socket.socket(family, kind).close()
        print("MADE", name)
    except OSError as exc:
        print("refused", name, exc.errno)
"""
    result = _BOX.run(_net(f"localhost:{web.server_address[1]}"), code=code)
    assert result.exit_code == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "MADE" not in out
    assert out.count("refused") == 4


def test_ip_literals_and_metadata_are_refused(web: http.server.ThreadingHTTPServer) -> None:
    port = web.server_address[1]
    resolved = {"metadata.test": ["169.254.169.254"], "localhost": ["127.0.0.1"]}
    box = LocalSandbox(resolver=lambda host, _port: resolved[host])
    code = (
        _ASK
        + f"""
for head in [
    b"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n",
    b"CONNECT [::1]:{port} HTTP/1.1\\r\\n\\r\\n",
    b"GET http://127.0.0.1:{port}/ip HTTP/1.1\\r\\n\\r\\n",
    b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\\r\\n\\r\\n",
    b"GET http://metadata.test/latest/meta-data/ HTTP/1.1\\r\\n\\r\\n",
    b"CONNECT metadata.test:443 HTTP/1.1\\r\\n\\r\\n",
]:
    print(ask(head))
"""
    )
    profile = _net(f"localhost:{port}", "metadata.test")  # even allowed, even allow_private
    result = box.run(profile, code=code)
    assert result.exit_code == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == ["HTTP/1.1 403 Forbidden"] * 6
    assert _hits(web) == []
    assert result.egress is not None
    reasons = [r.reason for r in result.egress.connections]
    assert all("IP address" in r for r in reasons[:4])
    assert all("169.254.169.254, a cloud metadata address" in r for r in reasons[4:])
    assert not any(r.allowed for r in result.egress.connections)


def test_loopback_needs_allow_private(web: http.server.ThreadingHTTPServer) -> None:
    port = web.server_address[1]
    code = _ASK + f'print(ask(b"CONNECT localhost:{port} HTTP/1.1\\r\\n\\r\\n"))'
    result = _BOX.run(_net(f"localhost:{port}", allow_private=False), code=code)
    assert result.stdout == b"HTTP/1.1 403 Forbidden\n"
    assert result.egress is not None
    (record,) = result.egress.connections
    assert "a loopback address (allow_private: true allows it)" in record.reason
    assert _hits(web) == []


def test_proxy_survives_garbage_from_the_sandbox(web: http.server.ThreadingHTTPServer) -> None:
    port = web.server_address[1]
    code = (
        _ASK
        + f"""
import os, random
rng = random.Random(5)
for _ in range(20):
    print(ask(rng.randbytes(rng.randrange(1, 12000)) + b"\\r\\n\\r\\n") or "closed")
print(ask(b"A" * 50000))
print(ask(b"CONNECT localhost:{port} HTTP/1.1\\r\\n" + b"X: y\\r\\n" * 200 + b"\\r\\n"))
import urllib.request
print(urllib.request.urlopen("http://localhost:{port}/after").read().decode())
"""
    )
    result = _BOX.run(_net(f"localhost:{port}"), code=code)
    assert result.exit_code == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[-1] == f"path=/after host=localhost:{port}"
    assert all(line.split()[1] in ("400", "403", "431") for line in lines[:-1])
    assert _hits(web) == ["/after"]
    assert result.egress is not None
    assert [r.allowed for r in result.egress.connections] == [False] * 22 + [True]


def test_long_code_and_exit_status_survive_the_relay(web: http.server.ThreadingHTTPServer) -> None:
    port = web.server_address[1]
    code = "x = 1\n" * 20_000 + "import sys; print('ran'); sys.exit(3)\n"  # handed over in a memfd
    result = _BOX.run(_net(f"localhost:{port}"), code=code)
    assert (result.exit_code, result.stdout) == (3, b"ran\n")
    missing = _BOX.run(_net(f"localhost:{port}"), argv=["no-such-command-ringfence"])
    assert missing.exit_code == 127
    assert b"cannot run 'no-such-command-ringfence'" in missing.stderr


def test_timeout_still_kills_everything_with_the_relay(
    web: http.server.ThreadingHTTPServer,
) -> None:
    port = web.server_address[1]
    marker = f"ringfence-net-{secrets.token_hex(4)}"
    profile = _net(f"localhost:{port}", wall_seconds=1)
    result = _BOX.run(profile, argv=["sh", "-c", "sleep 60 & sleep 60", marker])
    assert result.killed_reason == "timeout"
    assert _leftovers(marker) == []


def test_relay_that_cannot_start_fails_closed(web: http.server.ThreadingHTTPServer) -> None:
    port = web.server_address[1]
    profile = dataclasses.replace(_net(f"localhost:{port}"), python="/nonexistent/python3")
    result = _BOX.run(profile, argv=["echo", "RAN"])
    assert result.exit_code != 0
    assert b"RAN" not in result.stdout


def test_process_tier_never_gets_the_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _BOX.availability(Tier.PROCESS).available:
        pytest.skip("the process tier is not available here")
    box = LocalSandbox()
    with pytest.raises(SandboxUnavailable, match="process tier cannot enforce"):
        box.run(dataclasses.replace(_net("pypi.org"), tier=Tier.PROCESS), argv=["true"])
    # A bwrap profile that may fall back runs there with no network at all.
    monkeypatch.setitem(
        box._probes, Tier.BWRAP, Availability(Tier.BWRAP, False, "switched off for this test")
    )
    profile = dataclasses.replace(_net("pypi.org"), allow_weaker=True)
    code = """
import os, socket
print(sorted(n for n in os.environ if n.lower().endswith("_proxy")))
try:
    socket.create_connection(("127.0.0.1", 3128), timeout=2)
    print("CONNECTED")
except OSError as exc:
    print("refused", exc.errno)
"""
    result = box.run(profile, code=code)
    assert result.tier_used is Tier.PROCESS
    assert result.stdout.decode().splitlines()[0] == "[]"
    assert "CONNECTED" not in result.stdout.decode()
    assert result.egress is None

"""bubblewrap's command line for a profile, and its status report.

See :mod:`.local` for what the layout gives a sandbox and why (``--as-pid-1``, the read-only
root, ``/tmp`` pointing at the work directory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from ringfence.runtime.sandbox import forwarder
from ringfence.runtime.sandbox.profile import SandboxProfile

__all__ = [
    "EGRESS_PORT",
    "EGRESS_SOCKET",
    "NOBODY",
    "PROXY_ENV",
    "WORKDIR",
    "layout",
    "read_status",
    "relay_command",
]

NOBODY = 65534
WORKDIR = "/work"  # the private work directory inside the sandbox, unless a profile names one
EGRESS_SOCKET = "/.ringfence/egress.sock"  # the egress proxy's socket, inside the sandbox
EGRESS_PORT = 3128  # where the relay listens, inside the sandbox
_PROXY_URL = f"http://127.0.0.1:{EGRESS_PORT}"
# The environment of a command whose profile allows named hosts.  Set after the profile's
# and the caller's variables: pointing a client elsewhere would only lose its network.
PROXY_ENV = {
    **{name: _PROXY_URL for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")},
    **{name: _PROXY_URL for name in ("http_proxy", "https_proxy", "all_proxy")},
    "NO_PROXY": "",
    "no_proxy": "",
}
_INNER_TMP = "/tmp"  # noqa: S108  (inside the sandbox: a symlink to its private work dir)


def layout(profile: SandboxProfile, *, egress_socket: str | None = None) -> list[str]:
    """bwrap's arguments for ``profile``'s namespaces and file system (no command).

    ``egress_socket``: the host path of the egress proxy's UNIX socket, bound read-only (a
    socket on a read-only mount can still be connected to) at :data:`EGRESS_SOCKET`.  The
    network namespace is unshared either way.
    """
    args = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",  # no inner reaper: it would be orphaned (see the module doc)
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--hostname",
        "sandbox",
    ]
    bound: list[str] = []
    for path in profile.read_only:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            args += ["--ro-bind", path, path]
            bound.append(path)
    for path in profile.hide:
        if not any(path == b or path.startswith(b + "/") for b in bound):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            args += ["--tmpfs", path, "--remount-ro", path]
        elif os.path.lexists(path):
            args += ["--ro-bind", "/dev/null", path]
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev"]
    if profile.workdir is None:
        args += ["--size", str(profile.limits.disk_bytes), "--tmpfs", WORKDIR]
        workdir = WORKDIR
    else:
        args += ["--bind", profile.workdir, profile.workdir]
        workdir = profile.workdir
    inside_tmp = workdir == _INNER_TMP or workdir.startswith(_INNER_TMP + "/")
    if _INNER_TMP not in profile.read_only and not inside_tmp:
        # A work dir under /tmp makes bwrap create /tmp to mount it, so there /tmp stays a
        # (read-only) folder holding the work dir; TMPDIR points at the work dir either way.
        args += ["--symlink", workdir, _INNER_TMP]
    if egress_socket is not None:
        args += ["--ro-bind", egress_socket, EGRESS_SOCKET]
    return [*args, "--remount-ro", "/"]


def relay_command(python: str, command: Sequence[str]) -> list[str]:
    """``command`` preceded by :mod:`.forwarder`, run by ``python`` inside the sandbox."""
    relay = _forwarder_source()
    return [python, "-I", "-S", "-c", relay, EGRESS_SOCKET, str(EGRESS_PORT), "--", *command]


@cache
def _forwarder_source() -> str:
    return Path(forwarder.__file__).read_text(encoding="utf-8")


def read_status(fd: int) -> dict[str, object]:
    """bwrap's --json-status-fd: one JSON object per line ({"child-pid": n}, {"exit-code": n})."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    status: dict[str, object] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            status.update(item)
    return status

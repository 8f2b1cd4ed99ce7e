"""bubblewrap's command line for a profile, and its status report.

See :mod:`.local` for what the layout gives a sandbox and why (``--as-pid-1``, the read-only
root, ``/tmp`` pointing at the work directory).
"""

from __future__ import annotations

import json
import os

from ringfence.runtime.sandbox.profile import SandboxProfile

__all__ = ["NOBODY", "WORKDIR", "layout", "read_status"]

NOBODY = 65534
WORKDIR = "/work"  # the private work directory inside the sandbox, unless a profile names one
_INNER_TMP = "/tmp"  # noqa: S108  (inside the sandbox: a symlink to its private work dir)


def layout(profile: SandboxProfile) -> list[str]:
    """bwrap's arguments for ``profile``'s namespaces and file system (no command)."""
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
    if _INNER_TMP not in profile.read_only and workdir != _INNER_TMP:
        args += ["--symlink", workdir, _INNER_TMP]
    return [*args, "--remount-ro", "/"]


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

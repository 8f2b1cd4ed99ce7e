"""Landlock through raw system calls (ctypes), for the process tier.

A :class:`Ruleset` is built in the parent — ``landlock_create_ruleset`` and one
``landlock_add_rule`` per allowed path, which restrict nothing yet — and the child only calls
:func:`restrict_self` on its file descriptor between ``fork`` and ``exec``: no allocation, no
path lookups, nothing that could block in a forked copy of a threaded process.

Rights follow the kernel's ABI version (``abi()``): v1 file system, v2 ``REFER``, v3
``TRUNCATE``, v4 TCP bind/connect, v5 device ``ioctl``, v6 scoping of abstract UNIX sockets
and signals.  Everything the ABI can restrict is restricted except what a rule grants.
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = ["LandlockError", "Ruleset", "abi", "restrict_self"]

_SYS_CREATE_RULESET = 444  # the same number on every architecture
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP = 1 << 0  # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
_SCOPE_SIGNAL = 1 << 1

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (
    WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # all a file rule may hold

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class LandlockError(OSError):
    """Landlock refused a ruleset or a rule."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("parent_fd", ctypes.c_int32),
    ]


_abi: int | None = None


def abi() -> int:
    """The Landlock ABI version the kernel offers; 0 if Landlock is missing or disabled."""
    global _abi  # noqa: PLW0603  (probed once: the kernel does not change under us)
    if _abi is None:
        version = _syscall(
            ctypes.c_long(_SYS_CREATE_RULESET),
            None,
            ctypes.c_size_t(0),
            ctypes.c_uint32(_CREATE_RULESET_VERSION),
        )
        _abi = max(int(version), 0)
    return _abi


def _fs_rights(version: int) -> int:
    rights = (1 << 13) - 1
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


class Ruleset:
    """A Landlock ruleset under construction; ``fd`` is what the child restricts itself to.

    Close it in the parent once the child has started (``with Ruleset(...) as rs:``).
    """

    def __init__(self, version: int | None = None) -> None:
        self.version = abi() if version is None else version
        if self.version < 1:
            raise LandlockError(errno.EOPNOTSUPP, "Landlock is not available")
        self.handled = _fs_rights(self.version)
        attr = _RulesetAttr(self.handled, 0, 0)
        size = 8
        if self.version >= 4:
            attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
            size = 16
        if self.version >= 6:
            attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
            size = 24
        fd = _syscall(
            ctypes.c_long(_SYS_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        )
        if fd < 0:
            err = ctypes.get_errno()
            raise LandlockError(err, f"landlock_create_ruleset: {os.strerror(err)}")
        self.fd = int(fd)
        os.set_inheritable(self.fd, False)

    def allow(self, path: str, rights: int) -> bool:
        """Grant ``rights`` beneath ``path`` (a directory, or a file for file rights).

        Returns False, granting nothing, when ``path`` does not exist.
        """
        try:
            target = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            if not os.path.isdir(path):
                rights &= FILE_RIGHTS
            attr = _PathBeneathAttr(rights & self.handled, target)
            rc = _syscall(
                ctypes.c_long(_SYS_ADD_RULE),
                ctypes.c_int(self.fd),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(attr),
                ctypes.c_uint32(0),
            )
            if rc < 0:
                err = ctypes.get_errno()
                raise LandlockError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
        finally:
            os.close(target)
        return True

    def close(self) -> None:
        """Close the ruleset descriptor (children that restricted themselves keep the rules)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Ruleset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def restrict_self(fd: int) -> None:
    """In the child: set no_new_privs and enforce ruleset ``fd`` on this process for good."""
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if _syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")

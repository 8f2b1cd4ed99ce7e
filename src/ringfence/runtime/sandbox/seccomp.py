"""A small seccomp-BPF filter, written by hand, for both sandbox tiers.

Why hand-written: the PyPI bindings for libseccomp are either unmaintained (``pyseccomp``,
last release 2021) or need the libseccomp headers to build, and the filter we need is a
short deny list that both tiers share.  :func:`build_filter` returns the raw program
(``struct sock_filter[]``); the process tier installs it with ``prctl(PR_SET_SECCOMP)`` in
the child just before ``exec``, the bwrap tier hands the same bytes to ``bwrap --seccomp FD``.

What it refuses (``EPERM`` unless noted), on x86_64 and aarch64 (only x86_64 is tested):

- any other architecture's calling convention (i386 ``int 0x80``, x32): killed;
- kernel attack surface and host administration: ``ptrace``, ``process_vm_*``, ``kcmp``,
  ``pidfd_getfd``, ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, keyrings,
  module loading, ``kexec``, ``mount`` and the new mount API, ``pivot_root``, ``chroot``,
  ``unshare``, ``setns``, ``clone`` with namespace flags, ``*_handle_at``, swap, reboot,
  clock setting, ``syslog``, ``acct``, ``quotactl``, ``fanotify_init``;
- ``clone3``: ``ENOSYS`` (its flags live in memory a filter cannot read; libc falls back to
  ``clone``, whose flags it can);
- ``ioctl(TIOCSTI / TIOCLINUX)``: typing into a terminal;
- ``socket()`` of any family but ``AF_UNIX`` (network off), or of every family
  (``no_sockets``: the process tier, which shares the host's abstract socket namespace),
  or of any family but ``AF_UNIX``, ``AF_INET`` and ``AF_INET6`` (``inet``: a bwrap sandbox
  with a network allowlist, whose network namespace holds nothing but loopback; ``AF_VSOCK``,
  ``AF_NETLINK``, ``AF_PACKET`` and the rest stay refused — vsock is not namespaced);
- ``setsid`` and ``setpgid`` (``pin_process_group``: the process tier kills the whole group
  at the end, so nothing may leave it).
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

__all__ = ["Program", "SeccompUnsupported", "build_filter", "filter_arch"]

# Opcodes (linux/bpf_common.h) and return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LO = 16
_OFF_ARG1_LO = 24

_AF_UNIX = 1
_AF_INET = 2
_AF_INET6 = 10
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
_X32_SYSCALL_BIT = 0x40000000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
_CLONE_NEW_ANY |= 0x20000000 | 0x40000000


class _Arch:
    def __init__(self, audit: int, numbers: dict[str, int], x32: bool) -> None:
        self.audit = audit
        self.numbers = numbers
        self.x32 = x32


# Syscall numbers: arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h.
_X86_64 = _Arch(
    0xC000003E,
    {
        "acct": 163, "add_key": 248, "adjtimex": 159, "bpf": 321, "chroot": 161,
        "clock_adjtime": 305, "clock_settime": 227, "clone": 56, "clone3": 435,
        "delete_module": 176, "fanotify_init": 300, "finit_module": 313, "fsconfig": 431,
        "fsmount": 432, "fsopen": 430, "fspick": 433, "init_module": 175, "io_uring_enter": 426,
        "io_uring_register": 427, "io_uring_setup": 425, "ioctl": 16, "ioperm": 173,
        "iopl": 172, "kcmp": 312, "kexec_file_load": 320, "kexec_load": 246, "keyctl": 250,
        "lookup_dcookie": 212, "modify_ldt": 154, "mount": 165, "mount_setattr": 442,
        "move_mount": 429, "name_to_handle_at": 303, "open_by_handle_at": 304,
        "open_tree": 428, "perf_event_open": 298, "pidfd_getfd": 438, "pivot_root": 155,
        "process_madvise": 440, "process_vm_readv": 310, "process_vm_writev": 311,
        "ptrace": 101, "quotactl": 179, "reboot": 169, "request_key": 249,
        "setdomainname": 171, "sethostname": 170, "setns": 308, "setpgid": 109,
        "setsid": 112, "settimeofday": 164, "socket": 41, "swapoff": 168, "swapon": 167,
        "syslog": 103, "umount2": 166, "unshare": 272, "userfaultfd": 323, "vhangup": 153,
    },
    x32=True,
)  # fmt: skip
_AARCH64 = _Arch(
    0xC00000B7,
    {
        "acct": 89, "add_key": 217, "adjtimex": 171, "bpf": 280, "chroot": 51,
        "clock_adjtime": 266, "clock_settime": 112, "clone": 220, "clone3": 435,
        "delete_module": 106, "fanotify_init": 262, "finit_module": 273, "fsconfig": 431,
        "fsmount": 432, "fsopen": 430, "fspick": 433, "init_module": 105, "io_uring_enter": 426,
        "io_uring_register": 427, "io_uring_setup": 425, "ioctl": 29, "kcmp": 272,
        "kexec_file_load": 294, "kexec_load": 104, "keyctl": 219, "lookup_dcookie": 18,
        "mount": 40, "mount_setattr": 442, "move_mount": 429, "name_to_handle_at": 264,
        "open_by_handle_at": 265, "open_tree": 428, "perf_event_open": 241,
        "pidfd_getfd": 438, "pivot_root": 41, "process_madvise": 440, "process_vm_readv": 270,
        "process_vm_writev": 271, "ptrace": 117, "quotactl": 60, "reboot": 142,
        "request_key": 218, "setdomainname": 162, "sethostname": 161, "setns": 268,
        "setpgid": 154, "setsid": 157, "settimeofday": 170, "socket": 198, "swapoff": 225,
        "swapon": 224, "syslog": 116, "umount2": 39, "unshare": 97, "userfaultfd": 282,
        "vhangup": 58,
    },
    x32=False,
)  # fmt: skip
_ARCHES = {"x86_64": _X86_64, "amd64": _X86_64, "aarch64": _AARCH64, "arm64": _AARCH64}

_DENIED = (
    "acct", "add_key", "adjtimex", "bpf", "chroot", "clock_adjtime", "clock_settime",
    "delete_module", "fanotify_init", "finit_module", "fsconfig", "fsmount", "fsopen",
    "fspick", "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "modify_ldt", "mount", "mount_setattr", "move_mount", "name_to_handle_at",
    "open_by_handle_at", "open_tree", "perf_event_open", "pidfd_getfd", "pivot_root",
    "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace", "quotactl",
    "reboot", "request_key", "setdomainname", "sethostname", "setns", "settimeofday",
    "swapoff", "swapon", "syslog", "umount2", "unshare", "userfaultfd", "vhangup",
)  # fmt: skip


class SeccompUnsupported(Exception):
    """There is no filter for this machine's architecture."""


def filter_arch(machine: str | None = None) -> str | None:
    """The architecture a filter can be built for here (``platform.machine()``), or None."""
    machine = (machine or platform.machine()).lower()
    return machine if machine in _ARCHES else None


def build_filter(
    *, no_sockets: bool, pin_process_group: bool, inet: bool = False, machine: str | None = None
) -> bytes:
    """The filter program as the bytes of ``struct sock_filter[]`` (8 bytes per instruction).

    ``inet`` (not with ``no_sockets``) also lets ``AF_INET`` and ``AF_INET6`` sockets be made.
    """
    if no_sockets and inet:
        raise ValueError("no_sockets and inet exclude each other")
    arch = _ARCHES.get((machine or platform.machine()).lower())
    if arch is None:
        raise SeccompUnsupported(f"no seccomp filter for {machine or platform.machine()}")
    nr = arch.numbers
    prog: list[tuple[int, int, int, int]] = []

    def stmt(code: int, k: int) -> None:
        prog.append((code, 0, 0, k))

    def jump(code: int, k: int, jt: int, jf: int) -> None:
        prog.append((code, jt, jf, k))

    eperm = _RET_ERRNO | errno.EPERM
    stmt(_LD_W_ABS, _OFF_ARCH)
    jump(_JEQ_K, arch.audit, 1, 0)
    stmt(_RET_K, _RET_KILL_PROCESS)
    stmt(_LD_W_ABS, _OFF_NR)
    if arch.x32:
        jump(_JGE_K, _X32_SYSCALL_BIT, 0, 1)
        stmt(_RET_K, _RET_KILL_PROCESS)
    denied = [n for n in _DENIED if n in nr]
    if pin_process_group:
        denied += ["setsid", "setpgid"]
    for name in denied:
        jump(_JEQ_K, nr[name], 0, 1)
        stmt(_RET_K, eperm)
    jump(_JEQ_K, nr["clone3"], 0, 1)
    stmt(_RET_K, _RET_ERRNO | errno.ENOSYS)
    # The argument checks below reload the accumulator; each block ends by returning, so
    # a syscall that matched none of them falls through to ALLOW at the end.
    # clone(flags, ...): flags is the first argument on both architectures.
    jump(_JEQ_K, nr["clone"], 0, 4)
    stmt(_LD_W_ABS, _OFF_ARG0_LO)
    jump(_JSET_K, _CLONE_NEW_ANY, 0, 1)
    stmt(_RET_K, eperm)
    stmt(_RET_K, _RET_ALLOW)
    # ioctl(fd, request, ...): only the low 32 bits of request matter to the kernel.
    jump(_JEQ_K, nr["ioctl"], 0, 5)
    stmt(_LD_W_ABS, _OFF_ARG1_LO)
    jump(_JEQ_K, _TIOCSTI, 1, 0)
    jump(_JEQ_K, _TIOCLINUX, 0, 1)
    stmt(_RET_K, eperm)
    stmt(_RET_K, _RET_ALLOW)
    if no_sockets:
        jump(_JEQ_K, nr["socket"], 0, 1)
        stmt(_RET_K, _RET_ERRNO | errno.EACCES)
    else:
        families = [_AF_UNIX, _AF_INET, _AF_INET6] if inet else [_AF_UNIX]
        # socket: load the family; each allowed one jumps over the rest to ALLOW.
        jump(_JEQ_K, nr["socket"], 0, len(families) + 3)
        stmt(_LD_W_ABS, _OFF_ARG0_LO)
        for i, family in enumerate(families):
            jump(_JEQ_K, family, len(families) - i, 0)
        stmt(_RET_K, _RET_ERRNO | errno.EACCES)
        stmt(_RET_K, _RET_ALLOW)
    stmt(_RET_K, _RET_ALLOW)
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]


class _SockFprog(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.c_void_p),
    ]


class Program:
    """A filter ready to install: the C structures are made once, in the parent."""

    def __init__(self, code: bytes) -> None:
        self.code = code
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self._fprog = _SockFprog(len(code) // 8, ctypes.addressof(self._buffer))
        self._address = ctypes.addressof(self._fprog)

    def install(self) -> None:
        """In the child, just before exec: set no_new_privs and load the filter for good."""
        if _prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if _prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._address, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")

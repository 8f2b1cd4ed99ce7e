"""Sandbox profiles (what a sandbox allows) and results (what happened in it), and loading
profiles from YAML.

A file, or a section of a larger configuration file, holds::

    sandbox:
      profiles:
        ci:
          tier: bwrap               # bwrap (namespaces) or process (rlimits+Landlock+seccomp)
          allow_weaker: false       # true: run in the process tier when bwrap cannot (logged)
          network: none             # the default; or a host allowlist (below)
          read_only: [/usr, /bin, /sbin, /lib, /lib64, /etc]     # the default
          hide: [/etc/shadow, /etc/gshadow, /etc/ssh, /etc/ssl/private]   # the default
          workdir: null             # null: a fresh, private, empty directory per run
          python: python3           # the interpreter for ``code`` runs (on the sandbox PATH)
          env: {PYTHONDONTWRITEBYTECODE: "1"}
          limits: {cpu_seconds: 10, memory_bytes: 512MiB, processes: 64, open_files: 64,
                   file_size_bytes: 16MiB, disk_bytes: 64MiB, wall_seconds: 30,
                   output_bytes: 1MiB}
        fetch:
          network:
            allow: [api.example.com, "*.pypi.org", "files.example.com:8443"]
            allow_private: false    # true: names may resolve to loopback/private addresses

It is read with the policy loader's strict YAML reader (no duplicate keys, aliases or
non-JSON scalars); a wrong key, type or value is a :class:`~ringfence.errors.ConfigError`
naming the file, line and field.  Sizes are whole bytes or ``<n>KiB|MiB|GiB``.

A network allowlist names hosts (ASCII DNS names, ``*.`` for every name below a domain, an
optional ``:port``; without one, ports 80 and 443).  IP addresses, a bare ``*`` and a
wildcard over a top-level domain are refused.  In the bwrap tier the sandbox keeps a network
namespace of its own with only loopback; an HTTP proxy outside it (:mod:`.proxy`), reached
through a relay inside (:mod:`.forwarder`) at ``127.0.0.1:3128`` and the ``HTTP(S)_PROXY``
variables, lets through only ``CONNECT`` tunnels and plain ``http://`` requests to the
allowed names and ports, resolves them itself, refuses loopback, private (unless
``allow_private``), link-local and metadata addresses, and reports every connection in
:attr:`SandboxResult.egress`.  There is no DNS in the sandbox; a program that does not use the
proxy has no network.  The process tier cannot do this (``socket()`` is refused there): a
``tier: process`` profile with an allowlist does not load, and a bwrap profile that falls back
to the process tier (``allow_weaker: true``) runs there with no network at all.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ringfence.core.policy import yamlsrc
from ringfence.errors import ConfigError, PolicyError
from ringfence.runtime.sandbox.egress import Egress, EgressReport, parse_host_rule

__all__ = [
    "SandboxLimits",
    "SandboxProfile",
    "SandboxResult",
    "Tier",
    "load_profiles",
    "profiles_from_text",
]

MiB = 1 << 20


class Tier(StrEnum):
    """How a sandbox is built, strongest first."""

    BWRAP = "bwrap"  # bubblewrap: user, mount, pid, net, ipc, uts namespaces + seccomp
    PROCESS = "process"  # fork + rlimits + Landlock + seccomp, no namespaces

    @property
    def weaker(self) -> Tier | None:
        """The next weaker tier, or None."""
        return Tier.PROCESS if self is Tier.BWRAP else None


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run.  Linux counts most of them per process (rlimits):

    ``cpu_seconds`` (RLIMIT_CPU, each process), ``memory_bytes`` (RLIMIT_AS, each process),
    ``processes`` (RLIMIT_NPROC: processes of the sandbox's user), ``file_size_bytes``
    (RLIMIT_FSIZE: largest file written), ``open_files`` (RLIMIT_NOFILE), ``disk_bytes``
    (what the run may add to its work directory: the bwrap tier's private tmpfs has this
    size; a work directory on the host — the process tier's, or a ``workdir`` — is measured
    every 50 ms and the run killed past it, see :mod:`.quota`), ``wall_seconds`` (the whole
    run, then everything in it is killed) and ``output_bytes`` (kept of stdout and of stderr
    each; the rest is read and dropped).
    """

    cpu_seconds: int = 10
    memory_bytes: int = 512 * MiB
    processes: int = 64
    file_size_bytes: int = 16 * MiB
    open_files: int = 64
    disk_bytes: int = 64 * MiB
    wall_seconds: float = 30.0
    output_bytes: int = 1 * MiB


DEFAULT_READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
DEFAULT_HIDE = ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/ssl/private", "/etc/sudoers.d")
RESERVED_NAMES = frozenset({"none", "off", "no", "false", "disabled", "host"})


@dataclass(frozen=True)
class SandboxProfile:
    """Everything a sandbox run may do.  Frozen and hashable: runners cache by profile.

    ``network``: None (no network, the default) or the hosts the run may reach through the
    egress proxy (bwrap tier only; see the module doc).
    """

    name: str
    tier: Tier = Tier.BWRAP
    allow_weaker: bool = False
    network: Egress | None = None
    read_only: tuple[str, ...] = DEFAULT_READ_ONLY
    hide: tuple[str, ...] = DEFAULT_HIDE
    workdir: str | None = None
    python: str = "python3"
    env: tuple[tuple[str, str], ...] = ()
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    source: str | None = field(default=None, compare=False)  # file:line, for messages


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run produced.

    ``exit_code`` follows :mod:`subprocess`: negative means killed by that signal (bwrap's
    ``128 + n`` is reported as ``-n`` so both tiers read the same).  ``killed_reason`` is
    ``"timeout"`` (wall clock; Ringfence killed it), ``"cpu"`` (RLIMIT_CPU), ``"file_size"``
    (RLIMIT_FSIZE), ``"disk"`` (a work directory on the host went over ``disk_bytes``: the run
    was killed, or ended over it; stderr ends with a ``sandbox.disk_limit`` line) or None.
    Outputs past ``output_bytes`` are dropped and flagged.
    ``egress``: every connection the run's egress proxy was asked for (allowed or refused), or
    None when no proxy ran (``network: none``, or the process tier).
    """

    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_ns: int
    tier_used: Tier
    profile: str
    killed_reason: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    egress: EgressReport | None = None

    @property
    def ok(self) -> bool:
        """True when the command exited 0 and nothing was killed."""
        return self.exit_code == 0 and self.killed_reason is None

    @property
    def truncated(self) -> bool:
        """True when either output was cut at the profile's ``output_bytes``."""
        return self.stdout_truncated or self.stderr_truncated

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description without the outputs (for audit records and logs)."""
        return {
            "profile": self.profile,
            "tier": self.tier_used.value,
            "exit_code": self.exit_code,
            "killed_reason": self.killed_reason,
            "duration_ns": self.duration_ns,
            "stdout_bytes": len(self.stdout),
            "stderr_bytes": len(self.stderr),
            "truncated": self.truncated,
        } | ({} if self.egress is None else {"egress": self.egress.summary()})


# -- loading ---------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")  # what the shell pack accepts
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_PROFILE_KEYS = {
    "tier", "allow_weaker", "network", "read_only", "hide", "workdir", "python", "env", "limits",
}  # fmt: skip
_ENV_RESERVED = {"HOME", "TMPDIR"}  # they point at the work directory
# name: (minimum, maximum, is a size)
_LIMITS: dict[str, tuple[float, float, bool]] = {
    "cpu_seconds": (1, 86_400, False),
    "memory_bytes": (32 * MiB, 1 << 40, True),
    "processes": (1, 100_000, False),
    "file_size_bytes": (1 << 10, 1 << 40, True),
    "open_files": (16, 1 << 20, False),
    "disk_bytes": (1 * MiB, 1 << 36, True),
    "wall_seconds": (0.1, 86_400, False),
    "output_bytes": (1, 1 << 30, True),
}


def load_profiles(path: str | Path) -> dict[str, SandboxProfile]:
    """Read the ``sandbox:`` section of a YAML file; relative paths start at its folder."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from None
    return profiles_from_text(raw, source=source, base=str(Path(path).resolve().parent))


def profiles_from_text(
    text: str | bytes, *, source: str = "<sandbox>", base: str = ""
) -> dict[str, SandboxProfile]:
    """Parse profiles from YAML text whose top level has a ``sandbox:`` mapping.

    Other top-level keys are left alone, so the section can live in a larger file.
    """
    try:
        doc = yamlsrc.parse(text, source)
    except PolicyError as exc:
        raise ConfigError(
            exc.reason, code="config.yaml", source=exc.source, line=exc.line, field=exc.field
        ) from None
    loader = _Loader(doc, base)
    top = doc.value
    if not isinstance(top, dict) or "sandbox" not in top:
        raise loader.fail((), "no 'sandbox:' section")
    section = loader.mapping(top["sandbox"], ("sandbox",), {"profiles"})
    profiles = loader.mapping(section.get("profiles"), ("sandbox", "profiles"))
    if not profiles:
        raise loader.fail(("sandbox", "profiles"), "define at least one profile")
    return {name: loader.profile(name, body) for name, body in profiles.items()}


class _Loader:
    def __init__(self, doc: yamlsrc.Located, base: str) -> None:
        self.doc = doc
        self.base = base

    def fail(self, path: yamlsrc.Path, message: str, code: str = "config.invalid") -> ConfigError:
        return ConfigError(
            message,
            code=code,
            source=self.doc.source,
            line=self.doc.line(path),
            field=yamlsrc.dotted(path) or None,
        )

    def mapping(
        self,
        value: Any,
        path: yamlsrc.Path,
        allowed: set[str] | None = None,
        code: str = "config.invalid",
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}", code)
        for key in value:
            if allowed is not None and key not in allowed:
                raise self.fail(
                    (*path, key), f"unknown key (allowed: {', '.join(sorted(allowed))})", code
                )
        return value

    def profile(self, name: str, raw: Any) -> SandboxProfile:
        at: yamlsrc.Path = ("sandbox", "profiles", name)
        if not _NAME.match(name):
            raise self.fail(at, f"{name!r} is not a profile name (letters, digits, _ . : -)")
        if name.lower() in RESERVED_NAMES:
            raise self.fail(at, f"{name!r} means 'no sandbox' and cannot name a profile")
        body = self.mapping({} if raw is None else raw, at, _PROFILE_KEYS)
        tier_raw = body.get("tier", Tier.BWRAP.value)
        if tier_raw not in tuple(Tier):
            raise self.fail((*at, "tier"), f"tier is one of bwrap, process; got {tier_raw!r}")
        allow_weaker = body.get("allow_weaker", False)
        if not isinstance(allow_weaker, bool):
            raise self.fail((*at, "allow_weaker"), "expected true or false")
        network = self.network(body.get("network", "none"), (*at, "network"))
        if network is not None and tier_raw == Tier.PROCESS.value:
            raise self.fail(
                (*at, "network"),
                "the process tier cannot enforce a host allowlist (socket() is refused there): "
                "use tier: bwrap (allow_weaker: true falls back to the process tier with no "
                "network at all)",
                "config.sandbox.network",
            )
        workdir = body.get("workdir")
        if workdir is not None:
            workdir = self.path(workdir, (*at, "workdir"), relative_ok=True)
        python = body.get("python", "python3")
        if not isinstance(python, str) or not python or "\0" in python:
            raise self.fail((*at, "python"), "expected an interpreter name or absolute path")
        return SandboxProfile(
            name=name,
            tier=Tier(tier_raw),
            allow_weaker=allow_weaker,
            network=network,
            read_only=self.paths(body, "read_only", at, DEFAULT_READ_ONLY),
            hide=self.paths(body, "hide", at, DEFAULT_HIDE),
            workdir=workdir,
            python=python,
            env=self.env(body.get("env", {}), (*at, "env")),
            limits=self.limits(body.get("limits", {}), (*at, "limits")),
            source=f"{self.doc.source}:{self.doc.line(at)}",
        )

    def network(self, value: Any, path: yamlsrc.Path) -> Egress | None:
        code = "config.sandbox.network"
        if value == "none":
            return None
        if isinstance(value, list):
            raise self.fail(path, "list the hosts under allow: network: {allow: [host, ...]}", code)
        if not isinstance(value, dict):
            raise self.fail(
                path, f"network is 'none' or {{allow: [host, ...]}}; got {value!r}", code
            )
        body = self.mapping(value, path, {"allow", "allow_private"}, code)
        hosts = body.get("allow")
        if not isinstance(hosts, list) or not hosts:
            raise self.fail(
                (*path, "allow"),
                "expected a non-empty list of host names (for no network: network: none)",
                code,
            )
        rules = []
        for i, item in enumerate(hosts):
            try:
                rule = parse_host_rule(item)
            except ValueError as exc:
                raise self.fail((*path, "allow", i), str(exc), code) from None
            if rule in rules:
                raise self.fail((*path, "allow", i), f"{rule} is listed twice", code)
            rules.append(rule)
        allow_private = body.get("allow_private", False)
        if not isinstance(allow_private, bool):
            raise self.fail((*path, "allow_private"), "expected true or false", code)
        return Egress(tuple(rules), allow_private)

    def path(self, value: Any, at: yamlsrc.Path, *, relative_ok: bool = False) -> str:
        if not isinstance(value, str) or not value or "\0" in value:
            raise self.fail(at, f"expected a path, got {_kind(value)}")
        text: str = value
        if not text.startswith("/"):
            if not relative_ok:
                raise self.fail(at, f"{text!r} is not an absolute path")
            text = os.path.join(self.base or os.getcwd(), text)
        if ".." in text.split("/"):
            raise self.fail(at, f"{text!r}: '..' is not allowed")
        text = posixpath.normpath(text)
        if text == "/":
            raise self.fail(at, "'/' would expose every host file; name the directories")
        return text

    def paths(
        self, body: dict[str, Any], key: str, at: yamlsrc.Path, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        if key not in body:
            return default
        raw = body[key]
        if not isinstance(raw, list):
            raise self.fail((*at, key), f"expected a list of paths, got {_kind(raw)}")
        return tuple(self.path(p, (*at, key, i)) for i, p in enumerate(raw))

    def env(self, raw: Any, at: yamlsrc.Path) -> tuple[tuple[str, str], ...]:
        body = self.mapping(raw, at)
        out = []
        for name, value in body.items():
            if not _ENV_NAME.match(name):
                raise self.fail((*at, name), f"{name!r} is not an environment variable name")
            if name in _ENV_RESERVED:
                raise self.fail((*at, name), f"{name} is set to the work directory")
            if not isinstance(value, str) or "\0" in value:
                raise self.fail((*at, name), f"expected a string, got {_kind(value)}")
            out.append((name, value))
        return tuple(sorted(out))

    def limits(self, raw: Any, at: yamlsrc.Path) -> SandboxLimits:
        body = self.mapping(raw, at, set(_LIMITS))
        values: dict[str, Any] = {}
        for name, value in body.items():
            low, high, is_size = _LIMITS[name]
            number = self.size(value, (*at, name)) if is_size else value
            if name == "wall_seconds":
                ok = isinstance(number, int | float) and not isinstance(number, bool)
            else:
                ok = isinstance(number, int) and not isinstance(number, bool)
            if not ok:
                raise self.fail((*at, name), f"expected a number, got {_kind(value)}")
            if not low <= number <= high:
                raise self.fail((*at, name), f"must be between {low:g} and {high:g}")
            values[name] = number
        return SandboxLimits(**values)

    def size(self, value: Any, at: yamlsrc.Path) -> Any:
        if not isinstance(value, str):
            return value
        m = _SIZE.match(value)
        if m is None:
            raise self.fail(at, f"{value!r} is not a size (bytes, or <n>KiB, MiB, GiB)")
        return int(m[1]) * _UNITS[m[2]]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )

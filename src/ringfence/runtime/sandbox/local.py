"""LocalSandbox: run a command or Python code in a sandbox on this machine.

Two tiers (:class:`~ringfence.runtime.sandbox.profile.Tier`):

``bwrap``
    bubblewrap builds fresh user, mount, pid, network, IPC, UTS and cgroup namespaces: an
    empty root with the profile's ``read_only`` directories bound read-only, ``hide`` paths
    masked, a new ``/proc``, a minimal read-only ``/dev``, a private work directory (a tmpfs
    of ``disk_bytes`` at ``/work``, or the profile's ``workdir`` bound read-write) that
    ``/tmp`` points to, and the root remounted read-only.  No network: only a loopback
    device in a namespace of its own.  Nested user namespaces are disabled, the seccomp
    filter of :mod:`.seccomp` is loaded (``--seccomp``), killing bwrap kills the namespace.
    The command is the namespace's init (``--as-pid-1``): bwrap's own reaper would outlive
    the bwrap we wait for and be left to the host's PID 1, and where that does not reap
    (a container running Ringfence as PID 1) the zombies would use up ``RLIMIT_NPROC``.
    As an init it ignores SIGXCPU, so a CPU-bound run dies at the hard limit (+1 s) and
    ``killed_reason`` comes from the CPU time ``wait4`` reports.
    With a network allowlist (``profile.network``) the namespace still has only loopback:
    an :class:`~.proxy.EgressProxy` outside listens on a UNIX socket bound in read-only, the
    command is preceded by :mod:`.forwarder` (the profile's ``python``, which relays
    ``127.0.0.1:3128`` to that socket and then ``exec``s the command, so it stays PID 1), the
    environment's ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` (both cases) name the relay
    and ``NO_PROXY`` is empty, and seccomp also lets ``AF_INET``/``AF_INET6`` sockets be made
    (loopback is all they reach).  The proxy's report is the result's ``egress``.
``process``
    no namespaces: ``fork``, then in the child rlimits, Landlock (read and execute beneath
    ``read_only``, everything beneath the work directory, a few devices; no TCP; abstract
    UNIX sockets and signals scoped to the sandbox) and the seccomp filter with ``socket()``
    refused altogether and the process group pinned, then ``exec``.  The work directory is a
    fresh host directory, removed afterwards.  Weaker: the disk quota is measured, not
    enforced by the kernel (:mod:`.quota`: the work directory is walked every 50 ms and the
    run killed past ``disk_bytes``), the host's process list and ``/etc`` are visible by
    name, CPU and memory limits are per process, and children left behind are killed
    (``setsid``/``setpgid`` are refused, so the process group holds them all) but reaped by
    the host's PID 1.  No network allowlist: a ``tier: process`` profile with one is
    refused, and a bwrap profile that falls back here runs with no network.

Both: an empty environment (``PATH``, ``LANG``, ``HOME`` and ``TMPDIR`` = the work directory,
plus what the profile and the caller add), rlimits set between ``fork`` and ``exec``, and an
unprivileged user — when Ringfence runs as root, sandboxes run as uid/gid 65534 (``nobody``;
bwrap too, so its user namespace maps to an unprivileged host user, which keeps root's files
closed and ``RLIMIT_NPROC`` counting only sandboxed processes).

A work directory on the host (the process tier's, or a profile's ``workdir`` bound into
bwrap) is held to ``disk_bytes`` by a :class:`~.quota.DiskWatch`: over it, the run is killed,
``killed_reason`` is ``"disk"`` and its stderr ends with a ``sandbox.disk_limit`` line.

Availability is probed once per tier by running ``true`` in a real sandbox; a profile whose
tier is unavailable raises :class:`~ringfence.errors.SandboxUnavailable` unless it allows the
weaker tier, which is then used and logged as a warning on every run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ringfence.errors import SandboxError, SandboxUnavailable
from ringfence.runtime.sandbox import landlock, seccomp
from ringfence.runtime.sandbox.bwrap import (
    NOBODY,
    PROXY_ENV,
    WORKDIR,
    layout,
    read_status,
    relay_command,
)
from ringfence.runtime.sandbox.profile import SandboxLimits, SandboxProfile, SandboxResult, Tier
from ringfence.runtime.sandbox.proxy import EgressProxy, ProxyLimits, Resolver, system_resolver
from ringfence.runtime.sandbox.pump import pump
from ringfence.runtime.sandbox.quota import DiskWatch

__all__ = ["Availability", "LocalSandbox"]

log = logging.getLogger("ringfence.sandbox")

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
MAX_INLINE_CODE = 100_000  # longer code is handed over in a memfd (one argv string: <128 KiB)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_ENV_RESERVED = {"HOME", "TMPDIR"}


@dataclass(frozen=True)
class Availability:
    """Whether a tier can run here, and why (or why not)."""

    tier: Tier
    available: bool
    detail: str


class LocalSandbox:
    """The :class:`~ringfence.runtime.ports.Sandbox` of this machine (see the module doc).

    ``bwrap``: the bubblewrap binary (default: found on PATH).  ``run_as``: uid and gid of
    sandboxes when Ringfence runs as root.  ``resolver`` and ``proxy_limits``: for the egress
    proxy of profiles with a network allowlist (default: the machine's resolver, and
    :class:`~.proxy.ProxyLimits`).
    """

    def __init__(
        self,
        *,
        bwrap: str | None = None,
        run_as: tuple[int, int] = (NOBODY, NOBODY),
        resolver: Resolver = system_resolver,
        proxy_limits: ProxyLimits | None = None,
    ):
        self._bwrap = bwrap if bwrap is not None else shutil.which("bwrap")
        self._run_as = run_as if os.geteuid() == 0 else None
        self._probes: dict[Tier, Availability] = {}
        self._lock = threading.Lock()
        self._filters: dict[tuple[bool, bool], seccomp.Program] = {}
        self._resolver = resolver
        self._proxy_limits = proxy_limits

    # -- availability ------------------------------------------------------------------------

    def availability(self, tier: Tier) -> Availability:
        """Probe ``tier`` (once; the answer is kept) by running ``true`` in it."""
        with self._lock:
            found = self._probes.get(tier)
            if found is None:
                found = self._probes[tier] = self._probe(tier)
        return found

    def _probe(self, tier: Tier) -> Availability:
        def no(detail: str) -> Availability:
            return Availability(tier, False, detail)

        if not sys.platform.startswith("linux"):
            return no("sandboxes need Linux")
        if seccomp.filter_arch() is None:
            return no(f"no seccomp filter for this architecture ({os.uname().machine})")
        if tier is Tier.PROCESS:
            version = landlock.abi()
            if version < 1:
                return no("Landlock is not available (Linux >= 5.13 with Landlock enabled)")
            detail = f"rlimits, Landlock ABI {version}, seccomp ({seccomp.filter_arch()})"
        else:
            if self._bwrap is None:
                return no("bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
            detail = f"{self._bwrap}, user namespaces, seccomp ({seccomp.filter_arch()})"
        probe = SandboxProfile(name="ringfence-probe", tier=tier, limits=SandboxLimits())
        try:
            result = self._execute(tier, probe, ["true"], b"", {})
        except (OSError, SandboxError) as exc:
            return no(f"a test sandbox failed to start: {exc}")
        if result.exit_code != 0:
            text = result.stderr.decode("utf-8", "replace").strip().splitlines()
            hint = ""
            if tier is Tier.BWRAP:
                hint = (
                    " (unprivileged user namespaces may be disabled: kernel.unprivileged_userns_"
                    "clone, user.max_user_namespaces, AppArmor, or a container's seccomp policy)"
                )
            return no(f"a test sandbox failed: {text[0] if text else result.exit_code}{hint}")
        return Availability(tier, True, detail)

    def tier_for(self, profile: SandboxProfile) -> Tier:
        """The tier ``profile`` runs in here; SandboxUnavailable if none it accepts can run."""
        if profile.network is not None and profile.tier is Tier.PROCESS:
            raise SandboxUnavailable(
                f"sandbox profile {profile.name!r} allows network hosts, which the process "
                "tier cannot enforce (socket() is refused there); use the bwrap tier — "
                "refusing to run"
            )
        wanted = self.availability(profile.tier)
        if wanted.available:
            return profile.tier
        weaker = profile.tier.weaker
        if weaker is None or not profile.allow_weaker:
            extra = " and does not allow a weaker tier" if weaker is not None else ""
            raise SandboxUnavailable(
                f"sandbox profile {profile.name!r} needs the {profile.tier} tier, which is not "
                f"available here: {wanted.detail}; the profile{extra} — refusing to run"
            )
        fallback = self.availability(weaker)
        if not fallback.available:
            raise SandboxUnavailable(
                f"sandbox profile {profile.name!r}: neither the {profile.tier} tier "
                f"({wanted.detail}) nor the weaker {weaker} tier it allows ({fallback.detail}) "
                "is available here"
            )
        log.warning(
            "sandbox profile %r runs in the WEAKER %s tier: the %s tier it asks for is not "
            "available here (%s); the profile allows this (allow_weaker: true)%s",
            profile.name,
            weaker.value,
            profile.tier.value,
            wanted.detail,
            ""
            if profile.network is None
            else "; its network allowlist does not apply there: the run has NO network",
        )
        return weaker

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        profile: SandboxProfile,
        *,
        argv: Sequence[str] | None = None,
        code: str | None = None,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Run ``argv`` (a command) or ``code`` (Python source) in ``profile``'s sandbox."""
        command = _command(profile, argv, code)
        extra = _checked_env(env or {})
        tier = self.tier_for(profile)
        return self._execute(tier, profile, command, stdin, extra)

    def _execute(
        self,
        tier: Tier,
        profile: SandboxProfile,
        command: list[str],
        stdin: bytes,
        extra_env: Mapping[str, str],
    ) -> SandboxResult:
        code_fd = None
        if command[0] == _CODE_MARK:  # code too long for one argument: hand it over in a memfd
            code_fd = os.memfd_create("ringfence-code")
            os.write(code_fd, command[1].encode("utf-8"))
            os.lseek(code_fd, 0, os.SEEK_SET)
            command = [profile.python, "-I", "-c", _RUN_FD.format(fd=code_fd)]
        try:
            if tier is Tier.BWRAP:
                return self._bwrap_run(profile, command, stdin, extra_env, code_fd)
            return self._process_run(profile, command, stdin, extra_env, code_fd)
        finally:
            if code_fd is not None:
                os.close(code_fd)

    def _environment(
        self, profile: SandboxProfile, workdir: str, extra: Mapping[str, str]
    ) -> dict[str, str]:
        env = {"PATH": SANDBOX_PATH, "LANG": "C.UTF-8"}
        env.update(profile.env)
        env.update(extra)
        env["HOME"] = env["TMPDIR"] = workdir
        return env

    def _rlimits(self, limits: SandboxLimits) -> list[tuple[int, tuple[int, int]]]:
        processes = limits.processes
        if self._run_as is None:
            # RLIMIT_NPROC counts every process of the user; without root the sandbox runs
            # as the caller, whose own processes must not use up the sandbox's allowance.
            processes += _processes_of(os.getuid())
        return [
            (resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
            (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
            (resource.RLIMIT_NPROC, (processes, processes)),
            (resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes)),
            (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
            (resource.RLIMIT_CORE, (0, 0)),
        ]

    def _filter(self, *, process_tier: bool, inet: bool = False) -> seccomp.Program:
        program = self._filters.get((process_tier, inet))
        if program is None:
            code = seccomp.build_filter(
                no_sockets=process_tier, pin_process_group=process_tier, inet=inet
            )
            program = self._filters[process_tier, inet] = seccomp.Program(code)
        return program

    def _spawn(
        self,
        profile: SandboxProfile,
        tier: Tier,
        args: list[str],
        *,
        env: dict[str, str],
        cwd: str | None,
        stdin: bytes,
        preexec: Callable[[], None],
        pass_fds: tuple[int, ...],
        disk: DiskWatch | None = None,
    ) -> tuple[int, float, SandboxResult]:
        """Start, feed, collect, kill what is left, reap: (returncode, CPU seconds, result).
        ``disk``: the work directory's disk limit, watched while the run goes."""
        limits = profile.limits
        run_as = self._run_as
        started = time.perf_counter_ns()
        deadline = time.monotonic() + limits.wall_seconds
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509  (prepared in the parent; see module doc)
                pass_fds=pass_fds,
                user=None if run_as is None else run_as[0],
                group=None if run_as is None else run_as[1],
                extra_groups=None if run_as is None else [],
            )
        except subprocess.SubprocessError as exc:
            raise SandboxError(
                f"the {tier} sandbox of profile {profile.name!r} could not be set up: {exc}"
            ) from None
        except OSError as exc:  # the command itself could not be executed
            duration = time.perf_counter_ns() - started
            message = f"ringfence sandbox: cannot run {args[0]!r}: {exc.strerror}\n"
            code = 126 if isinstance(exc, PermissionError) else 127
            return code, 0.0, _result(profile, tier, code, b"", message.encode(), duration)

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        with contextlib.nullcontext() if disk is None else disk.watching(kill):
            got = pump(proc, stdin, cap=limits.output_bytes, deadline=deadline, kill=kill)
        duration = time.perf_counter_ns() - started
        code = proc.returncode
        reason = "timeout" if got.timed_out else _killed_by(code, got.cpu_seconds, limits)
        stderr = got.stderr
        if disk is not None and disk.verdict() is not None:
            reason = "disk"  # whatever else happened: the run went over its disk limit
            stderr += disk.note()
        result = SandboxResult(
            exit_code=code,
            stdout=got.stdout,
            stderr=stderr,
            duration_ns=duration,
            tier_used=tier,
            profile=profile.name,
            killed_reason=reason,
            stdout_truncated=got.stdout_truncated,
            stderr_truncated=got.stderr_truncated,
        )
        return code, got.cpu_seconds, result

    # -- the process tier --------------------------------------------------------------------

    def _process_run(
        self,
        profile: SandboxProfile,
        command: list[str],
        stdin: bytes,
        extra_env: Mapping[str, str],
        code_fd: int | None,
    ) -> SandboxResult:
        fresh = profile.workdir is None
        workdir = tempfile.mkdtemp(prefix="ringfence-sandbox-") if fresh else profile.workdir
        assert workdir is not None
        try:
            if fresh and self._run_as is not None:
                os.chown(workdir, *self._run_as)
            with landlock.Ruleset() as rules:
                for path in profile.read_only:
                    rules.allow(path, landlock.READ)
                for device in _DEVICES:
                    rules.allow(device, landlock.READ_FILE | landlock.WRITE_FILE)
                if not rules.allow(workdir, landlock.READ | landlock.WRITE):
                    raise SandboxError(f"the work directory {workdir} does not exist")
                disk = DiskWatch(workdir, profile.limits.disk_bytes)
                program = self._filter(process_tier=True)
                limits = self._rlimits(profile.limits)
                ruleset = rules.fd
                setrlimit, restrict, install = (
                    resource.setrlimit,
                    landlock.restrict_self,
                    (program.install),
                )

                def preexec() -> None:  # in the child: no imports, no locks, no allocation
                    for which, value in limits:
                        setrlimit(which, value)
                    restrict(ruleset)
                    install()

                _, _, result = self._spawn(
                    profile,
                    Tier.PROCESS,
                    command,
                    env=self._environment(profile, workdir, extra_env),
                    cwd=workdir,
                    stdin=stdin,
                    preexec=preexec,
                    pass_fds=() if code_fd is None else (code_fd,),
                    disk=disk,
                )
                return result
        finally:
            if fresh:
                shutil.rmtree(workdir, ignore_errors=True)

    # -- the bwrap tier ----------------------------------------------------------------------

    def _bwrap_run(
        self,
        profile: SandboxProfile,
        command: list[str],
        stdin: bytes,
        extra_env: Mapping[str, str],
        code_fd: int | None,
    ) -> SandboxResult:
        env = self._environment(profile, profile.workdir or WORKDIR, extra_env)
        if profile.network is None:
            return self._bwrap_spawn(profile, command, stdin, env, code_fd, None)
        command = relay_command(profile.python, command)
        env.update(PROXY_ENV)
        try:
            proxy = EgressProxy.in_private_folder(
                profile.network,
                owner=self._run_as,  # bwrap binds the socket as that user
                resolver=self._resolver,
                limits=self._proxy_limits,
            )
        except OSError as exc:
            raise SandboxError(
                f"the egress proxy of sandbox profile {profile.name!r} could not be started: {exc}"
            ) from None
        try:
            result = self._bwrap_spawn(profile, command, stdin, env, code_fd, proxy)
        finally:
            report = proxy.close()
        return dataclasses.replace(result, egress=report)

    def _bwrap_spawn(
        self,
        profile: SandboxProfile,
        command: list[str],
        stdin: bytes,
        env: dict[str, str],
        code_fd: int | None,
        proxy: EgressProxy | None,
    ) -> SandboxResult:
        assert self._bwrap is not None
        workdir = profile.workdir or WORKDIR
        # The private work directory is a tmpfs of disk_bytes; a bound host one is watched.
        disk = None if profile.workdir is None else DiskWatch(workdir, profile.limits.disk_bytes)
        filter_r, filter_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            program = self._filter(process_tier=False, inet=proxy is not None)
            os.write(filter_w, program.code)  # < 2 KiB: never blocks
            os.close(filter_w)
            filter_w = -1
            args = [
                self._bwrap,
                *layout(profile, egress_socket=None if proxy is None else proxy.path),
                "--chdir",
                workdir,
                "--seccomp",
                str(filter_r),
                "--json-status-fd",
                str(status_w),
                "--",
                *command,
            ]
            limits = self._rlimits(profile.limits)
            setrlimit = resource.setrlimit

            def preexec() -> None:
                for which, value in limits:
                    setrlimit(which, value)

            fds = (filter_r, status_w) if code_fd is None else (filter_r, status_w, code_fd)
            code, cpu_seconds, result = self._spawn(
                profile,
                Tier.BWRAP,
                args,
                env=env,
                cwd=None,
                stdin=stdin,
                preexec=preexec,
                pass_fds=fds,
                disk=disk,
            )
            os.close(status_w)
            status_w = -1
            status = read_status(status_r)
        finally:
            for fd in (filter_r, filter_w, status_r, status_w):
                if fd >= 0:
                    os.close(fd)
        if "child-pid" not in status and result.killed_reason != "timeout":
            text = result.stderr.decode("utf-8", "replace").strip()
            raise SandboxError(
                f"the bwrap sandbox of profile {profile.name!r} could not be set up: "
                f"{text or f'bwrap exited with {code}'}"
            )
        reported = status.get("exit-code")
        exit_code = reported if isinstance(reported, int) else code
        if 128 < exit_code <= 128 + 64:
            exit_code = 128 - exit_code  # killed by signal n: -n, as subprocess reports it
        reason = result.killed_reason
        if reason is None and exit_code != code:
            reason = _killed_by(exit_code, cpu_seconds, profile.limits)
        return SandboxResult(
            exit_code=exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            duration_ns=result.duration_ns,
            tier_used=Tier.BWRAP,
            profile=profile.name,
            killed_reason=reason,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
        )


_CODE_MARK = "\0code"
_RUN_FD = (
    "import os as _o;_f=_o.fdopen({fd},'rb');_c=_f.read();_f.close();"
    "del _o,_f;exec(compile(_c,'<code>','exec'))"
)


def _command(profile: SandboxProfile, argv: Sequence[str] | None, code: str | None) -> list[str]:
    if (argv is None) == (code is None):
        raise SandboxError("give either argv or code", code="sandbox.input")
    if code is not None:
        if not isinstance(code, str) or "\0" in code:
            raise SandboxError("code must be a string without NUL", code="sandbox.input")
        if len(code.encode("utf-8", "surrogatepass")) > MAX_INLINE_CODE:
            return [_CODE_MARK, code]
        return [profile.python, "-I", "-c", code]
    assert argv is not None
    command = list(argv)
    if not command or not all(isinstance(a, str) and "\0" not in a for a in command):
        raise SandboxError("argv must be a non-empty list of strings", code="sandbox.input")
    return command


def _checked_env(env: Mapping[str, str]) -> dict[str, str]:
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise SandboxError(f"bad environment variable name {name!r}", code="sandbox.input")
        if name in _ENV_RESERVED:
            raise SandboxError(f"{name} is the sandbox's work directory", code="sandbox.input")
        if not isinstance(value, str) or "\0" in value:
            raise SandboxError(f"bad value for environment variable {name}", code="sandbox.input")
    return dict(env)


def _killed_by(code: int, cpu_seconds: float, limits: SandboxLimits) -> str | None:
    if code == -signal.SIGXCPU:
        return "cpu"
    # A process that ignores SIGXCPU (bwrap's command is its namespace's init, which does)
    # is killed at the hard limit, one second later.
    if code == -signal.SIGKILL and cpu_seconds >= limits.cpu_seconds:
        return "cpu"
    if code == -signal.SIGXFSZ:
        return "file_size"
    return None


def _result(
    profile: SandboxProfile, tier: Tier, code: int, out: bytes, err: bytes, duration: int
) -> SandboxResult:
    return SandboxResult(code, out, err, duration, tier, profile.name)


def _processes_of(uid: int) -> int:
    count = 0
    try:
        entries = os.scandir("/proc")
    except OSError:
        return 0
    with entries:
        for entry in entries:
            if entry.name.isdigit():
                try:
                    if entry.stat(follow_symlinks=False).st_uid == uid:
                        count += 1
                except OSError:
                    pass
    return count

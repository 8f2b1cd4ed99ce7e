"""FakeSandbox: the Sandbox port without processes, for tests of code that runs sandboxed tools.

It records every run, answers with a canned :class:`SandboxResult` (or one made by a function
you give it), and fails closed like the real one: a profile whose tier is in ``unavailable``
raises SandboxUnavailable unless it allows a weaker tier that is available.

Egress is scripted too, and reported only where the real sandbox would report it: a run whose
profile has a network allowlist and that runs in the bwrap tier (an egress proxy runs there).
``egress`` is an :class:`EgressReport`, or a function of the run making one::

    def proxy(run: FakeRun) -> EgressReport:
        assert run.network is not None
        allowed = run.network.match("pypi.org", 443) is not None
        return EgressReport((EgressRecord("CONNECT", "pypi.org:443", allowed,
                                          200 if allowed else 403, "scripted"),))

    FakeSandbox(egress=proxy)

A run of a profile without an allowlist (``network: none``), or one that falls back to the
process tier, gets ``egress=None`` whatever is scripted, as the real one does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ringfence.errors import SandboxUnavailable
from ringfence.runtime.sandbox.egress import Egress, EgressReport
from ringfence.runtime.sandbox.profile import SandboxProfile, SandboxResult, Tier

__all__ = ["FakeRun", "FakeSandbox"]


@dataclass(frozen=True)
class FakeRun:
    """One call of :meth:`FakeSandbox.run`; ``network`` is the profile's allowlist."""

    profile: str
    tier: Tier
    argv: tuple[str, ...] | None
    code: str | None
    stdin: bytes
    env: dict[str, str]
    network: Egress | None = None


@dataclass
class FakeSandbox:
    """A Sandbox that runs nothing.  ``answer(run)`` makes the result (default: exit 0);
    ``egress`` (a report, or ``egress(run)`` making one) is what the run's egress proxy
    reports, when one would run (see the module doc)."""

    unavailable: frozenset[Tier] = frozenset()
    answer: Callable[[FakeRun], tuple[int, bytes, bytes]] | None = None
    runs: list[FakeRun] = field(default_factory=list)
    egress: EgressReport | Callable[[FakeRun], EgressReport] | None = None

    def tier_for(self, profile: SandboxProfile) -> Tier:
        """The profile's tier, or the weaker one it allows; SandboxUnavailable otherwise."""
        if profile.network is not None and profile.tier is Tier.PROCESS:
            raise SandboxUnavailable(
                f"sandbox profile {profile.name!r} allows network hosts, which the process "
                "tier cannot enforce (fake)"
            )
        if profile.tier not in self.unavailable:
            return profile.tier
        weaker = profile.tier.weaker
        if profile.allow_weaker and weaker is not None and weaker not in self.unavailable:
            return weaker
        raise SandboxUnavailable(
            f"sandbox profile {profile.name!r} needs the {profile.tier} tier (fake: unavailable)"
        )

    def run(
        self,
        profile: SandboxProfile,
        *,
        argv: Sequence[str] | None = None,
        code: str | None = None,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Record the run and answer it."""
        tier = self.tier_for(profile)
        run = FakeRun(
            profile.name,
            tier,
            None if argv is None else tuple(argv),
            code,
            stdin,
            dict(env or {}),
            profile.network,
        )
        self.runs.append(run)
        code_, out, err = self.answer(run) if self.answer is not None else (0, b"", b"")
        return SandboxResult(code_, out, err, 0, tier, profile.name, egress=self._egress(run))

    def _egress(self, run: FakeRun) -> EgressReport | None:
        if run.network is None or run.tier is not Tier.BWRAP:
            return None  # no proxy runs: network none, or the process tier
        if self.egress is None:
            return EgressReport()  # a proxy ran and nobody connected
        return self.egress(run) if callable(self.egress) else self.egress

"""FakeSandbox: the Sandbox port without processes, for tests of code that runs sandboxed tools.

It records every run, answers with a canned :class:`SandboxResult` (or one made by a function
you give it), and fails closed like the real one: a profile whose tier is in ``unavailable``
raises SandboxUnavailable unless it allows a weaker tier that is available.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ringfence.errors import SandboxUnavailable
from ringfence.runtime.sandbox.profile import SandboxProfile, SandboxResult, Tier

__all__ = ["FakeRun", "FakeSandbox"]


@dataclass(frozen=True)
class FakeRun:
    """One call of :meth:`FakeSandbox.run`."""

    profile: str
    tier: Tier
    argv: tuple[str, ...] | None
    code: str | None
    stdin: bytes
    env: dict[str, str]


@dataclass
class FakeSandbox:
    """A Sandbox that runs nothing.  ``answer(run)`` makes the result (default: exit 0)."""

    unavailable: frozenset[Tier] = frozenset()
    answer: Callable[[FakeRun], tuple[int, bytes, bytes]] | None = None
    runs: list[FakeRun] = field(default_factory=list)

    def tier_for(self, profile: SandboxProfile) -> Tier:
        """The profile's tier, or the weaker one it allows; SandboxUnavailable otherwise."""
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
        )
        self.runs.append(run)
        code_, out, err = self.answer(run) if self.answer is not None else (0, b"", b"")
        return SandboxResult(code_, out, err, 0, tier, profile.name)

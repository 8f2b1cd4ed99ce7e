"""An identity setup for runtime tests: a registry, an authority and a verifier on one clock."""

from __future__ import annotations

from dataclasses import dataclass

from ringfence.runtime.authority import Authority
from ringfence.runtime.identity import Verifier
from ringfence.runtime.ports import IdentityRegistry
from ringfence.stores.identity import MemoryIdentityRegistry

T0_NS = 1_700_000_000 * 10**9
TD = "corp.example"


class Clock:
    """A settable wall clock (ns)."""

    def __init__(self, now: int = T0_NS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 10**9)


@dataclass
class World:
    registry: IdentityRegistry
    authority: Authority
    verifier: Verifier
    clock: Clock

    def agent(self, name: str) -> str:
        return f"spiffe://{TD}/agent/{name}"

    def root(self, agent: str = "planner", **kw: object) -> str:
        kw.setdefault("tools", ("read_*", "search"))
        kw.setdefault("resources", ("path:/workspace/**",))
        kw.setdefault("user", "alice")
        kw.setdefault("delegable", 2)
        return self.authority.issue(agent, **kw)  # type: ignore[arg-type]


def world(registry: IdentityRegistry | None = None, **verifier_options: object) -> World:
    clock = Clock()
    registry = registry if registry is not None else MemoryIdentityRegistry()
    authority = Authority(registry, trust_domain=TD, clock=clock)
    for name in ("planner", "researcher", "fetcher"):
        if not any(a.id.endswith(f"/{name}") for a in registry.state().agents):
            authority.create_agent(name)
    verifier = Verifier(registry, **verifier_options)  # type: ignore[arg-type]
    return World(registry, authority, verifier, clock)

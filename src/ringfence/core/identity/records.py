"""What an identity registry holds: agents, keys, revocations, and a generation number.

The registry itself is a port (:class:`ringfence.runtime.ports.IdentityRegistry`); these are
the plain values that cross it.  Times are nanoseconds since the epoch.
"""

from __future__ import annotations

import msgspec

__all__ = ["AgentRecord", "KeyRecord", "RegistryState", "Revocation"]

RING = ""  # the owner of the trust domain's own signing keys (the key ring)
REVOCABLE = ("agent", "key", "credential")


class KeyRecord(msgspec.Struct, frozen=True):
    """A public key: of the trust domain's key ring (``owner`` RING) or of an agent.

    A ring key with ``retired_ns`` None is the active one (it signs new credentials); a
    retired key still verifies the credentials it signed before it was retired.
    """

    kid: str
    owner: str
    public: bytes
    created_ns: int
    retired_ns: int | None = None


class AgentRecord(msgspec.Struct, frozen=True):
    """A registered agent: its id and the key id of its current key pair."""

    id: str
    kid: str
    created_ns: int


class Revocation(msgspec.Struct, frozen=True):
    """``kind`` (agent, key, credential) ``id`` was revoked at ``at_ns``."""

    kind: str
    id: str
    at_ns: int
    reason: str = ""


class RegistryState(msgspec.Struct, frozen=True):
    """A consistent snapshot of a registry, as of ``generation``."""

    trust_domain: str | None
    generation: int
    keys: tuple[KeyRecord, ...] = ()
    agents: tuple[AgentRecord, ...] = ()
    revocations: tuple[Revocation, ...] = ()

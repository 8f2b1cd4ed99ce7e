"""Fixtures for the runtime tests: an in-memory audit log and Guards over policy YAML."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from nacl.signing import SigningKey

import ringfence
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard import Guard
from ringfence.stores.memory import MemoryAuditStore

from ._support import FixedClock, GuardFactory


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def memory_store() -> MemoryAuditStore:
    return MemoryAuditStore(log_id="test-log")


@pytest.fixture
def memory_log(memory_store: MemoryAuditStore, signing_key: SigningKey) -> Iterator[AuditLog]:
    log = AuditLog(
        memory_store,
        signing_key,
        clock=FixedClock(),
        checkpoint_every=10_000,
        checkpoint_seconds=3600,
    )
    yield log
    memory_store.fail_writes = False
    log.close()


@pytest.fixture
def make_guard(memory_log: AuditLog) -> GuardFactory:
    """Build a Guard over policy YAML, recording to ``memory_log``; ids are d-1, d-2, ..."""

    def build(policy_text: str, **options: Any) -> Guard:
        counter = itertools.count(1)
        options.setdefault("ids", lambda: f"d-{next(counter)}")
        options.setdefault("clock", FixedClock())
        return Guard(ringfence.policy_from_text(policy_text), audit=memory_log, **options)

    return build

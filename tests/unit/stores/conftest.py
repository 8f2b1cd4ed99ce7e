"""Fixtures for the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ringfence.stores.sqlite import SQLiteAuditStore


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def writer(store_dir: Path) -> Iterator[SQLiteAuditStore]:
    """A writer whose background flusher stays quiet, so frames stay in the journal."""
    store = SQLiteAuditStore(store_dir, flush_interval=3600)
    yield store
    if not store._closed:
        store.close()

"""Identity registries: SQLite (embedded default, shared by processes) and in memory (tests).

Layout of a registry folder (created mode 0700)::

    registry.sqlite     trust domain, public keys, agents, revocations, generation (WAL mode)
    registry.gen        the generation number, 8 bytes, memory-mapped by every process
    registry.lock       held (flock) by a process while it changes the registry
    keys/<kid>.key      private keys: the hex Ed25519 seed, mode 0600, one file per key

Private keys are files readable only by their owner (like ``~/.ssh`` keys and the audit
checkpoint key), not encrypted: a key file that other users can read is refused.  Anyone
who can read them can sign credentials; keep the folder on a disk only the service user
reads, or hold the ring key elsewhere (an HSM/KMS signer is future work).

Revocation across processes.  Every change bumps a generation number in SQLite, in the same
transaction, and then writes it to ``registry.gen``; every process maps that file and reads
the word on every credential check (~0.04 µs; ``PRAGMA data_version`` costs ~1.5 µs), so a
revocation is seen by the next check in every process once ``revoke`` has returned.  If a
process dies between its commit and that write, the others notice within ``POLL_SECONDS``
through ``PRAGMA data_version`` and repair the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ringfence.core.identity.records import (
    REVOCABLE,
    AgentRecord,
    KeyRecord,
    RegistryState,
    Revocation,
)
from ringfence.errors import ConfigError, IdentityError
from ringfence.stores.generation import SharedWord
from ringfence.stores.wal import use_wal

__all__ = ["MemoryIdentityRegistry", "SQLiteIdentityRegistry"]

POLL_SECONDS = 0.25
_POLL_NS = int(POLL_SECONDS * 1e9)
_KID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER);
INSERT OR IGNORE INTO generation VALUES (1, 0);
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY, owner TEXT NOT NULL, public BLOB NOT NULL,
    created INTEGER NOT NULL, retired INTEGER
);
CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, kid TEXT NOT NULL, created INTEGER);
CREATE TABLE IF NOT EXISTS revocations (
    kind TEXT NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
"""


def _check_revocation(r: Revocation) -> None:
    if r.kind not in REVOCABLE:
        raise IdentityError(f"cannot revoke a {r.kind!r}", code="identity.invalid")


class MemoryIdentityRegistry:
    """The IdentityRegistry port in memory, for tests and single-process use."""

    def __init__(self, trust_domain: str | None = None) -> None:
        self._lock = threading.Lock()
        self._gen = 0
        self._domain = trust_domain
        self._keys: dict[str, KeyRecord] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._revocations: dict[tuple[str, str], Revocation] = {}
        self._seeds: dict[str, bytes] = {}

    def generation(self) -> int:
        """Bumped by every change."""
        return self._gen

    def state(self) -> RegistryState:
        """A snapshot."""
        with self._lock:
            return RegistryState(
                self._domain,
                self._gen,
                tuple(self._keys.values()),
                tuple(self._agents.values()),
                tuple(self._revocations.values()),
            )

    def initialise(self, trust_domain: str) -> str:
        """Bind to ``trust_domain`` unless bound already."""
        with self._lock:
            if self._domain is None:
                self._domain = trust_domain
                self._gen += 1
            return self._domain

    def add_agent(self, agent: AgentRecord, key: KeyRecord, seed: bytes) -> None:
        """Register ``agent`` with its key."""
        with self._lock:
            if agent.id in self._agents:
                raise IdentityError(f"agent {agent.id} exists", code="identity.exists")
            self._agents[agent.id] = agent
            self._keys[key.kid] = key
            self._seeds[key.kid] = seed
            self._gen += 1

    def add_key(self, key: KeyRecord, seed: bytes, *, retire: str | None, at_ns: int) -> None:
        """Add ``key``, retire ``retire``; an agent's new key becomes its current one."""
        with self._lock:
            if key.kid in self._keys:
                raise IdentityError(f"key {key.kid} exists", code="identity.exists")
            if retire is not None and retire in self._keys:
                old = self._keys[retire]
                self._keys[retire] = KeyRecord(
                    old.kid, old.owner, old.public, old.created_ns, at_ns
                )
            self._keys[key.kid] = key
            self._seeds[key.kid] = seed
            agent = self._agents.get(key.owner)
            if agent is not None:
                self._agents[key.owner] = AgentRecord(agent.id, key.kid, agent.created_ns)
            self._gen += 1

    def revoke(self, revocation: Revocation) -> None:
        """Record ``revocation``."""
        _check_revocation(revocation)
        with self._lock:
            self._revocations.setdefault((revocation.kind, revocation.id), revocation)
            self._gen += 1

    def private_key(self, kid: str) -> bytes:
        """The seed of ``kid``."""
        seed = self._seeds.get(kid)
        if seed is None:
            raise IdentityError(f"no private key {kid!r} here", code="identity.no_key")
        return seed


class SQLiteIdentityRegistry:
    """The IdentityRegistry port over one folder; see the module docstring."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory)
        self._lock = threading.Lock()
        self._polled = 0
        self._data_version = -1
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.path / "keys").mkdir(exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(
                self.path / "registry.sqlite",
                isolation_level=None,
                check_same_thread=False,
                timeout=30,
            )
            use_wal(self._db)
            self._db.execute("PRAGMA synchronous=FULL")
            self._word = SharedWord(self.path, "registry")
            with self._word.locked():
                self._db.executescript(_SCHEMA)
            self._repair()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open identity registry {self.path}: {exc}") from exc

    # -- generation ---------------------------------------------------------------------

    def generation(self) -> int:
        """The shared generation word (with a periodic check of SQLite behind it)."""
        now = time.monotonic_ns()
        if now - self._polled > _POLL_NS:
            self._polled = now
            with self._lock:
                version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                self._repair()
        return self._word.read()

    def _db_generation(self) -> int:
        value: int = self._db.execute("SELECT value FROM generation").fetchone()[0]
        return value

    def _repair(self) -> None:
        """Make the shared word equal SQLite's generation (after a writer died in between)."""
        with self._lock, self._word.locked():
            self._word.set(self._db_generation())

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that bumps the generation, then publishes it."""
        with self._lock, self._word.locked():
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("UPDATE generation SET value = value + 1")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._word.set(self._db_generation())

    # -- reading ------------------------------------------------------------------------

    def state(self) -> RegistryState:
        """Everything but private keys, from one read transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'trust_domain'").fetchone()
                generation = self._db_generation()
                keys = tuple(
                    KeyRecord(kid, owner, bytes(public), created, retired)
                    for kid, owner, public, created, retired in db.execute(
                        "SELECT kid, owner, public, created, retired FROM keys ORDER BY created"
                    )
                )
                agents = tuple(
                    AgentRecord(*r)
                    for r in db.execute("SELECT id, kid, created FROM agents ORDER BY id")
                )
                revocations = tuple(
                    Revocation(*r)
                    for r in db.execute("SELECT kind, id, at, reason FROM revocations ORDER BY at")
                )
            finally:
                db.execute("COMMIT")
        return RegistryState(None if row is None else row[0], generation, keys, agents, revocations)

    def private_key(self, kid: str) -> bytes:
        """The seed in ``keys/<kid>.key``; refused if other users can read the file."""
        if not _KID.match(kid):
            raise IdentityError(f"{kid!r} is not a key id", code="identity.no_key")
        path = self.path / "keys" / f"{kid}.key"
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"{path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it",
                    code="config.key_permissions",
                )
            seed = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            raise IdentityError(f"no private key {kid!r} here", code="identity.no_key") from None
        except ValueError:
            raise ConfigError(f"{path} is not an Ed25519 key", code="config.key") from None
        if len(seed) != 32:
            raise ConfigError(f"{path} is not an Ed25519 key", code="config.key")
        return seed

    # -- writing ------------------------------------------------------------------------

    def _save_seed(self, kid: str, seed: bytes) -> None:
        """Write the key file before the row that names it commits (O_EXCL, 0600, fsync)."""
        if not _KID.match(kid):
            raise IdentityError(f"{kid!r} is not a key id", code="identity.invalid")
        path = self.path / "keys" / f"{kid}.key"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise IdentityError(f"key {kid} exists", code="identity.exists") from None
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror}", code="config.key") from None
        try:
            os.write(fd, (seed.hex() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def initialise(self, trust_domain: str) -> str:
        """Bind the registry to ``trust_domain`` unless it is bound already."""
        with self._writing() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('trust_domain', ?)", (trust_domain,))
            bound: str = db.execute("SELECT value FROM meta WHERE key = 'trust_domain'").fetchone()[
                0
            ]
        return bound

    def add_agent(self, agent: AgentRecord, key: KeyRecord, seed: bytes) -> None:
        """Register ``agent`` and its key (private part to ``keys/``)."""
        with self._writing() as db:
            if db.execute("SELECT 1 FROM agents WHERE id = ?", (agent.id,)).fetchone():
                raise IdentityError(f"agent {agent.id} exists", code="identity.exists")
            self._save_seed(key.kid, seed)
            db.execute(
                "INSERT INTO agents VALUES (?, ?, ?)", (agent.id, agent.kid, agent.created_ns)
            )
            self._insert_key(db, key)

    def add_key(self, key: KeyRecord, seed: bytes, *, retire: str | None, at_ns: int) -> None:
        """Add ``key`` and retire ``retire`` in one transaction."""
        with self._writing() as db:
            self._save_seed(key.kid, seed)
            if retire is not None:
                db.execute(
                    "UPDATE keys SET retired = ? WHERE kid = ? AND retired IS NULL", (at_ns, retire)
                )
            self._insert_key(db, key)
            db.execute("UPDATE agents SET kid = ? WHERE id = ?", (key.kid, key.owner))

    @staticmethod
    def _insert_key(db: sqlite3.Connection, key: KeyRecord) -> None:
        try:
            db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
                (key.kid, key.owner, key.public, key.created_ns, key.retired_ns),
            )
        except sqlite3.IntegrityError:
            raise IdentityError(f"key {key.kid} exists", code="identity.exists") from None

    def revoke(self, revocation: Revocation) -> None:
        """Record ``revocation`` (the first one of a kind and id stands)."""
        _check_revocation(revocation)
        with self._writing() as db:
            db.execute(
                "INSERT OR IGNORE INTO revocations VALUES (?, ?, ?, ?)",
                (revocation.kind, revocation.id, revocation.at_ns, revocation.reason),
            )

    def close(self) -> None:
        """Close the database and the shared word."""
        with self._lock:
            self._word.close()
            self._db.close()

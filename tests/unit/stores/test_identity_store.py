"""Identity registries: the port's contract (memory and SQLite), key files, and revocation
seen by the next check in another process."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.core.identity.records import RING, AgentRecord, KeyRecord, Revocation
from ringfence.errors import ConfigError, IdentityError
from ringfence.runtime.authority import Authority
from ringfence.runtime.identity import Verifier
from ringfence.runtime.ports import IdentityRegistry
from ringfence.stores import identity as store_mod
from ringfence.stores.identity import MemoryIdentityRegistry, SQLiteIdentityRegistry

KID_A = "A" * 43
KID_B = "B" * 43
AGENT = "spiffe://corp.example/agent/a"


@pytest.fixture(params=["memory", "sqlite"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdentityRegistry]:
    if request.param == "memory":
        yield MemoryIdentityRegistry()
    else:
        reg = SQLiteIdentityRegistry(tmp_path / "identity")
        yield reg
        reg.close()


class TestContract:
    def test_initialise_binds_once(self, registry: IdentityRegistry) -> None:
        assert registry.state().trust_domain is None
        assert registry.initialise("corp.example") == "corp.example"
        assert registry.initialise("other.example") == "corp.example"
        assert registry.state().trust_domain == "corp.example"

    def test_every_change_moves_the_generation(self, registry: IdentityRegistry) -> None:
        seen = [registry.generation()]
        registry.initialise("corp.example")
        seen.append(registry.generation())
        registry.add_agent(
            AgentRecord(AGENT, KID_A, 1), KeyRecord(KID_A, AGENT, b"p" * 32, 1), b"s" * 32
        )
        seen.append(registry.generation())
        registry.add_key(KeyRecord(KID_B, RING, b"q" * 32, 2), b"t" * 32, retire=None, at_ns=2)
        seen.append(registry.generation())
        registry.revoke(Revocation("credential", "jti-1", 3))
        seen.append(registry.generation())
        assert len(set(seen)) == len(seen)
        assert registry.state().generation == registry.generation()

    def test_agents_and_keys(self, registry: IdentityRegistry) -> None:
        registry.add_agent(
            AgentRecord(AGENT, KID_A, 1), KeyRecord(KID_A, AGENT, b"p" * 32, 1), b"s" * 32
        )
        with pytest.raises(IdentityError) as info:
            registry.add_agent(
                AgentRecord(AGENT, KID_B, 1), KeyRecord(KID_B, AGENT, b"q" * 32, 1), b"t" * 32
            )
        assert info.value.code == "identity.exists"
        registry.add_key(KeyRecord(KID_B, AGENT, b"q" * 32, 5), b"t" * 32, retire=KID_A, at_ns=5)
        state = registry.state()
        assert state.agents == (AgentRecord(AGENT, KID_B, 1),)
        keys = {k.kid: k for k in state.keys}
        assert keys[KID_A].retired_ns == 5 and keys[KID_B].retired_ns is None
        assert registry.private_key(KID_A) == b"s" * 32
        assert registry.private_key(KID_B) == b"t" * 32
        with pytest.raises(IdentityError) as info:
            registry.add_key(KeyRecord(KID_B, RING, b"q" * 32, 6), b"t" * 32, retire=None, at_ns=6)
        assert info.value.code == "identity.exists"

    def test_unknown_private_key(self, registry: IdentityRegistry) -> None:
        with pytest.raises(IdentityError) as info:
            registry.private_key(KID_A)
        assert info.value.code == "identity.no_key"

    def test_revocations(self, registry: IdentityRegistry) -> None:
        registry.revoke(Revocation("agent", AGENT, 1, "first"))
        registry.revoke(Revocation("agent", AGENT, 2, "second"))
        assert registry.state().revocations == (Revocation("agent", AGENT, 1, "first"),)
        with pytest.raises(IdentityError):
            registry.revoke(Revocation("everything", "*", 3))


class TestSQLite:
    def test_survives_reopening(self, tmp_path: Path) -> None:
        folder = tmp_path / "identity"
        first = SQLiteIdentityRegistry(folder)
        Authority(first, trust_domain="corp.example").create_agent("a")
        state = first.state()
        first.close()
        again = SQLiteIdentityRegistry(folder)
        assert again.state() == state
        assert again.generation() == state.generation
        again.close()

    def test_file_modes(self, tmp_path: Path) -> None:
        folder = tmp_path / "identity"
        reg = SQLiteIdentityRegistry(folder)
        authority = Authority(reg, trust_domain="corp.example")
        kid = authority.create_agent("a").kid
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "keys").stat().st_mode) == 0o700
        key_file = folder / "keys" / f"{kid}.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key_file.chmod(0o644)
        with pytest.raises(ConfigError) as info:
            reg.private_key(kid)
        assert info.value.code == "config.key_permissions"
        reg.close()

    def test_a_corrupt_key_file_is_refused(self, tmp_path: Path) -> None:
        reg = SQLiteIdentityRegistry(tmp_path / "identity")
        kid = Authority(reg, trust_domain="corp.example").create_agent("a").kid
        (tmp_path / "identity" / "keys" / f"{kid}.key").write_text("not hex\n")
        with pytest.raises(ConfigError):
            reg.private_key(kid)
        reg.close()

    @pytest.mark.parametrize("kid", ["../../etc/passwd", "a/b", "", "x" * 43 + "/"])
    def test_key_ids_are_not_paths(self, tmp_path: Path, kid: str) -> None:
        reg = SQLiteIdentityRegistry(tmp_path / "identity")
        with pytest.raises(IdentityError):
            reg.private_key(kid)
        reg.close()

    def test_unopenable(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        with pytest.raises(ConfigError):
            SQLiteIdentityRegistry(tmp_path / "file")

    def test_two_handles_see_each_others_revocations_on_the_next_check(
        self, tmp_path: Path
    ) -> None:
        folder = tmp_path / "identity"
        writer = SQLiteIdentityRegistry(folder)
        authority = Authority(writer, trust_domain="corp.example")
        authority.create_agent("a")
        token = authority.issue("a", tools=("x",))
        reader = SQLiteIdentityRegistry(folder)
        verifier = Verifier(reader)
        now = authority._clock()
        verifier.verify(token, now)
        authority.revoke_credential(token)
        with pytest.raises(IdentityError) as info:
            verifier.verify(token, now)
        assert info.value.code == "credential.revoked"
        writer.close()
        reader.close()

    def test_revocation_by_another_process(self, tmp_path: Path) -> None:
        folder = tmp_path / "identity"
        reg = SQLiteIdentityRegistry(folder)
        authority = Authority(reg, trust_domain="corp.example")
        authority.create_agent("a")
        token = authority.issue("a", tools=("x",))
        verifier = Verifier(reg)
        now = authority._clock()
        verifier.verify(token, now)
        script = textwrap.dedent(
            f"""
            from ringfence.runtime.authority import Authority
            from ringfence.stores.identity import SQLiteIdentityRegistry
            reg = SQLiteIdentityRegistry({str(folder)!r})
            Authority(reg).revoke_agent("a", "from another process")
            reg.close()
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        with pytest.raises(IdentityError) as info:
            verifier.verify(token, now)  # the very next check, no waiting
        assert info.value.code == "credential.agent_revoked"
        reg.close()

    def test_a_writer_that_died_before_publishing_is_noticed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A change committed to SQLite without the shared word being updated (the writer
        died in between) is picked up by the periodic data_version check."""
        folder = tmp_path / "identity"
        reg = SQLiteIdentityRegistry(folder)
        authority = Authority(reg, trust_domain="corp.example")
        authority.create_agent("a")
        token = authority.issue("a", tools=("x",))
        verifier = Verifier(reg)
        now = authority._clock()
        verifier.verify(token, now)
        raw = sqlite3.connect(folder / "registry.sqlite", isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "INSERT INTO revocations VALUES ('agent', ?, 0, 'raw')", (authority.agent_id("a"),)
        )
        raw.execute("UPDATE generation SET value = value + 1")
        raw.execute("COMMIT")
        raw.close()
        verifier.verify(token, now)  # not yet noticed: the poll interval has not passed
        monkeypatch.setattr(store_mod, "_POLL_NS", 0)
        with pytest.raises(IdentityError) as info:
            verifier.verify(token, now)
        assert info.value.code == "credential.agent_revoked"
        reg.close()

    def test_no_secrets_in_the_database(self, tmp_path: Path) -> None:
        folder = tmp_path / "identity"
        reg = SQLiteIdentityRegistry(folder)
        kid = Authority(reg, trust_domain="corp.example").create_agent("a").kid
        seed = reg.private_key(kid)
        reg.close()
        for name in os.listdir(folder):
            if name.startswith("registry.sqlite"):
                assert seed not in (folder / name).read_bytes()


@pytest.mark.slow
def test_cli_rotation_in_another_process_fails_no_in_flight_call(tmp_path: Path) -> None:
    """Threads make guarded calls while ``ringfence identity rotate`` runs in other
    processes on the same registry; credentials from before and after every rotation are
    used throughout.  Not one call may be refused."""
    import threading

    from nacl.signing import SigningKey

    import ringfence
    from ringfence.runtime.audit import AuditLog
    from ringfence.stores.memory import MemoryAuditStore

    data = tmp_path / "rf"
    reg = SQLiteIdentityRegistry(data / "identity")
    authority = Authority(reg, trust_domain="corp.example")
    authority.create_agent("worker")
    policy = ringfence.policy_from_text(
        "version: 1\nrules:\n  - {id: any, effect: allow, tool: work}\n"
    )
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate(), checkpoint_seconds=3600)
    guard = ringfence.Guard(policy, audit=log, verifier=Verifier(reg))
    tokens = [authority.issue("worker", tools=("work",))]
    failures: list[BaseException] = []
    done = [0]
    stop = threading.Event()

    @guard.protect
    def work(i: int) -> int:
        return i

    def worker(n: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                with guard.context(credential=tokens[(n + i) % len(tokens)]):
                    work(i)
                done[0] += 1
                i += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    rotated = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-m", "ringfence.cli", "identity", "rotate", "--data", str(data)],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        rotated.append(out.stdout.strip())
        tokens.append(authority.issue("worker", tools=("work",)))  # signed by the new key
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert failures == []
    from ringfence.core.identity.token import parse as parse_token

    assert [parse_token(t).kid for t in tokens[1:]] == rotated
    assert done[0] > 0
    from ringfence.core.audit.encoding import decode

    effects = {
        decode(d)["effect"] for _, d in log.store.records() if decode(d)["type"] == "decision"
    }
    assert effects == {"allow"}
    log.close()
    reg.close()

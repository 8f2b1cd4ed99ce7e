"""Build small audit logs by hand (pure, no store, no threads) for verification tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nacl.signing import SigningKey, VerifyKey

from ringfence.core.audit.checkpoint import Checkpoint, key_id, sign_checkpoint
from ringfence.core.audit.encoding import canonical, decode
from ringfence.core.audit.merkle import leaf_hash, root_of
from ringfence.core.audit.verify import Report, verify_log

KEY = SigningKey(b"\x07" * 32)
OTHER_KEY = SigningKey(b"\x08" * 32)
KEYS: dict[str, VerifyKey] = {key_id(bytes(KEY.verify_key)): KEY.verify_key}
LOG_ID = "log-1"


def record(seq: int, prev: str, note: str | None = None) -> bytes:
    """The canonical bytes of one record."""
    return canonical(
        {
            "v": 1,
            "type": "decision",
            "ts": 1_000 + seq,
            "seq": seq,
            "prev": prev,
            "note": f"record {seq}" if note is None else note,
            "args": {"n": seq, "s": "é✓"},
        }
    )


def chain(datas: Iterable[bytes]) -> list[bytes]:
    """Renumber and relink records as a writer would (what an attacker without the key can do)."""
    out: list[bytes] = []
    prev = b""
    for seq, data in enumerate(datas):
        fields: dict[str, Any] = decode(data)
        fields["seq"] = seq
        fields["prev"] = prev.hex()
        out.append(canonical(fields))
        prev = leaf_hash(out[-1])
    return out


def edit(data: bytes, **changes: Any) -> bytes:
    """The record with some fields changed, still canonical."""
    fields = decode(data)
    fields.update(changes)
    return canonical(fields)


def checkpoint(datas: list[bytes], size: int, key: SigningKey = KEY, **kw: Any) -> Checkpoint:
    leaves = [leaf_hash(d) for d in datas[:size]]
    args: dict[str, Any] = {
        "log_id": LOG_ID,
        "size": size,
        "root": root_of(leaves),
        "head": leaves[-1] if leaves else b"",
        "time_ns": 10_000 + size,
    }
    args.update(kw)
    return sign_checkpoint(key, **args)


@dataclass
class Log:
    """A log as a store holds it: records by position, and checkpoints."""

    datas: list[bytes]
    cps: list[Checkpoint] = field(default_factory=list)

    @classmethod
    def build(cls, n: int, seal_at: Iterable[int] = ()) -> Log:
        datas = chain(record(i, "") for i in range(n))
        return cls(datas, [checkpoint(datas, s) for s in seal_at])

    def rows(self) -> list[tuple[int, bytes]]:
        return list(enumerate(self.datas))

    def verify(self, rows: list[tuple[int, bytes]] | None = None) -> Report:
        return verify_log(self.rows() if rows is None else rows, self.cps, KEYS, log_id=LOG_ID)


def replace_cp(cp: Checkpoint, **changes: Any) -> Checkpoint:
    """``cp`` with fields changed but the old signature kept."""
    return msgspec.structs.replace(cp, **changes)

"""Signed checkpoints: a log's size, root hash, head hash and time, signed with Ed25519.

The signed text (``ringfence-checkpoint/v1``), one field a line::

    ringfence-checkpoint/v1
    log <log id>
    size <number of records>
    root <hex root hash of the Merkle tree over those records>
    head <hex leaf hash of the last record, or empty>
    time <nanoseconds since the epoch>
    key <key id>

Keys are passed in; nothing here reads a key file or a clock.
"""

from __future__ import annotations

import base64
import hashlib

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = ["Checkpoint", "key_id", "sign_checkpoint", "verify_checkpoint"]

HEADER = "ringfence-checkpoint/v1"


class Checkpoint(msgspec.Struct, frozen=True):
    """One signed statement of the log's state."""

    log_id: str
    size: int
    root: str  # hex
    head: str  # hex leaf hash of record size-1, "" for an empty log
    time_ns: int
    key_id: str
    signature: str  # base64 Ed25519 signature over :meth:`signed_text`

    def signed_text(self) -> bytes:
        """The exact bytes the signature covers."""
        return (
            f"{HEADER}\nlog {self.log_id}\nsize {self.size}\nroot {self.root}\n"
            f"head {self.head}\ntime {self.time_ns}\nkey {self.key_id}\n"
        ).encode()

    def to_json(self) -> bytes:
        """JSON bytes of this checkpoint."""
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """Parse :meth:`to_json` output (raises msgspec errors on bad input)."""
        return msgspec.json.decode(data, type=cls)


def key_id(public_key: bytes) -> str:
    """A short, stable id for an Ed25519 public key."""
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]


def sign_checkpoint(
    key: SigningKey, *, log_id: str, size: int, root: bytes, head: bytes, time_ns: int
) -> Checkpoint:
    """Sign the state (size, root, head) of log ``log_id`` at ``time_ns``."""
    unsigned = Checkpoint(
        log_id=log_id,
        size=size,
        root=root.hex(),
        head=head.hex(),
        time_ns=time_ns,
        key_id=key_id(bytes(key.verify_key)),
        signature="",
    )
    signature = key.sign(unsigned.signed_text()).signature
    return msgspec.structs.replace(unsigned, signature=base64.b64encode(signature).decode())


def verify_checkpoint(checkpoint: Checkpoint, keys: dict[str, VerifyKey]) -> str | None:
    """Why ``checkpoint`` is not validly signed by one of ``keys``, or None if it is."""
    key = keys.get(checkpoint.key_id)
    if key is None:
        return f"signed by unknown key {checkpoint.key_id}"
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
        key.verify(checkpoint.signed_text(), signature)
    except (BadSignatureError, ValueError):
        return "signature does not verify"
    return None

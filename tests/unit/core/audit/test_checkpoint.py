"""Signed checkpoints."""

from __future__ import annotations

import base64
import hashlib

import msgspec
import pytest
from nacl.signing import SigningKey

from ringfence.core.audit.checkpoint import (
    HEADER,
    Checkpoint,
    key_id,
    sign_checkpoint,
    verify_checkpoint,
)

KEY = SigningKey(b"\x01" * 32)
OTHER = SigningKey(b"\x02" * 32)
KEYS = {key_id(bytes(KEY.verify_key)): KEY.verify_key}
ROOT = hashlib.sha256(b"root").digest()
HEAD = hashlib.sha256(b"head").digest()


def signed(key: SigningKey = KEY, **kw: object) -> Checkpoint:
    args: dict[str, object] = {
        "log_id": "log-1",
        "size": 5,
        "root": ROOT,
        "head": HEAD,
        "time_ns": 123,
    }
    args.update(kw)
    return sign_checkpoint(key, **args)  # type: ignore[arg-type]


def test_key_id() -> None:
    public = bytes(KEY.verify_key)
    assert key_id(public) == "ed25519:" + hashlib.sha256(public).hexdigest()[:16]
    assert key_id(public) != key_id(bytes(OTHER.verify_key))


def test_sign_and_verify() -> None:
    cp = signed()
    assert (cp.log_id, cp.size, cp.root, cp.head, cp.time_ns) == (
        "log-1",
        5,
        ROOT.hex(),
        HEAD.hex(),
        123,
    )
    assert cp.key_id == key_id(bytes(KEY.verify_key))
    assert len(base64.b64decode(cp.signature)) == 64
    assert verify_checkpoint(cp, KEYS) is None


def test_signed_text_is_exact() -> None:
    cp = signed()
    assert (
        cp.signed_text()
        == (
            f"{HEADER}\nlog log-1\nsize 5\nroot {ROOT.hex()}\nhead {HEAD.hex()}\n"
            f"time 123\nkey {cp.key_id}\n"
        ).encode()
    )
    assert HEADER == "ringfence-checkpoint/v1"


def test_signature_is_deterministic() -> None:
    assert signed().signature == signed().signature


def test_empty_log_checkpoint() -> None:
    cp = signed(size=0, head=b"")
    assert cp.head == ""
    assert verify_checkpoint(cp, KEYS) is None


def test_unknown_key() -> None:
    cp = signed(key=OTHER)
    assert verify_checkpoint(cp, KEYS) == f"signed by unknown key {cp.key_id}"
    trusted = signed()
    assert verify_checkpoint(trusted, {}) == f"signed by unknown key {trusted.key_id}"


def test_other_key_claiming_the_trusted_key_id() -> None:
    forged = msgspec.structs.replace(signed(key=OTHER), key_id=signed().key_id)
    assert verify_checkpoint(forged, KEYS) == "signature does not verify"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("log_id", "log-2"),
        ("size", 6),
        ("size", 4),
        ("root", hashlib.sha256(b"other").hexdigest()),
        ("head", hashlib.sha256(b"other").hexdigest()),
        ("head", ""),
        ("time_ns", 124),
    ],
)
def test_tampered_field(field: str, value: object) -> None:
    cp = msgspec.structs.replace(signed(), **{field: value})
    assert verify_checkpoint(cp, KEYS) == "signature does not verify"


@pytest.mark.parametrize(
    "signature",
    [
        "not base64!",
        "",
        base64.b64encode(b"short").decode(),
        base64.b64encode(b"\x00" * 64).decode(),
        "A" * 85 + "==",
    ],
)
def test_bad_signature_encoding(signature: str) -> None:
    cp = msgspec.structs.replace(signed(), signature=signature)
    assert verify_checkpoint(cp, KEYS) == "signature does not verify"


def test_flipped_signature_bit() -> None:
    cp = signed()
    raw = bytearray(base64.b64decode(cp.signature))
    raw[10] ^= 1
    bad = msgspec.structs.replace(cp, signature=base64.b64encode(bytes(raw)).decode())
    assert verify_checkpoint(bad, KEYS) == "signature does not verify"


def test_json_round_trip() -> None:
    cp = signed()
    assert Checkpoint.from_json(cp.to_json()) == cp
    assert verify_checkpoint(Checkpoint.from_json(cp.to_json()), KEYS) is None
    with pytest.raises(msgspec.DecodeError):
        Checkpoint.from_json(b'{"log_id": "x"}')
    with pytest.raises(msgspec.ValidationError):
        Checkpoint.from_json(cp.to_json().replace(b'"size":5', b'"size":"5"'))

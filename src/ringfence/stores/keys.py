"""Key files for signing audit checkpoints: an Ed25519 seed kept with 0600 permissions.

A checkpoint key is created on first use beside the store.  Verify with a copy of the public
key kept somewhere else (``ringfence audit verify --public-key``): a key stored beside the log
proves integrity only against someone who cannot also replace the key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from ringfence.core.audit.checkpoint import key_id
from ringfence.errors import ConfigError

__all__ = ["load_or_create_signing_key", "load_public_key"]

KEY_FILE = "audit-signing.key"
PUB_FILE = "audit-signing.pub"


def load_or_create_signing_key(directory: str | os.PathLike[str]) -> SigningKey:
    """The signing key in ``directory``, created (mode 0600) if there is none."""
    folder = Path(directory)
    path = folder / KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = SigningKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(bytes(key).hex() + "\n")
        (folder / PUB_FILE).write_text(bytes(key.verify_key).hex() + "\n")
        return key
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it",
            code="config.key_permissions",
        )
    try:
        return SigningKey(bytes.fromhex(path.read_text().strip()))
    except ValueError as exc:
        raise ConfigError(f"{path} is not an Ed25519 key: {exc}", code="config.key") from None


def load_public_key(path: str | os.PathLike[str]) -> dict[str, VerifyKey]:
    """``{key id: key}`` from a public key file (hex, one key per line)."""
    keys: dict[str, VerifyKey] = {}
    try:
        lines = Path(path).read_text().split()
    except OSError as exc:
        raise ConfigError(
            f"cannot read public key {path}: {exc.strerror}", code="config.key"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a hex public key file", code="config.key") from None
    for line in lines:
        try:
            raw = bytes.fromhex(line)
            keys[key_id(raw)] = VerifyKey(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{path}: not an Ed25519 public key: {exc}", code="config.key"
            ) from None
    if not keys:
        raise ConfigError(f"{path} holds no public key", code="config.key")
    return keys

"""The receipt signing key pair of an approval store: ``keys/approvals-signing.key`` (mode
0600) and ``keys/approvals-signing.pub``.

Whoever can read the private key can approve, so on a shared machine it is readable by the
reviewers' group only, never by the agent's user (see docs/approvals.md); an agent process
needs only the public key.  Re-exported by :mod:`ringfence.stores.approvals`.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from nacl.signing import SigningKey, VerifyKey

from ringfence.errors import ConfigError

__all__ = ["KEY_FILE", "PUB_FILE", "load_approval_public_key", "load_or_create_approval_key"]

KEY_FILE = "approvals-signing.key"
PUB_FILE = "approvals-signing.pub"


def load_or_create_approval_key(directory: str | os.PathLike[str]) -> SigningKey:
    """The receipt signing key in ``directory`` (``approvals-signing.key``), created with mode
    0600 if there is none; ConfigError if others may read it or it is not a key."""
    folder = Path(directory)
    path = folder / KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = SigningKey.generate()
        # Written whole under a temporary name, then linked into place: a process that
        # races us sees either no key or a complete one, and the first link wins.
        tmp = folder / f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(bytes(key).hex() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return load_or_create_approval_key(directory)
        finally:
            tmp.unlink()
        _write_public(folder, key.verify_key)
        return key
    mode = path.stat().st_mode
    if mode & stat.S_IRWXO:
        raise ConfigError(
            f"{path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it",
            code="config.key_permissions",
        )
    try:
        key = SigningKey(bytes.fromhex(path.read_text().strip()))
    except ValueError as exc:
        raise ConfigError(f"{path} is not an Ed25519 key: {exc}", code="config.key") from None
    if not (folder / PUB_FILE).exists():
        _write_public(folder, key.verify_key)
    return key


def _write_public(folder: Path, public: VerifyKey) -> None:
    tmp = folder / f".{PUB_FILE}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(bytes(public).hex() + "\n")
    os.replace(tmp, folder / PUB_FILE)


def load_approval_public_key(directory: str | os.PathLike[str]) -> VerifyKey:
    """The public key receipts are verified with (``approvals-signing.pub``).  If there is no
    key pair yet it is created (the private half stays in its 0600 file); if only the
    private key exists, the public file is written from it."""
    folder = Path(directory)
    path = folder / PUB_FILE
    if not path.exists():
        return load_or_create_approval_key(folder).verify_key  # writes the public file too
    try:
        return VerifyKey(bytes.fromhex(path.read_text().strip()))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not an Ed25519 public key: {exc}", code="config.key"
        ) from None

"""The encrypted local secret file, its key ring, and the source that reads it.

The file (default ``.ringfence/secrets.enc``) is one XChaCha20-Poly1305 message (libsodium,
through PyNaCl, already a dependency)::

    b"RFSECRETS" | version (1 byte) | key id (8 bytes) | nonce (24 bytes) | ciphertext

The header is authenticated as associated data.  The plaintext is JSON:
``{"v": 1, "salt": hex, "secrets": {name: {"value": ..., "updated_ns": ...}}}``; ``salt``
keys the fingerprints :meth:`SecretFile.fingerprint` shows (a plain hash of a short password
could be brute-forced; a keyed one cannot, without the file's contents).

Keys are 32 random bytes, written base64, one per line, in a key file of mode 0600 (default
``.ringfence/keys/secrets.key``) or in ``RINGFENCE_SECRETS_KEY`` (which wins).  Several keys
form a ring: the file names the id of the key it is encrypted with, so the old and the new
key can both be present while :func:`rotate_key` re-encrypts (every step of a rotation leaves
a file that some key in the ring opens).  A file that fails authentication (edited,
truncated, corrupted), or whose key is not in the ring, raises a
:class:`~ringfence.errors.SecretError` naming the problem — never a partial result.

:class:`EncryptedFileSource` re-reads the file (and the key file) whenever either changes on
disk, so ``ringfence secrets set`` and ``rotate-key`` take effect in a running gateway.
Writers take an exclusive lock beside the file and replace it atomically.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nacl.bindings
import nacl.exceptions
import nacl.utils

from ringfence.errors import SecretError
from ringfence.runtime.secrets import ENV_PREFIX, KEY_ENV, ChainSource, EnvSource, SecretSource

__all__ = [
    "FILE_NAME",
    "KEY_FILE_NAME",
    "EncryptedFileSource",
    "KeyRing",
    "SecretFile",
    "StoredSecret",
    "create_key_file",
    "key_id",
    "load_key_ring",
    "open_secret_source",
    "read_secret_file",
    "rotate_key",
    "update_secret_file",
]

FILE_NAME = "secrets.enc"
KEY_FILE_NAME = "secrets.key"
MAGIC = b"RFSECRETS"
VERSION = 1
KEY_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
NONCE_BYTES = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KID_BYTES = 8
_HEADER = len(MAGIC) + 1 + _KID_BYTES
MAX_FILE_BYTES = 16 << 20


def key_id(key: bytes) -> str:
    """A short public id of a key (hex); tells which key a file needs without revealing it."""
    return hashlib.blake2b(key, digest_size=_KID_BYTES, person=b"rf-secrets-kid").hexdigest()


class KeyRing:
    """Keys by id; the last one given is the one new files are encrypted with."""

    def __init__(self, keys: list[bytes], origin: str) -> None:
        if not keys:
            raise SecretError(f"{origin} holds no key", code="secret.file.no_key")
        self.keys = {key_id(k): k for k in keys}
        self.primary = keys[-1]
        self.origin = origin

    def get(self, kid: str) -> bytes | None:
        """The key with id ``kid``, if the ring holds it."""
        return self.keys.get(kid)


def _parse_keys(text: str, origin: str) -> list[bytes]:
    keys = []
    for i, raw_line in enumerate(text.replace(",", "\n").splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise SecretError(
                f"{origin}: entry {i} is not a base64 key of {KEY_BYTES} bytes",
                code="secret.file.bad_key",
            )
        keys.append(key)
    return keys


def load_key_ring(
    key_file: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None
) -> KeyRing:
    """The key ring from ``RINGFENCE_SECRETS_KEY`` if set, else from ``key_file`` (mode 0600)."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return KeyRing(_parse_keys(env[KEY_ENV], KEY_ENV), KEY_ENV)
    if key_file is None:
        raise SecretError(
            f"no key for the secret file: set {KEY_ENV} or give a key file",
            code="secret.file.no_key",
        )
    path = Path(key_file)
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"{path} is readable by other users (mode {oct(mode & 0o777)}); chmod 600 it",
                code="secret.file.key_permissions",
            )
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise SecretError(
            f"no key file {path} (and {KEY_ENV} is not set): the secret file cannot be opened",
            code="secret.file.no_key",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"cannot read key file {path}: {exc}", code="secret.file.io") from None
    return KeyRing(_parse_keys(text, str(path)), str(path))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable; not every FS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def create_key_file(path: str | os.PathLike[str]) -> KeyRing:
    """A new key in a new key file (mode 0600); refuses to overwrite an existing one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    key = nacl.utils.random(KEY_BYTES)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretError(f"{target} exists already", code="secret.file.exists") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode() + "\n")
    return KeyRing([key], str(target))


def _write_key_file(path: Path, keys: list[bytes]) -> None:
    text = "".join(base64.b64encode(k).decode() + "\n" for k in keys)
    _write_atomic(path, text.encode("ascii"))


class StoredSecret(msgspec.Struct, frozen=True):
    """One secret in the file: its value and when it was last set."""

    value: str
    updated_ns: int


class _Plain(msgspec.Struct, forbid_unknown_fields=True):
    v: int
    salt: str
    secrets: dict[str, StoredSecret]


@dataclass(frozen=True)
class SecretFile:
    """The decrypted contents of a secret file."""

    secrets: dict[str, StoredSecret]
    salt: bytes
    key_id: str

    def fingerprint(self, name: str) -> str:
        """A keyed digest of the value of ``name``: changes when the value does, reveals nothing."""
        value = self.secrets[name].value.encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(value, key=self.salt, digest_size=8, person=b"rf-secrets-fp")
        return "fp:" + digest.hexdigest()


def _decrypt(data: bytes, ring: KeyRing, origin: str) -> SecretFile:
    if len(data) < _HEADER + NONCE_BYTES + 16 or not data.startswith(MAGIC):
        raise SecretError(
            f"{origin} is not a Ringfence secret file (or it is truncated)",
            code="secret.file.corrupt",
        )
    if data[len(MAGIC)] != VERSION:
        raise SecretError(
            f"{origin}: unsupported secret file version {data[len(MAGIC)]}",
            code="secret.file.version",
        )
    header = data[:_HEADER]
    kid = header[len(MAGIC) + 1 :].hex()
    key = ring.get(kid)
    if key is None:
        raise SecretError(
            f"{origin} is encrypted with key {kid}, which {ring.origin} does not hold "
            f"(it holds {', '.join(sorted(ring.keys))}): wrong key",
            code="secret.file.wrong_key",
        )
    nonce = data[_HEADER : _HEADER + NONCE_BYTES]
    try:
        plain = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            data[_HEADER + NONCE_BYTES :], header, nonce, key
        )
    except nacl.exceptions.CryptoError:
        raise SecretError(
            f"{origin} failed authentication: it was modified or corrupted after it was "
            "written; restore it from a backup or set the secrets again",
            code="secret.file.tampered",
        ) from None
    try:
        doc = msgspec.json.decode(plain, type=_Plain)
        salt = bytes.fromhex(doc.salt)
    except (msgspec.DecodeError, ValueError) as exc:
        raise SecretError(
            f"{origin}: unreadable contents ({exc})", code="secret.file.corrupt"
        ) from None
    if doc.v != 1:
        raise SecretError(
            f"{origin}: unsupported contents version {doc.v}", code="secret.file.version"
        )
    return SecretFile(secrets=doc.secrets, salt=salt, key_id=kid)


def _encrypt(contents: SecretFile, key: bytes) -> bytes:
    header = MAGIC + bytes([VERSION]) + bytes.fromhex(key_id(key))
    nonce = nacl.utils.random(NONCE_BYTES)
    plain = msgspec.json.encode(
        _Plain(v=1, salt=contents.salt.hex(), secrets=dict(sorted(contents.secrets.items())))
    )
    return (
        header
        + nonce
        + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, header, nonce, key)
    )


def read_secret_file(path: str | os.PathLike[str], ring: KeyRing) -> SecretFile:
    """Decrypt the file at ``path``; a missing file is an empty one."""
    target = Path(path)
    try:
        size = target.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SecretError(
                f"{target} is larger than {MAX_FILE_BYTES} bytes", code="secret.file.corrupt"
            )
        data = target.read_bytes()
    except FileNotFoundError:
        return SecretFile(secrets={}, salt=nacl.utils.random(16), key_id=key_id(ring.primary))
    except OSError as exc:
        raise SecretError(f"cannot read {target}: {exc.strerror}", code="secret.file.io") from None
    return _decrypt(data, ring, str(target))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: single writer assumed
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def update_secret_file(
    path: str | os.PathLike[str],
    ring: KeyRing,
    change: Callable[[dict[str, StoredSecret]], dict[str, StoredSecret]],
    *,
    key: bytes | None = None,
) -> SecretFile:
    """Read, ``change`` the secrets, write back encrypted with ``key`` (default: the primary).

    Holds an exclusive lock beside the file throughout, so concurrent writers do not lose
    each other's changes; readers see the old or the new file, never a mix.
    """
    target = Path(path)
    with _locked(target):
        current = read_secret_file(target, ring)
        secrets = change(dict(current.secrets))
        use = key or ring.primary
        updated = SecretFile(secrets=secrets, salt=current.salt, key_id=key_id(use))
        _write_atomic(target, _encrypt(updated, use))
        return updated


def rotate_key(
    path: str | os.PathLike[str],
    key_file: str | os.PathLike[str] | None,
    *,
    new_key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Re-encrypt the file with a new random key; the new key's id.

    With a key file (no ``RINGFENCE_SECRETS_KEY``) the new key is added to the ring first,
    the file re-encrypted, then the old key removed: a crash at any point leaves a file the
    ring opens.  A key from the environment cannot be changed from here: give
    ``new_key_file`` (it must not exist); the variable must then be set from it.
    """
    env = os.environ if environ is None else environ
    from_env = bool(env.get(KEY_ENV))
    ring = load_key_ring(key_file, environ=env)
    new = nacl.utils.random(KEY_BYTES)
    if new_key_file is not None:
        target = Path(new_key_file)
        if target.exists():
            raise SecretError(f"{target} exists already", code="secret.file.exists")
        _write_key_file(target, [new])
    elif from_env or key_file is None:
        raise SecretError(
            f"the key comes from {KEY_ENV}; give a new key file to write the new key to",
            code="secret.file.no_key",
        )
    else:
        _write_key_file(Path(key_file), [*ring.keys.values(), new])
    update_secret_file(path, KeyRing([*ring.keys.values(), new], ring.origin), dict, key=new)
    if new_key_file is None and key_file is not None:
        _write_key_file(Path(key_file), [new])
    return key_id(new)


class EncryptedFileSource:
    """Secrets from the encrypted file, re-read whenever the file or its key file changes.

    A missing file has no secrets (``ringfence secrets set`` creates it later; the source
    sees it then).  A file that cannot be opened raises SecretError on every call until it
    is fixed: nothing is served from a stale copy.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key_file: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.key_file = None if key_file is None else Path(key_file)
        self._environ = environ
        self._lock = threading.Lock()
        self._stamp: tuple[object, ...] | None = None
        self._secrets: dict[str, StoredSecret] = {}

    def _stamp_now(self) -> tuple[object, ...]:
        def one(p: Path | None) -> object:
            if p is None:
                return None
            try:
                st = p.stat()
            except FileNotFoundError:
                return "missing"
            return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

        env = os.environ if self._environ is None else self._environ
        return (one(self.path), one(self.key_file), env.get(KEY_ENV))

    def _current(self) -> dict[str, StoredSecret]:
        with self._lock:
            stamp = self._stamp_now()
            if stamp != self._stamp:
                if stamp[0] == "missing":
                    secrets: dict[str, StoredSecret] = {}
                else:
                    ring = load_key_ring(self.key_file, environ=self._environ)
                    secrets = read_secret_file(self.path, ring).secrets
                self._secrets, self._stamp = secrets, stamp
            return self._secrets

    def get(self, name: str) -> str | None:
        """The current value of ``name``, or None."""
        stored = self._current().get(name)
        return None if stored is None else stored.value

    def names(self) -> list[str]:
        """Every name in the file, sorted."""
        return sorted(self._current())


def open_secret_source(
    data_dir: str | os.PathLike[str],
    *,
    file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    env: bool = True,
    env_prefix: str = ENV_PREFIX,
) -> SecretSource:
    """The default source: environment variables first, then the encrypted file.

    The file and key file default to ``data_dir/secrets.enc`` and
    ``data_dir/keys/secrets.key``.  The file is opened once here so that a wrong key or a
    tampered file stops the program at start, with the reason, rather than at the first call.
    """
    folder = Path(data_dir)
    source = EncryptedFileSource(
        file if file is not None else folder / FILE_NAME,
        key_file if key_file is not None else folder / "keys" / KEY_FILE_NAME,
    )
    source.names()
    return ChainSource(EnvSource(env_prefix), source) if env else source

"""The encrypted secret file: round trip, fail-closed reading, key rings, rotation, the source."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from ringfence.errors import SecretError
from ringfence.runtime.secrets import KEY_ENV
from ringfence.stores.secretfile import (
    MAGIC,
    EncryptedFileSource,
    StoredSecret,
    create_key_file,
    key_id,
    load_key_ring,
    open_secret_source,
    read_secret_file,
    rotate_key,
    update_secret_file,
)

VALUE = "sk_live_51HqLrT2eZvKYlo2CabcDEF"
NO_ENV: dict[str, str] = {}


def put(path: Path, key_file: Path, name: str, value: str, at: int = 1) -> None:
    ring = load_key_ring(key_file, environ=NO_ENV)
    update_secret_file(path, ring, lambda s: {**s, name: StoredSecret(value, at)})


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    path, key_file = tmp_path / "secrets.enc", tmp_path / "keys" / "secrets.key"
    create_key_file(key_file)
    put(path, key_file, "stripe_key", VALUE)
    return path, key_file


def test_round_trip_and_nothing_readable_on_disk(files: tuple[Path, Path]) -> None:
    path, key_file = files
    data = path.read_bytes()
    assert data.startswith(MAGIC)
    assert VALUE.encode() not in data and b"stripe_key" not in data
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    contents = read_secret_file(path, load_key_ring(key_file, environ=NO_ENV))
    assert contents.secrets == {"stripe_key": StoredSecret(VALUE, 1)}
    assert contents.fingerprint("stripe_key").startswith("fp:")


def test_fingerprints_follow_values_and_reveal_nothing(files: tuple[Path, Path]) -> None:
    path, key_file = files
    ring = load_key_ring(key_file, environ=NO_ENV)
    before = read_secret_file(path, ring).fingerprint("stripe_key")
    assert read_secret_file(path, ring).fingerprint("stripe_key") == before  # stable
    put(path, key_file, "stripe_key", VALUE + "x")
    after = read_secret_file(path, ring).fingerprint("stripe_key")
    assert after != before
    assert VALUE not in after


@pytest.mark.parametrize("where", ["ciphertext", "nonce", "key id", "tag"])
def test_a_tampered_file_fails_closed(files: tuple[Path, Path], where: str) -> None:
    path, key_file = files
    data = bytearray(path.read_bytes())
    index = {"ciphertext": 60, "nonce": 20, "key id": 12, "tag": -1}[where]
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SecretError) as info:
        read_secret_file(path, load_key_ring(key_file, environ=NO_ENV))
    # A flipped key id names another key: "wrong key"; anything else fails authentication.
    expected = "secret.file.wrong_key" if where == "key id" else "secret.file.tampered"
    assert info.value.code == expected
    assert VALUE not in info.value.message


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "secret.file.corrupt"),
        (b"not a secret file at all, just some text" * 3, "secret.file.corrupt"),
        (MAGIC + b"\x09" + b"\0" * 80, "secret.file.version"),
    ],
)
def test_a_file_that_is_not_ours_fails_closed(
    files: tuple[Path, Path], data: bytes, code: str
) -> None:
    path, key_file = files
    path.write_bytes(data)
    with pytest.raises(SecretError) as info:
        read_secret_file(path, load_key_ring(key_file, environ=NO_ENV))
    assert info.value.code == code


def test_a_truncated_file_fails_closed(files: tuple[Path, Path]) -> None:
    path, key_file = files
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(SecretError) as info:
        read_secret_file(path, load_key_ring(key_file, environ=NO_ENV))
    assert info.value.code == "secret.file.tampered"


def test_the_wrong_key_is_named_as_such(files: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = files
    other = create_key_file(tmp_path / "other.key")
    with pytest.raises(SecretError) as info:
        read_secret_file(path, other)
    assert info.value.code == "secret.file.wrong_key"
    assert "wrong key" in info.value.message and key_id(other.primary) in info.value.message


def test_key_file_checks(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    with pytest.raises(SecretError) as info:
        load_key_ring(key_file, environ=NO_ENV)
    assert info.value.code == "secret.file.no_key"
    create_key_file(key_file)
    with pytest.raises(SecretError) as info:
        create_key_file(key_file)
    assert info.value.code == "secret.file.exists"
    key_file.chmod(0o644)
    with pytest.raises(SecretError) as info:
        load_key_ring(key_file, environ=NO_ENV)
    assert info.value.code == "secret.file.key_permissions"
    key_file.chmod(0o600)
    key_file.write_text("# comment\nbm90IGEga2V5\n")
    with pytest.raises(SecretError) as info:
        load_key_ring(key_file, environ=NO_ENV)
    assert info.value.code == "secret.file.bad_key"
    key_file.write_text("# only a comment\n")
    with pytest.raises(SecretError) as info:
        load_key_ring(key_file, environ=NO_ENV)
    assert info.value.code == "secret.file.no_key"


def test_the_environment_key_wins(files: tuple[Path, Path]) -> None:
    _, key_file = files
    ring = load_key_ring(key_file, environ=NO_ENV)
    env = {KEY_ENV: base64.b64encode(ring.primary).decode()}
    assert load_key_ring(None, environ=env).keys == ring.keys
    assert load_key_ring(Path("/nonexistent"), environ=env).origin == KEY_ENV


def test_rotate_key_keeps_values_and_retires_the_old_key(files: tuple[Path, Path]) -> None:
    path, key_file = files
    old = load_key_ring(key_file, environ=NO_ENV)
    kid = rotate_key(path, key_file, environ=NO_ENV)
    new = load_key_ring(key_file, environ=NO_ENV)
    assert list(new.keys) == [kid] and kid not in old.keys
    assert read_secret_file(path, new).secrets["stripe_key"].value == VALUE
    with pytest.raises(SecretError) as info:
        read_secret_file(path, old)
    assert info.value.code == "secret.file.wrong_key"


def test_a_ring_with_old_and_new_keys_opens_files_of_either(files: tuple[Path, Path]) -> None:
    # The state a rotation passes through (and is left in by a crash midway).
    path, key_file = files
    old = load_key_ring(key_file, environ=NO_ENV)
    key_file.write_text(key_file.read_text() + base64.b64encode(b"n" * 32).decode() + "\n")
    both = load_key_ring(key_file, environ=NO_ENV)
    assert read_secret_file(path, both).secrets["stripe_key"].value == VALUE
    assert both.primary == b"n" * 32 and old.primary in both.keys.values()


def test_rotate_key_from_the_environment_needs_a_new_key_file(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    path, key_file = files
    env = {KEY_ENV: base64.b64encode(load_key_ring(key_file, environ=NO_ENV).primary).decode()}
    with pytest.raises(SecretError) as info:
        rotate_key(path, key_file, environ=env)
    assert info.value.code == "secret.file.no_key"
    kid = rotate_key(path, key_file, new_key_file=tmp_path / "new.key", environ=env)
    new = load_key_ring(tmp_path / "new.key", environ=NO_ENV)
    assert list(new.keys) == [kid]
    assert read_secret_file(path, new).secrets["stripe_key"].value == VALUE


def test_the_source_sees_a_rotated_value_without_restart(files: tuple[Path, Path]) -> None:
    path, key_file = files
    source = EncryptedFileSource(path, key_file, environ=NO_ENV)
    assert source.names() == ["stripe_key"] and source.get("stripe_key") == VALUE
    put(path, key_file, "stripe_key", "rotated-value-0001", at=2)
    assert source.get("stripe_key") == "rotated-value-0001"
    put(path, key_file, "other", "another-value-0002")
    assert source.names() == ["other", "stripe_key"]
    assert source.get("missing") is None


def test_the_source_follows_a_key_rotation_without_restart(files: tuple[Path, Path]) -> None:
    path, key_file = files
    source = EncryptedFileSource(path, key_file, environ=NO_ENV)
    assert source.get("stripe_key") == VALUE
    rotate_key(path, key_file, environ=NO_ENV)
    assert source.get("stripe_key") == VALUE


def test_the_source_fails_closed_on_every_call_after_tampering(files: tuple[Path, Path]) -> None:
    path, key_file = files
    source = EncryptedFileSource(path, key_file, environ=NO_ENV)
    assert source.get("stripe_key") == VALUE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    for _ in range(2):  # never served from the copy it had before
        with pytest.raises(SecretError) as info:
            source.get("stripe_key")
        assert info.value.code == "secret.file.tampered"


def test_a_missing_file_is_empty_until_it_appears(tmp_path: Path) -> None:
    path, key_file = tmp_path / "s.enc", tmp_path / "s.key"
    source = EncryptedFileSource(path, key_file, environ=NO_ENV)
    assert source.names() == []  # no key needed for no file
    create_key_file(key_file)
    put(path, key_file, "k", "value-0123456")
    assert source.get("k") == "value-0123456"


def test_open_secret_source_checks_the_file_at_start(files: tuple[Path, Path]) -> None:
    path, key_file = files
    source = open_secret_source(path.parent, file=path, key_file=key_file, env=False)
    assert source.get("stripe_key") == VALUE
    key_file.write_text(base64.b64encode(b"w" * 32).decode() + "\n")
    with pytest.raises(SecretError) as info:
        open_secret_source(path.parent, file=path, key_file=key_file)
    assert info.value.code == "secret.file.wrong_key"

"""Checkpoint key files: created 0600, refused when others can read them, bad files are errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ringfence.core.audit.checkpoint import key_id
from ringfence.errors import ConfigError
from ringfence.stores.keys import KEY_FILE, PUB_FILE, load_or_create_signing_key, load_public_key


def test_created_with_mode_0600_and_a_public_key_beside_it(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask must not widen the key file
    try:
        key = load_or_create_signing_key(tmp_path / "keys")
    finally:
        os.umask(old)
    path = tmp_path / "keys" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == bytes(key).hex() + "\n"
    pub = (tmp_path / "keys" / PUB_FILE).read_text()
    assert pub == bytes(key.verify_key).hex() + "\n"


def test_loaded_again_unchanged(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    again = load_or_create_signing_key(tmp_path)
    assert bytes(again) == bytes(key)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610, 0o601, 0o777])
def test_refused_when_others_have_any_access(tmp_path: Path, mode: int) -> None:
    load_or_create_signing_key(tmp_path)
    (tmp_path / KEY_FILE).chmod(mode)
    with pytest.raises(ConfigError) as info:
        load_or_create_signing_key(tmp_path)
    assert info.value.code == "config.key_permissions"
    assert oct(mode) in info.value.message
    assert "chmod 600" in info.value.message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    key = load_or_create_signing_key(tmp_path)
    (tmp_path / KEY_FILE).chmod(mode)
    assert bytes(load_or_create_signing_key(tmp_path)) == bytes(key)


@pytest.mark.parametrize(
    "content",
    [b"not hex\n", b"abcd\n", b"", b"\xff\xfe binary", b"00" * 33 + b"\n"],
    ids=["not-hex", "too-short", "empty", "binary", "too-long"],
)
def test_a_bad_key_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(ConfigError) as info:
        load_or_create_signing_key(tmp_path)
    assert info.value.code == "config.key"
    assert str(path) in info.value.message


def test_load_public_key(tmp_path: Path) -> None:
    key = load_or_create_signing_key(tmp_path)
    keys = load_public_key(tmp_path / PUB_FILE)
    vk = key.verify_key
    assert keys == {key_id(bytes(vk)): vk}


def test_load_several_public_keys(tmp_path: Path) -> None:
    a, b = SigningKey.generate().verify_key, SigningKey.generate().verify_key
    path = tmp_path / "keys.pub"
    path.write_text(f"{bytes(a).hex()}\n\n{bytes(b).hex()}\n")
    assert load_public_key(path) == {key_id(bytes(a)): a, key_id(bytes(b)): b}


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", b"zz" * 32, b"00" * 31, b"\xff\xfe\xfd"],
    ids=["empty", "blank-lines", "not-hex", "too-short", "binary"],
)
def test_a_bad_public_key_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.pub"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_public_key(path)
    assert info.value.code == "config.key"


def test_a_missing_public_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_public_key(tmp_path / "nope.pub")
    assert info.value.code == "config.key"
    assert "No such file" in info.value.message

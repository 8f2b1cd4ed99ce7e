"""``ringfence secrets``: values from stdin only, listings without values, coded failures."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ringfence.cli.main import cli
from ringfence.runtime.secrets import KEY_ENV
from ringfence.stores.secretfile import load_key_ring, read_secret_file

VALUE = "sk_live_51HqLrT2eZvKYlo2CabcDEF"


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("RINGFENCE_SECRET_STRIPE_KEY", raising=False)


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["secrets", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def stored(data: Path) -> dict[str, str]:
    ring = load_key_ring(data / "keys" / "secrets.key", environ={})
    return {k: v.value for k, v in read_secret_file(data / "secrets.enc", ring).secrets.items()}


def test_set_list_rm(tmp_path: Path) -> None:
    data = tmp_path / "d"
    code, out = run("set", "stripe_key", "--data", str(data), input=VALUE + "\n")
    assert code == 0, out
    assert "created key file" in out and "set stripe_key (fp:" in out
    assert VALUE not in out
    assert stored(data) == {"stripe_key": VALUE}  # one trailing newline is not the value's

    code, out = run("list", "--data", str(data))
    assert code == 0 and "stripe_key" in out and "rf-secret:stripe_key" in out
    assert VALUE not in out
    code, out = run("list", "--data", str(data), "--json")
    (row,) = json.loads(out)
    assert row["name"] == "stripe_key" and row["source"] == "file"
    assert row["fingerprint"].startswith("fp:") and VALUE not in out

    code, out = run("rm", "stripe_key", "--data", str(data))
    assert code == 0 and stored(data) == {}
    code, out = run("rm", "stripe_key", "--data", str(data))
    assert code == 2 and "error[secret.unknown]" in out


def test_list_shows_environment_secrets_by_name_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RINGFENCE_SECRET_STRIPE_KEY", VALUE)
    code, out = run("list", "--data", str(tmp_path), "--json")
    assert code == 0 and json.loads(out) == [
        {"name": "stripe_key", "source": "env", "fingerprint": None, "updated": None}
    ]
    assert VALUE not in out


def test_a_value_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    code, out = run("set", "stripe_key", VALUE, "--data", str(tmp_path))
    assert code == 2 and "unexpected extra argument" in out.lower()
    assert not (tmp_path / "secrets.enc").exists()


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        (["set", "Stripe"], VALUE, "secret.name"),
        (["set", "stripe_key"], "abc\n", "secret.too_short"),
        (["rm", "stripe_key"], None, "secret.unknown"),
        (["rotate-key"], None, "secret.unknown"),
    ],
)
def test_refusals_are_coded(tmp_path: Path, args: list[str], stdin: str | None, code: str) -> None:
    exit_code, out = run(*args, "--data", str(tmp_path), input=stdin)
    assert exit_code == 2 and f"error[{code}]" in out
    assert "Traceback" not in out


def test_rotate_key_keeps_values(tmp_path: Path) -> None:
    run("set", "stripe_key", "--data", str(tmp_path), input=VALUE)
    before = (tmp_path / "keys" / "secrets.key").read_text()
    code, out = run("rotate-key", "--data", str(tmp_path))
    assert code == 0 and "re-encrypted" in out
    assert (tmp_path / "keys" / "secrets.key").read_text() != before
    assert stored(tmp_path) == {"stripe_key": VALUE}


def test_a_tampered_file_or_a_wrong_key_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    run("set", "stripe_key", "--data", str(tmp_path), input=VALUE)
    enc = tmp_path / "secrets.enc"
    data = bytearray(enc.read_bytes())
    data[-2] ^= 1
    enc.write_bytes(bytes(data))
    code, out = run("list", "--data", str(tmp_path))
    assert code == 2 and "error[secret.file.tampered]" in out
    code, out = run("set", "other", "--data", str(tmp_path), input=VALUE)
    assert code == 2 and "error[secret.file.tampered]" in out  # never overwritten silently
    wrong = base64.b64encode(b"w" * 32).decode()
    (tmp_path / "keys" / "secrets.key").write_text(wrong + "\n")
    code, out = run("list", "--data", str(tmp_path))
    assert code == 2 and "error[secret.file.wrong_key]" in out


def test_a_missing_key_for_an_existing_file_is_not_replaced(tmp_path: Path) -> None:
    run("set", "stripe_key", "--data", str(tmp_path), input=VALUE)
    (tmp_path / "keys" / "secrets.key").unlink()
    code, out = run("set", "other", "--data", str(tmp_path), input=VALUE)
    assert code == 2 and "error[secret.file.no_key]" in out
    assert not (tmp_path / "keys" / "secrets.key").exists()


def test_help_lists_the_commands() -> None:
    code, out = run("--help")
    assert code == 0
    for command in ("set", "list", "rm", "rotate-key"):
        assert command in out

"""``ringfence secrets set|list|rm|rotate-key``: the encrypted secret file.

Values are read from standard input (or a hidden prompt on a terminal), never from the
command line: arguments end up in shell history and in every user's ``ps``.  ``list`` shows
names and keyed fingerprints, never values.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ringfence.errors import SecretError

DATA_HELP = "Ringfence data folder (holds secrets.enc and keys/secrets.key)."
FILE_HELP = "Secret file (default: DATA/secrets.enc)."
KEY_HELP = "Key file (default: DATA/keys/secrets.key; RINGFENCE_SECRETS_KEY wins)."


def _paths(data: str, file: str | None, key_file: str | None) -> tuple[Path, Path]:
    from ringfence.stores.secretfile import FILE_NAME, KEY_FILE_NAME

    folder = Path(data)
    return (
        Path(file) if file else folder / FILE_NAME,
        Path(key_file) if key_file else folder / "keys" / KEY_FILE_NAME,
    )


def _options(fn: Any) -> Any:
    fn = click.option("--key-file", help=KEY_HELP, type=click.Path())(fn)
    fn = click.option("--file", "file", help=FILE_HELP, type=click.Path())(fn)
    return click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)(fn)


def _ring(path: Path, key_file: Path, *, create: bool) -> Any:
    """The key ring; with ``create``, a new key file when there is neither a key nor a file."""
    import os

    from ringfence.runtime.secrets import KEY_ENV
    from ringfence.stores.secretfile import create_key_file, load_key_ring

    if create and not os.environ.get(KEY_ENV) and not key_file.exists() and not path.exists():
        ring = create_key_file(key_file)
        click.echo(f"created key file {key_file} (mode 0600); keep a copy apart from {path}")
        return ring
    return load_key_ring(key_file)


def _name(name: str) -> str:
    from ringfence.core.secrets import is_secret_name

    if not is_secret_name(name):
        raise SecretError(
            f"{name!r} is not a valid secret name (1-64 of a-z, 0-9 and _, starting with a letter)",
            code="secret.name",
        )
    return name


def _read_value(name: str) -> str:
    stdin = sys.stdin
    if stdin.isatty():
        value: str = click.prompt(
            f"value of {name}", hide_input=True, confirmation_prompt=True, prompt_suffix=": "
        )
    else:
        value = stdin.read()
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    return value


@click.group()
def secrets() -> None:
    """Secrets agents use by handle (rf-secret:NAME), kept in an encrypted local file."""


@secrets.command("set")
@_options
@click.argument("name")
def set_(data: str, file: str | None, key_file: str | None, name: str) -> None:
    """Set NAME to the value read from standard input (a hidden prompt on a terminal).

    A running gateway uses the new value from its next call.
    """
    from ringfence.core.redact import MIN_ENCODED_LENGTH, MIN_KNOWN_LENGTH
    from ringfence.stores.secretfile import StoredSecret, update_secret_file

    _name(name)
    path, keys = _paths(data, file, key_file)
    value = _read_value(name)
    if len(value) < MIN_KNOWN_LENGTH:
        raise SecretError(
            f"the value is shorter than {MIN_KNOWN_LENGTH} characters: it could not be "
            "redacted from tool results",
            code="secret.too_short",
        )
    ring = _ring(path, keys, create=True)
    now = datetime.now(UTC)
    stamp = int(now.timestamp() * 1e9)
    contents = update_secret_file(
        path, ring, lambda s: {**s, name: StoredSecret(value=value, updated_ns=stamp)}
    )
    click.echo(f"set {name} ({contents.fingerprint(name)}) in {path}")
    if len(value) < MIN_ENCODED_LENGTH:
        click.echo(
            f"warning: values under {MIN_ENCODED_LENGTH} characters are redacted only as "
            "written, not in encoded forms",
            err=True,
        )


@secrets.command("list")
@_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(data: str, file: str | None, key_file: str | None, as_json: bool) -> None:
    """Names, fingerprints and update times of the file's secrets (never values), and the
    names of RINGFENCE_SECRET_* environment variables."""
    from ringfence.runtime.secrets import EnvSource
    from ringfence.stores.secretfile import read_secret_file

    path, keys = _paths(data, file, key_file)
    rows: list[dict[str, Any]] = []
    if path.exists():
        contents = read_secret_file(path, _ring(path, keys, create=False))
        for name, stored in sorted(contents.secrets.items()):
            when = datetime.fromtimestamp(stored.updated_ns / 1e9, UTC)
            rows.append(
                {
                    "name": name,
                    "source": "file",
                    "fingerprint": contents.fingerprint(name),
                    "updated": when.isoformat(timespec="seconds"),
                }
            )
    for name in EnvSource().names():
        rows.append({"name": name, "source": "env", "fingerprint": None, "updated": None})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no secrets (file {path}, environment RINGFENCE_SECRET_*)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"secrets ({path})")
    for col in ("name", "handle", "source", "fingerprint", "updated"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            f"rf-secret:{r['name']}",
            r["source"],
            r["fingerprint"] or "-",
            r["updated"] or "-",
        )
    Console(file=sys.stdout, width=200).print(table)


@secrets.command("rm")
@_options
@click.argument("name")
def rm(data: str, file: str | None, key_file: str | None, name: str) -> None:
    """Remove NAME from the file; a running gateway refuses its handle from the next call."""
    from ringfence.stores.secretfile import StoredSecret, update_secret_file

    path, keys = _paths(data, file, key_file)
    if not path.exists():
        raise SecretError(f"no secret file {path}", code="secret.unknown")

    def drop(current: dict[str, StoredSecret]) -> dict[str, StoredSecret]:
        if name not in current:
            raise SecretError(f"no secret {name!r} in {path}", code="secret.unknown")
        return {k: v for k, v in current.items() if k != name}

    update_secret_file(path, _ring(path, keys, create=False), drop)
    click.echo(f"removed {name} from {path}")


@secrets.command("rotate-key")
@_options
@click.option(
    "--new-key-file",
    type=click.Path(),
    help="Write the new key here (needed when the key comes from RINGFENCE_SECRETS_KEY).",
)
def rotate_key_cmd(
    data: str, file: str | None, key_file: str | None, new_key_file: str | None
) -> None:
    """Re-encrypt the secret file with a new random key (values unchanged)."""
    from ringfence.stores.secretfile import rotate_key

    path, keys = _paths(data, file, key_file)
    if not path.exists():
        raise SecretError(f"no secret file {path}", code="secret.unknown")
    kid = rotate_key(path, keys, new_key_file=new_key_file)
    where = new_key_file or keys
    click.echo(f"re-encrypted {path} with key {kid} (in {where})")
    if new_key_file:
        click.echo(
            f"set RINGFENCE_SECRETS_KEY from {new_key_file} for every process that reads "
            f"{path}; the old key no longer opens it",
            err=True,
        )

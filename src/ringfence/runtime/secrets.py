"""Where secret values come from: the :class:`SecretSource` port and its plain implementations.

A source answers two questions — which secrets it has (:meth:`SecretSource.names`) and the
current value of one (:meth:`SecretSource.get`) — and is asked again every time a value is
needed, so a rotated value takes effect on the next call without a restart.  Sources here:

- :class:`EnvSource`: ``RINGFENCE_SECRET_<NAME>`` environment variables (``stripe_key`` is
  ``RINGFENCE_SECRET_STRIPE_KEY``);
- :class:`MemorySource`: a dict, for tests and for embedding programs that fetch secrets
  themselves;
- :class:`ChainSource`: several sources, the first that has a secret wins.

The encrypted local file is :class:`ringfence.stores.secretfile.EncryptedFileSource`; a vault
would be one more implementation of the same two methods.  A source that cannot answer raises
:class:`~ringfence.errors.SecretError`; callers fail closed on it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, MutableMapping
from typing import Protocol, runtime_checkable

from ringfence.core.secrets import is_secret_name

__all__ = [
    "ENV_PREFIX",
    "KEY_ENV",
    "ChainSource",
    "EnvSource",
    "MemorySource",
    "SecretSource",
    "is_secret_env",
]

ENV_PREFIX = "RINGFENCE_SECRET_"
KEY_ENV = "RINGFENCE_SECRETS_KEY"  # the encrypted file's key(s), base64, when not in a file


@runtime_checkable
class SecretSource(Protocol):
    """Secret values by name.  ``get`` returns None for a secret the source does not have."""

    def get(self, name: str) -> str | None: ...

    def names(self) -> list[str]:
        """The names of the secrets this source has, sorted."""
        ...


def is_secret_env(variable: str, prefix: str = ENV_PREFIX) -> bool:
    """True for environment variables that hold secrets or the secret file's key.

    Child processes (an MCP server started with ``inherit_env``) must not inherit these.
    """
    return variable.startswith(prefix) or variable == KEY_ENV


class MemorySource:
    """Secrets held in a dict; :meth:`set` and :meth:`remove` change them (rotation in tests)."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        """The value of ``name``, or None."""
        with self._lock:
            return self._values.get(name)

    def names(self) -> list[str]:
        """Every name held, sorted."""
        with self._lock:
            return sorted(self._values)

    def set(self, name: str, value: str) -> None:
        """Add or replace a secret."""
        with self._lock:
            self._values[name] = value

    def remove(self, name: str) -> None:
        """Forget a secret (no error if absent)."""
        with self._lock:
            self._values.pop(name, None)


class EnvSource:
    """Secrets from environment variables ``<prefix><NAME>`` (name upper-cased).

    Read at every call, so a variable changed by the process itself is seen at once; empty
    variables count as absent.  ``environ`` replaces ``os.environ`` (tests).
    """

    def __init__(
        self, prefix: str = ENV_PREFIX, *, environ: MutableMapping[str, str] | None = None
    ) -> None:
        self.prefix = prefix
        self._environ = os.environ if environ is None else environ

    def get(self, name: str) -> str | None:
        """The value of ``name``, or None."""
        if not is_secret_name(name):
            return None
        return self._environ.get(self.prefix + name.upper()) or None

    def names(self) -> list[str]:
        """Names of the non-empty variables with the prefix that spell a valid secret name."""
        n = len(self.prefix)
        return sorted(
            key[n:].lower()
            for key, value in list(self._environ.items())
            if key.startswith(self.prefix)
            and value
            and key[n:] == key[n:].upper()
            and is_secret_name(key[n:].lower())
        )


class ChainSource:
    """Several sources in order: a secret's value comes from the first source that has it."""

    def __init__(self, *sources: SecretSource) -> None:
        self.sources = sources

    def get(self, name: str) -> str | None:
        """The value from the first source that has ``name``."""
        for source in self.sources:
            value = source.get(name)
            if value is not None:
                return value
        return None

    def names(self) -> list[str]:
        """Every name any source has, sorted."""
        return sorted({n for source in self.sources for n in source.names()})

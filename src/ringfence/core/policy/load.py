"""Load policies: parse YAML, build the spec, validate against tool declarations, compile.

Reading files is the one bit of I/O here; :func:`policy_from_text` is the pure entry point.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ringfence.core.action import DEFAULT_LIMITS, Limits
from ringfence.core.policy.engine import Policy
from ringfence.core.policy.parse import build_spec
from ringfence.core.policy.validate import validate_spec
from ringfence.core.policy.yamlsrc import Located, parse
from ringfence.errors import PolicyError

__all__ = ["load_policy", "policy_from_text"]


class PolicyErrors(PolicyError):
    """Several problems; ``errors`` holds all of them, the message names the first."""

    def __init__(self, errors: list[PolicyError]) -> None:
        first = errors[0]
        super().__init__(
            first.reason + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            code=first.code,
            source=first.source,
            line=first.line,
            field=first.field,
        )
        self.errors = errors

    def diagnostics(self) -> str:
        return "\n".join(f"error[{e.code}]: {e.message}" for e in self.errors)


def _compile(documents: list[Located], limits: Limits) -> Policy:
    spec = build_spec(documents)
    problems = validate_spec(spec)
    if problems:
        raise PolicyErrors(problems)
    return Policy(spec, limits=limits)


def policy_from_text(
    text: str | bytes, source: str = "<policy>", *, limits: Limits = DEFAULT_LIMITS
) -> Policy:
    """Compile a policy from YAML text."""
    return _compile([parse(text, source)], limits)


def load_policy(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Policy:
    """Compile a policy from one file, several files, or every ``*.yaml``/``*.yml`` in a folder."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        else:
            files.append(p)
    if not files:
        raise PolicyError("no policy files given", code="policy.empty")
    documents = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as exc:
            raise PolicyError(
                f"cannot read: {exc.strerror}", code="policy.io", source=str(f)
            ) from None
        documents.append(parse(data, str(f)))
    return _compile(documents, limits)

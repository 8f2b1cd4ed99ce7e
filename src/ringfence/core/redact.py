"""Find and redact secrets in text and JSON: known values (and their encodings), common formats.

A :class:`Redactor` is built once from the secret values currently known (``{name: values}``)
and then applied to any number of strings or JSON documents:

- **known values**: every exact occurrence of a value, and of the encodings an exfiltration
  would use — JSON escaping, URL encoding (``quote``, ``quote_plus``, every byte as ``%XX``),
  hex, base64 (standard and URL-safe) and the value reversed.  Base64 is matched through its
  three *cores* (the characters that depend only on the value at each of the three byte
  alignments), so the value is found inside the base64 of a longer text too, e.g. in
  ``Basic base64(user:password)``; a hit widens to the whole base64 or hex run around it.
- **formats** (:data:`FORMATS`): AWS access key ids and secret keys, GitHub, GitLab and Slack
  tokens, Stripe, OpenAI and Anthropic keys, Google API keys, JWTs, PEM private keys,
  passwords in URLs and connection strings, ``Authorization`` headers and bearer tokens, and
  ``password=`` / ``api_key:`` style assignments.  In JSON, a string under a key that names a
  credential (``password``, ``client_secret``, ``api_key``, …) is redacted whole.

A hit is replaced by ``[REDACTED:<kind>]`` (``[REDACTED:secret:<name>]`` for a known value)
and reported as a :class:`Finding` (kind, JSON pointer, the secret's name and encoding) so a
caller can label what it returns.  Secret handles (``rf-secret:<name>``, see
:mod:`ringfence.core.secrets`) and earlier markers are never redacted: redacting twice changes
nothing.  All matching is RE2 (linear time: tool output is attacker-controlled).  Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2

from ringfence.core.textscan import json_pointer

__all__ = [
    "FORMATS",
    "MIN_ENCODED_LENGTH",
    "MIN_KNOWN_LENGTH",
    "Finding",
    "Format",
    "Redaction",
    "Redactor",
    "marker",
    "sensitive_key",
    "variants",
]

MIN_KNOWN_LENGTH = 4  # shorter values would redact ordinary text ("1", "yes")
MIN_ENCODED_LENGTH = 8  # encodings of shorter values are too short to tell from other text
MAX_DEPTH = 256  # deeper JSON is replaced whole: it cannot be inspected cheaply
_HANDLE_PREFIX = "rf-secret:"  # kept in sync with ringfence.core.secrets (no import cycle)
_MARKER_PREFIX = "[REDACTED:"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = 256 << 20  # one alternation holds every encoding of every known value


def _re(pattern: str) -> Any:
    return re2.compile(pattern, options=_OPTIONS)


def marker(kind: str) -> str:
    """What a redacted span is replaced with."""
    return f"{_MARKER_PREFIX}{kind}]"


@dataclass(frozen=True)
class Finding:
    """One redacted span: its kind, where it was (RFC 6901 pointer), which secret, how encoded.

    ``secret`` names the known secret whose value was found (None for a format hit);
    ``encoding`` says how it was written (``raw``, ``base64``, ``hex``, ``url``, …).
    ``in_key`` is True when the hit was in an object key rather than a value.
    """

    kind: str
    pointer: str
    secret: str | None = None
    encoding: str = ""
    in_key: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for result metadata and reports); never holds the value."""
        out: dict[str, Any] = {"kind": self.kind, "pointer": self.pointer}
        if self.secret is not None:
            out["secret"] = self.secret
            out["encoding"] = self.encoding
        if self.in_key:
            out["in_key"] = True
        return out


@dataclass(frozen=True)
class Redaction:
    """A redacted copy of a value and what was found in it (nothing found: the value itself)."""

    value: Any
    findings: tuple[Finding, ...]

    def __bool__(self) -> bool:
        return bool(self.findings)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Names of the known secrets found, sorted and unique."""
        return tuple(sorted({f.secret for f in self.findings if f.secret is not None}))


@dataclass(frozen=True)
class Format:
    """A common secret format: ``group`` is the part redacted (0: the whole match)."""

    kind: str
    pattern: str
    group: int = 0


# Credential words shared by the assignment pattern and the JSON key test.  A bare "token" is
# left out on purpose: page tokens, CSRF form fields and token counts are everywhere.
_CRED_WORDS = (
    r"password|passwd|passphrase|pwd|secret|client[_-]?secret|api[_-]?key|apikey|"
    r"access[_-]?key|secret[_-]?key|private[_-]?key|signing[_-]?key|access[_-]?token|"
    r"auth[_-]?token|refresh[_-]?token|session[_-]?token|id[_-]?token|bearer[_-]?token|"
    r"credentials?|secret[_-]?access[_-]?key"
)
_VALUE = r"""([^\s"'`,;&<>(){}\[\]]{4,})"""

FORMATS: tuple[Format, ...] = (
    Format(
        "private-key",
        r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
        r"(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\z)",
    ),
    Format(
        "aws-access-key-id",
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|AKPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}\b",
    ),
    Format(
        "aws-secret-access-key",
        r"(?i)(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key[\"']?\s*(?::=|=>|[:=])\s*[\"']?"
        r"([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|\z)",
        1,
    ),
    Format("github-token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
    Format(
        "gitlab-token",
        r"\bgl(?:pat|dt|rt|ptt|soat|ft|imt|oas|cbt|agent)-[A-Za-z0-9_-]{20,}",
    ),
    Format("slack-token", r"\bxox[abeoprs]-[A-Za-z0-9-]{10,}"),
    Format(
        "slack-webhook",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9+/_-]{20,})",
        1,
    ),
    Format("stripe-key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|\bwhsec_[A-Za-z0-9+/=]{20,}"),
    Format("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    Format("openai-key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    Format("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}"),
    Format("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    # scheme://user:password@host — also postgres://, redis://:pw@, amqp://, mongodb+srv://
    Format(
        "url-password",
        r"\b[A-Za-z][A-Za-z0-9+.-]{1,31}://[^\s:/?#@\"'<>]*:([^\s/?#\"'<>]+)@",
        1,
    ),
    Format(
        "authorization",
        r"(?i)\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
        r"(?:(?:bearer|basic|token|digest|bot|apikey)\s+)?([^\s\"',;]{6,})",
        1,
    ),
    Format("bearer-token", r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{12,}=*)", 1),
    Format(
        "assignment",
        r"(?i)\b(?:[a-z0-9]+[_.-])*(?:" + _CRED_WORDS + r")[\"']?\s*(?::=|=>|[:=])\s*[\"']?"
        r"(?:(?:bearer|basic)\s+)?" + _VALUE,
        1,
    ),
)
_COMPILED = tuple((f.kind, _re(f.pattern), f.group) for f in FORMATS)
_PROTECTED = _re(r"rf-secret:[a-z][a-z0-9_]{0,63}|\[REDACTED:[A-Za-z0-9_:.-]{1,120}\]")
_SENSITIVE_KEY = _re(r"(?i)^(?:[a-z0-9]+[_.-])*(?:" + _CRED_WORDS + r"|authorization)$")
# Values a credential key or assignment commonly holds that are not secrets.
_BORING = frozenset(
    {"true", "false", "null", "none", "nil", "undefined", "required", "optional", "string"}
)
_MASK = frozenset("*xX•.")  # a value made only of these is already masked
_B64_RUN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
_HEX_RUN = frozenset("0123456789abcdefABCDEF")


def sensitive_key(key: str) -> bool:
    """True if an object key names a credential (``password``, ``db_password``, ``apiKey``…)."""
    return len(key) <= 128 and _SENSITIVE_KEY.search(key) is not None


def _protected(text: str) -> list[tuple[int, int]]:
    """Spans of handles and markers: format patterns must not redact them ("secret:x")."""
    if _HANDLE_PREFIX not in text and _MARKER_PREFIX not in text:
        return []
    spans = []
    for m in _PROTECTED.finditer(text):
        end = m.end()
        # Only a whole handle counts: "rf-secret:ghp_16C7e…" is a token with a prefix.
        if end < len(text) and (text[end].isalnum() or text[end] in "_-"):
            continue
        spans.append((m.start(), end))
    return spans


def _only_handles(value: str) -> bool:
    """True if a credential field holds no secret: only handles or markers (after an auth
    scheme word), a placeholder (``true``, ``null``) or a mask (``****``)."""
    if value.lower() in _BORING or set(value) <= _MASK:
        return True
    if _HANDLE_PREFIX not in value and _MARKER_PREFIX not in value:
        return False
    rest = _PROTECTED.sub("", value)
    return rest.strip().lower() in ("", "bearer", "basic", "token")


def _boring(value: str) -> bool:
    return (
        value.lower() in _BORING
        or value.startswith((_HANDLE_PREFIX, _MARKER_PREFIX))
        or set(value) <= _MASK
    )


def _base64_cores(raw: bytes) -> Iterator[str]:
    """The parts of base64(prefix + raw + suffix) that depend only on ``raw``, per alignment."""
    n = len(raw)
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw + b"\0\0").decode("ascii")
        core = enc[math.ceil(8 * k / 6) : (8 * (k + n)) // 6]
        if len(core) >= MIN_ENCODED_LENGTH:
            yield core


def variants(value: str) -> list[tuple[str, str, bool]]:
    """``(text, encoding, case_insensitive)`` for every form of ``value`` the redactor finds."""
    out: list[tuple[str, str, bool]] = []
    if len(value) < MIN_KNOWN_LENGTH:
        return out
    out.append((value, "raw", False))
    stripped = value.strip()
    if stripped != value and len(stripped) >= MIN_KNOWN_LENGTH:
        out.append((stripped, "raw", False))
    if len(value) < MIN_ENCODED_LENGTH:
        return out
    raw = value.encode("utf-8", "surrogatepass")
    for escaped in (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]):
        out.append((escaped, "json", False))
    out.append((urllib.parse.quote(value, safe=""), "url", True))
    out.append((urllib.parse.quote(value, safe="/"), "url", True))
    out.append((urllib.parse.quote_plus(value), "url", True))
    out.append(("".join(f"%{b:02x}" for b in raw), "url", True))
    out.append((raw.hex(), "hex", True))
    for core in _base64_cores(raw):
        out.append((core, "base64", False))
        out.append((core.replace("+", "-").replace("/", "_"), "base64", False))
    out.append((value[::-1], "reversed", False))
    seen: set[tuple[str, bool]] = set()
    unique = []
    for text, encoding, ci in out:
        key = (text.lower() if ci else text, ci)
        if key not in seen:
            seen.add(key)
            unique.append((text, encoding, ci))
    return unique


def _literal(text: str) -> str:
    """``text`` as an RE2 literal (every non-alphanumeric character written as ``\\x{..}``)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


class Redactor:
    """Redacts known secret values (with their encodings) and common secret formats.

    ``known`` maps a secret's name to its value or values (old values after a rotation
    still count).  Build a new Redactor when the values change; one is cheap to apply.
    """

    def __init__(self, known: Mapping[str, str | Iterable[str]] = {}, *, formats: bool = True):
        self._formats = _COMPILED if formats else ()
        exact: dict[str, tuple[str, str]] = {}
        folded: dict[str, tuple[str, str]] = {}
        pieces: list[str] = []
        for name in sorted(known):
            values = known[name]
            for value in [values] if isinstance(values, str) else sorted(values):
                for text, encoding, ci in variants(value):
                    table = folded if ci else exact
                    key = text.lower() if ci else text
                    if key in table:
                        continue
                    table[key] = (name, encoding)
                    pieces.append(("(?i:" + _literal(text) + ")") if ci else _literal(text))
        self._exact = exact
        self._folded = folded
        # Longest first: leftmost-first alternation then prefers the longer of two variants
        # that start at the same place (the base64 of a value over one of its cores).
        pieces.sort(key=len, reverse=True)
        self._known = _re("|".join(pieces)) if pieces else None
        self.names = tuple(sorted(known))

    @property
    def empty(self) -> bool:
        """True when there is nothing to look for."""
        return self._known is None and not self._formats

    # -- text --------------------------------------------------------------------------------

    def spans(self, text: str) -> list[tuple[int, int, str, str | None, str]]:
        """Non-overlapping ``(start, end, kind, secret, encoding)`` hits in ``text``, in order."""
        hits: list[tuple[int, int, str, str | None, str]] = []
        if len(text) < MIN_KNOWN_LENGTH:
            return hits
        if self._known is not None:
            for m in self._known.finditer(text):
                found = m.group(0)
                name, encoding = self._exact.get(found) or self._folded[found.lower()]
                start, end = m.start(), m.end()
                if encoding in ("base64", "hex"):
                    start, end = _widen(
                        text, start, end, _B64_RUN if encoding == "base64" else _HEX_RUN
                    )
                hits.append((start, end, f"secret:{name}", name, encoding))
        kept = _protected(text) if self._formats else []
        for kind, regex, group in self._formats:
            for m in regex.finditer(text):
                start, end = m.span(group)
                if start < 0 or _boring(text[start:end]):
                    continue
                if any(s < end and start < e for s, e in kept):
                    continue  # inside a handle or an earlier marker
                if kind == "assignment" and m.group(0)[:10].lower() == _HANDLE_PREFIX:
                    continue  # "rf-secret:<name>" is a handle (maybe malformed), not "secret: x"
                hits.append((start, end, kind, None, ""))
        return _merge(hits)

    def text(self, text: str) -> tuple[str, list[tuple[str, str | None, str]]]:
        """``text`` with every hit replaced by its marker; and ``(kind, secret, encoding)`` each."""
        hits = self.spans(text)
        if not hits:
            return text, []
        out, last = [], 0
        for start, end, kind, _, _ in hits:
            out.append(text[last:start])
            out.append(marker(kind))
            last = end
        out.append(text[last:])
        return "".join(out), [(kind, secret, enc) for _, _, kind, secret, enc in hits]

    def redact_text(self, text: str) -> str:
        """``text`` with every hit replaced by its marker."""
        return self.text(text)[0]

    # -- JSON --------------------------------------------------------------------------------

    def json(self, value: Any) -> Redaction:
        """A redacted copy of a JSON-like value (dict, list, tuple, str, scalars) and findings.

        Containers are copied only where something was redacted; anything that is not a
        string or container is returned as it is.  Keys are redacted too (a collision after
        redaction gets a ``#2`` suffix).  Under a credential key a whole string is redacted.
        """
        findings: list[Finding] = []
        out = self._walk(value, [], findings, 0)
        return Redaction(out, tuple(findings)) if findings else Redaction(value, ())

    def _string(self, s: str, path: list[str | int], findings: list[Finding]) -> str:
        red, hits = self.text(s)
        if hits:
            pointer = json_pointer(path)
            for kind, secret, encoding in hits:
                findings.append(Finding(kind, pointer, secret, encoding))
        return red

    def _walk(self, node: Any, path: list[str | int], findings: list[Finding], depth: int) -> Any:
        t = type(node)
        if t is str:
            return self._string(node, path, findings)
        if t is not dict and t is not list and t is not tuple:
            return node
        if depth >= MAX_DEPTH:
            findings.append(Finding("too-deep", json_pointer(path)))
            return marker("too-deep")
        if t is dict:
            return self._object(node, path, findings, depth)
        items = [self._walk(v, [*path, i], findings, depth + 1) for i, v in enumerate(node)]
        if all(a is b for a, b in zip(items, node, strict=True)):
            return node
        return tuple(items) if t is tuple else items

    def _object(
        self, node: dict[Any, Any], path: list[str | int], findings: list[Finding], depth: int
    ) -> dict[Any, Any]:
        changed = False
        out: dict[Any, Any] = {}
        for k, v in node.items():
            key = k
            if type(k) is str:
                key, hits = self.text(k)
                if hits:
                    base, n = key, 2
                    while key in out or key in node:  # two keys redacted alike stay apart
                        key, n = f"{base}#{n}", n + 1
                    # The pointer names the key as redacted: the original holds the secret.
                    pointer = json_pointer([*path, key])
                    findings.extend(Finding(kd, pointer, sc, enc, True) for kd, sc, enc in hits)
            where = [*path, key]
            if type(v) is str and type(k) is str and sensitive_key(k) and not _only_handles(v):
                new_value: Any = self._string(v, where, findings)
                if new_value == v:  # nothing more specific matched: the value goes whole
                    findings.append(Finding("credential-field", json_pointer(where)))
                    new_value = marker("credential-field")
            else:
                new_value = self._walk(v, where, findings, depth + 1)
            changed = changed or key is not k or new_value is not v
            out[key] = new_value
        return out if changed else node

    def find(self, value: Any) -> tuple[Finding, ...]:
        """What :meth:`json` would redact in ``value``."""
        return self.json(value).findings


def _widen(text: str, start: int, end: int, alphabet: frozenset[str]) -> tuple[int, int]:
    """Grow ``[start, end)`` to the whole run of ``alphabet`` characters around it.

    Padding (``=``) only ends a base64 run, so the run does not grow left across one.
    """
    while start > 0 and text[start - 1] in alphabet and text[start - 1] != "=":
        start -= 1
    n = len(text)
    while end < n and text[end] in alphabet:
        end += 1
    return start, end


def _merge(
    hits: list[tuple[int, int, str, str | None, str]],
) -> list[tuple[int, int, str, str | None, str]]:
    """Overlapping hits become one span, named after a known secret in it if there is one."""
    if len(hits) <= 1:
        return hits
    hits = sorted(hits, key=lambda h: (h[0], h[3] is None))
    merged: list[tuple[int, int, str, str | None, str]] = []
    for hit in hits:
        start, end, kind, secret, encoding = hit
        if merged and start < merged[-1][1]:
            p_start, p_end, p_kind, p_secret, p_encoding = merged[-1]
            if p_secret is None and secret is not None:
                p_kind, p_secret, p_encoding = kind, secret, encoding
            merged[-1] = (p_start, max(end, p_end), p_kind, p_secret, p_encoding)
            continue
        merged.append(hit)
    return merged

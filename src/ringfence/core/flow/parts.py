"""Significant parts of a string: the addresses, links, accounts, paths and ids it names.

:func:`string_parts` finds them anywhere in a string with one RE2 pass (time linear in
the input whatever it contains) and normalises each; :mod:`.values` walks whole values.

Kinds and their normal forms (see :class:`PartKind`):

* ``email`` — lower-cased; also yields the ``domain`` after the ``@``.
* ``url`` — any ``scheme://…``; scheme and host lower-cased, user info and default port
  dropped, empty path made ``/``, path and query kept as written, fragment dropped; also
  yields the host as a ``domain``.  An unparseable URL (bad port) is kept as written.
* ``domain`` — the host of every URL and the domain of every e-mail, plus bare
  ``name.tld`` mentions in text and dotted IPv4 addresses; lower-cased, trailing dot and
  one leading ``www.`` removed.  A bare mention whose last label is a common file
  extension (``notes.txt``, ``setup.py``) is a file name, not a domain.
* ``iban`` — spaces removed, upper-cased, mod-97 checksum valid.  An IBAN-shaped run
  that fails the checksum is kept as an ``id`` (or its digits as an ``account``) rather
  than dropped, so a mistyped or forged payee still has a part to trace.
* ``account`` — 8 to 34 digits, contiguous or in groups of 3 to 6 separated by single
  spaces or dashes (card and account numbers, phone numbers without ``+``); dates such
  as ``2024-01-15`` and decimals such as ``12345678.90`` are not accounts.
* ``phone`` — ``+`` and 8 to 15 digits after removing spaces, dashes, dots and brackets.
* ``path`` — absolute POSIX and ``~/`` paths after a space, quote, bracket, ``=``, ``:``
  or the start, ``posixpath.normpath``-ed (``and/or`` and ``01/15/2024`` are not paths).
* ``id`` — UUIDs (lower-cased) and tokens of 16 or more ``[A-Za-z0-9_-]`` characters that
  mix letters and digits (case kept: ids are case-sensitive).
* ``text`` — made by :mod:`.values` from a whole short string, never found here.

Part values longer than 256 characters are replaced by a digest (a URL keeps its scheme
and host in front, so domain matching still works).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterator
from enum import StrEnum
from urllib.parse import urlsplit

import msgspec

from ringfence.core.policy.regex import compile_regex

__all__ = ["MAX_VALUE", "TRUNCATED", "Part", "PartKind", "path_part", "string_parts", "url_domain"]


class PartKind(StrEnum):
    """What a :class:`Part` is; ``truncated`` only ever appears in :data:`TRUNCATED`."""

    EMAIL = "email"
    URL = "url"
    DOMAIN = "domain"
    IBAN = "iban"
    ACCOUNT = "account"
    PHONE = "phone"
    PATH = "path"
    ID = "id"
    TEXT = "text"
    TRUNCATED = "truncated"


class Part(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One significant part of a value: its kind and normalised value (encoded as a pair)."""

    kind: PartKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.value}"


TRUNCATED = Part(PartKind.TRUNCATED, "")
"""In a :func:`parts_of` result: the scan stopped at a bound, so the value may hold parts
that are not listed.  It is never recorded as seen, so it is always ``unknown``."""


# File extensions that are not plausible in a bare ``name.ext`` domain mention.  Real TLDs
# used for phishing (``.zip``, ``.mov``) are deliberately not listed.
_FILE_EXTENSIONS = frozenset(
    # A word list reads better here than 110 quoted strings.
    """
    txt pdf doc docx xls xlsx ppt pptx odt ods csv tsv json jsonl yaml yml toml xml html htm
    md rst tex py pyc pyi js mjs ts tsx jsx java kt go rs rb php pl c h cc cpp hpp cs swift
    sh bash zsh ps1 bat sql db sqlite log png jpg jpeg gif svg webp bmp ico tif tiff heic
    mp3 mp4 wav ogg flac avi mkv webm tar gz tgz bz2 xz rar exe dll so dylib bin iso dmg
    pkg deb rpm jar war whl egg lock cfg conf ini env bak tmp swp ipynb eml msg ics vcf
    """.split()  # noqa: SIM905
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
MAX_VALUE = 256
"""Longest part value kept as written; longer ones become a digest."""

# One RE2 pass finds every candidate; alternatives are ordered so that, at the same start,
# the more specific kind wins (an e-mail before the domain inside it, a domain before a
# token, a token before an IBAN so that compact IBANs are checked as tokens first).
# Any non-ASCII character counts as a letter here: RE2's Unicode classes make every match
# ten times slower, so the candidates are trimmed with Python's Unicode-aware str methods.
_U = r"\x{80}-\x{10FFFF}"
_URL_CHARS = r"[^\s<>\"'`{}|\\^\[\]\x00-\x1f\x7f]"
_LABEL = rf"[a-zA-Z0-9{_U}](?:[a-zA-Z0-9{_U}\-]*[a-zA-Z0-9{_U}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*\.(?:xn--[a-z0-9\-]+|[a-zA-Z{_U}]+)"
_PATTERN = "|".join(
    [
        rf"([A-Za-z][A-Za-z0-9+.\-]{{0,15}}://(?:\[[0-9A-Fa-f:.]+\])?{_URL_CHARS}*)",
        rf"([a-zA-Z0-9{_U}._%+\-]+@{_DOMAIN})",
        r"\b([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\b",
        r"(\+[0-9][0-9 \-.()]{5,30}[0-9])",
        r"\b((?:[0-9]{1,3}\.){3}[0-9]{1,3})\b",
        r"\b([0-9]{8,34}|[0-9]{3,6}(?:[ \-][0-9]{3,6})+)\b",
        rf"(?:^|[\s\"'(<\[{{=,;:])(~?/[a-zA-Z0-9{_U}._\-~/+%=#!$&]*)",
        rf"({_DOMAIN})",
        r"\b([A-Za-z0-9_\-]{16,})\b",
        r"\b([A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?)\b",
    ]
)
_SCANNER = compile_regex(_PATTERN)
_URL, _EMAIL, _UUID, _PHONE, _IPV4, _ACCOUNT, _PATH, _BARE, _TOKEN, _IBAN = range(1, 11)
_WORDISH = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_DIGITS = frozenset(b"0123456789")


def _capped(value: str) -> str:
    if len(value) <= MAX_VALUE:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def _domain(host: str) -> str:
    host = host.lower().rstrip(".")
    if host.startswith("www.") and "." in host[4:]:
        host = host[4:]
    return host


def _valid_domain(name: str) -> bool:
    labels = name.split(".")
    tld = labels[-1]
    return (
        len(name) <= 253
        and len(labels) >= 2
        and all(0 < len(label) <= 63 for label in labels)
        and ((len(tld) >= 2 and tld.isalpha()) or tld.startswith("xn--"))
        and tld not in _FILE_EXTENSIONS
    )


def _printable_prefix(raw: str) -> str:
    """``raw`` up to its first Unicode space or invisible character (the regex let through)."""
    if raw.isascii():
        return raw
    for i, char in enumerate(raw):
        if char.isspace() or not char.isprintable():
            return raw[:i]
    return raw


def _segments(raw: str, extra: str) -> list[str]:
    """``raw`` split at every character that is neither alphanumeric nor in ``extra``: the
    regex treats all non-ASCII as letters, so "site—example.com" arrives as one candidate."""
    if raw.isascii():
        return [raw]
    out, start = [], 0
    for i, char in enumerate(raw):
        if not (char.isalnum() or char in extra):
            out.append(raw[start:i])
            start = i + 1
    out.append(raw[start:])
    return out


def _bare_domain(raw: str) -> list[Part]:
    names = (_domain(segment.strip(".-")) for segment in _segments(raw, ".-"))
    return [Part(PartKind.DOMAIN, name) for name in names if _valid_domain(name)]


def _email(raw: str) -> list[Part]:
    local, _, host = raw.rpartition("@")
    local = _segments(local, "._%+-")[-1].strip(".")
    name = _domain(_segments(host, ".-")[0].rstrip(".-"))
    if not local or not _valid_domain(name):
        return []
    return [Part(PartKind.EMAIL, _capped(f"{local.lower()}@{name}")), Part(PartKind.DOMAIN, name)]


def _url(raw: str) -> list[Part]:
    # Sentence punctuation after a link is not part of it; a ")" is, when it closes a "(".
    raw = _printable_prefix(raw).rstrip(".,;:!?*")
    while raw.endswith(")") and raw.count(")") > raw.count("("):
        raw = raw[:-1].rstrip(".,;:!?*")
    try:
        split = urlsplit(raw)
        host = (split.hostname or "").rstrip(".")
        port = split.port
    except ValueError:
        # Unparseable (bad port, bad IPv6): still a destination, kept exactly as written.
        return [Part(PartKind.URL, _capped(raw))]
    scheme = split.scheme.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    prefix = f"{scheme}://{netloc}"
    rest = (split.path or ("/" if host else "")) + (f"?{split.query}" if split.query else "")
    url = prefix + rest
    if len(url) > MAX_VALUE:
        # Keep the host readable so a long link still matches a domain the user named;
        # "#" cannot otherwise occur, fragments are dropped.
        url = prefix + "#sha256:" + hashlib.sha256(url.encode("utf-8", "replace")).hexdigest()
    parts = [Part(PartKind.URL, url)]
    if host:
        parts.append(Part(PartKind.DOMAIN, _capped(_domain(host))))
    return parts


def url_domain(url: str) -> str | None:
    """The ``domain`` value of a normalised ``url`` part's host, or None if it has none."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return None
    netloc = url[scheme_end + 3 :]
    for stop in "/?#":
        netloc = netloc.split(stop, 1)[0]
    if netloc.startswith("["):
        host = netloc[1 : netloc.find("]")] if "]" in netloc else ""
    else:
        host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
    return _domain(host) if host else None


def _iban(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact.isalnum() or not compact.isascii():
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def _iban_parts(raw: str) -> list[Part]:
    chunks = raw.upper().split()
    # A trailing word can be swallowed as a last group ("… 7034 Date"): try shorter first.
    for n in range(len(chunks), 0, -1):
        compact = "".join(chunks[:n])
        if _iban(compact):
            return [Part(PartKind.IBAN, compact)]
    compact = "".join(chunks)
    if len(compact) >= 16 and _mixed(compact):
        return [Part(PartKind.ID, compact)]
    digits = "".join(c for c in compact[4:] if c.isdigit())
    return [Part(PartKind.ACCOUNT, digits)] if 8 <= len(digits) <= 34 else []


def _mixed(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def path_part(raw: str) -> Part | None:
    """The ``path`` part of ``raw`` (absolute or ``~/``), or None if it is too short."""
    raw = raw.rstrip(".,;:!?")
    tilde = raw.startswith("~")
    norm = posixpath.normpath(raw[1:] if tilde else raw)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if tilde:
        norm = "~" + norm
    if len(norm) < 4 or not any(c.isalnum() for c in norm):
        return None
    return Part(PartKind.PATH, _capped(norm))


def _candidate(group: int, raw: str, data: bytes, start: int, end: int) -> list[Part]:
    after = data[end : end + 2]
    if group == _URL:
        return _url(raw)
    if group in (_EMAIL, _BARE):
        # The regex cannot look ahead; "example.com2" or "a.b.com-x" is not a domain.
        if after[:1] and after[0] in _WORDISH:
            return []
        return _bare_domain(raw) if group == _BARE else _email(raw)
    if group == _UUID:
        return [Part(PartKind.ID, raw.lower())]
    if group == _PHONE:
        digits = "".join(c for c in raw if c.isdigit())
        if after[:1] and after[0] in _DIGITS:
            return []
        if 8 <= len(digits) <= 15:
            return [Part(PartKind.PHONE, "+" + digits)]
        return [Part(PartKind.ACCOUNT, digits)] if 15 < len(digits) <= 34 else []
    if group == _IPV4:
        # "1.2.3.4.5" is a version number, not an address.
        if (after[:1] == b"." and after[1:2].isdigit()) or any(
            int(octet) > 255 for octet in raw.split(".")
        ):
            return []
        return [Part(PartKind.DOMAIN, raw)]
    if group == _ACCOUNT:
        before = data[max(0, start - 2) : start]
        # The integer or fractional digits of a decimal (an amount) are not an account.
        if (after[:1] in (b".", b",") and after[1:2].isdigit()) or (
            before[1:2] in (b".", b",") and before[:1].isdigit()
        ):
            return []
        digits = raw.replace("-", "").replace(" ", "")
        return [Part(PartKind.ACCOUNT, digits)] if 8 <= len(digits) <= 34 else []
    if group == _PATH:
        part = path_part(_printable_prefix(raw))
        return [part] if part else []
    if group == _TOKEN:
        if _iban(raw.upper()):
            return [Part(PartKind.IBAN, raw.upper())]
        return [Part(PartKind.ID, _capped(raw))] if _mixed(raw) else []
    return _iban_parts(raw)


def string_parts(data: bytes) -> Iterator[Part]:
    """The structured parts (every kind but ``text``) in the UTF-8 string ``data``, in order
    of appearance; a candidate that fails its checks (a file name, a date) yields none."""
    for match in _SCANNER.finditer(data):
        group = match.lastindex  # one capture group per alternative; only one takes part
        start, end = match.span(group)
        yield from _candidate(group, data[start:end].decode("utf-8", "replace"), data, start, end)

"""Pure text detectors for attacker-written strings: hidden characters, phrases, encoded blobs.

Two scanners build on this module: the MCP poisoning scanner
(:mod:`ringfence.adapters.mcp.scan`, tool definitions) and the tool-output tripwires
(:mod:`ringfence.core.tripwires`).  Each maps what is found here to its own finding codes and
severities; this module only finds things and says where.

- :func:`hidden_chars` classifies every character a reader cannot see (Unicode tag characters,
  bidirectional controls, variation selectors, control characters, zero-width and other
  invisible characters, private-use and unassigned code points) — see :func:`char_kind`.
- :func:`fold` is what phrase matching should see: tag characters decoded to the ASCII they
  smuggle, other invisible characters dropped, NFKC applied, so "ig\\u200bnore" reads "ignore".
- :func:`find_phrases` runs compiled phrase families (:data:`POISONING_PHRASES` is the family
  set tuned for tool definitions) over folded text.
- :func:`find_blobs` finds base64 and hex runs and decodes the ones that read as text.
- :func:`excerpt` and :func:`reveal` make attacker text safe to print: hidden characters are
  written as ``\\u{XXXX}``.

Everything is pure (no I/O) and matching uses RE2 through
:func:`ringfence.core.policy.regex.compile_regex`, so time is linear in the input; the Python
loops here touch only the characters RE2 has already singled out.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ringfence.core.policy.regex import compile_regex

__all__ = [
    "BLOB",
    "INVISIBLE",
    "POISONING_PHRASES",
    "Blob",
    "Hits",
    "PhraseMatch",
    "Severity",
    "as_text",
    "char_kind",
    "compile_phrases",
    "decode_blob",
    "decode_tags",
    "describe_chars",
    "excerpt",
    "find_blobs",
    "find_phrases",
    "fold",
    "hidden_chars",
    "json_pointer",
    "random_looking",
    "reveal",
]


class Severity(StrEnum):
    """How strongly a finding suggests an attack (shared by every scanner)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def json_pointer(parts: Iterable[str | int]) -> str:
    """RFC 6901 pointer for a path of keys and indices."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# -- hidden characters ----------------------------------------------------------------------

# Invisible code points that Unicode does not put in category Cf.
INVISIBLE = frozenset({0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x180E})
_BIDI = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
# Characters shown as \u{...} by reveal(): invisible, formatting, control and unassigned code
# points, and every space except U+0020 (a reviewer must see exactly what the model reads).
_SHOWN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp", "Zs"})
_SHOWN_LETTERS = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x034F})
# Stretches that begin and end with a character char_kind() may flag (anything but printable
# ASCII and \n \t \r), or that fold() may change (non-ASCII), with gaps of up to 64 other
# characters: Python then visits only these stretches, and dense text costs one match per
# stretch rather than one per character.
_SUSPECT_RUN = compile_regex(r"[^\x20-\x7E\n\t\r](?:[\x20-\x7E\n\t\r]{0,64}[^\x20-\x7E\n\t\r])*")
_NON_ASCII_RUN = compile_regex(r"[^\x00-\x7F](?:[\x00-\x7F]{0,64}[^\x00-\x7F])*")


def _is_variation_selector(cp: int) -> bool:
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF


def char_kind(ch: str, prev: str, nxt: str) -> str | None:
    """The kind of a hidden character given its neighbours, or None if it is ordinary.

    Kinds: ``tag``, ``bidi``, ``variation_selector``, ``control``, ``invisible``,
    ``private_use``.  A variation selector that picks emoji or text style after a symbol and a
    zero-width joiner between two symbols (an emoji sequence) are ordinary.
    """
    cp = ord(ch)
    if cp < 0x80:
        control = (cp < 0x20 and ch not in "\n\t\r") or cp == 0x7F
        return "control" if control else None
    cat = unicodedata.category(ch)
    if 0xE0000 <= cp <= 0xE007F:
        return "tag"
    if cp in _BIDI:
        return "bidi"
    if _is_variation_selector(cp):
        # VS15/VS16 after a symbol pick text or emoji style (the "⚠️" in a description).
        emoji_style = cp in (0xFE0E, 0xFE0F) and unicodedata.category(prev or " ") == "So"
        return None if emoji_style else "variation_selector"
    if cp == 0x200D and {unicodedata.category(c or " ") for c in (prev, nxt)} == {"So"}:
        return None  # a zero-width joiner inside an emoji sequence
    if cat == "Cc":
        return "control"
    if cat == "Cf" or cp in INVISIBLE:
        return "invisible"
    if cat in ("Co", "Cn"):
        return "private_use"
    return None


def hidden_chars(text: str) -> dict[str, list[int]]:
    """Positions of the hidden characters in ``text`` by kind (see :func:`char_kind`)."""
    if text.isascii() and text.isprintable():
        return {}
    seen: dict[str, list[int]] = {}
    last = len(text) - 1
    for run in _SUSPECT_RUN.finditer(text):
        for i in range(run.start(), run.end()):
            if " " <= text[i] <= "~":
                continue
            prev, nxt = text[i - 1] if i else "", text[i + 1] if i < last else ""
            kind = char_kind(text[i], prev, nxt)
            if kind is not None:
                seen.setdefault(kind, []).append(i)
    return seen


def describe_chars(text: str, where: Iterable[int]) -> str:
    """``U+200B x2 U+2060``: the code points at ``where``, counted, in code point order."""
    counts = Counter(f"U+{ord(text[i]):04X}" for i in where)
    return " ".join(f"{cp} x{n}" if n > 1 else cp for cp, n in sorted(counts.items()))


def decode_tags(text: str, where: Iterable[int]) -> str:
    """The ASCII smuggled by the Unicode tag characters at ``where`` (U+E0041 reads "A")."""
    return "".join(chr(ord(text[i]) - 0xE0000) for i in where)


def _fold_run(run: str) -> str:
    out = []
    for ch in run:
        cp = ord(ch)
        if 0xE0020 <= cp <= 0xE007E:
            out.append(chr(cp - 0xE0000))
        elif not (
            unicodedata.category(ch) == "Cf" or _is_variation_selector(cp) or cp in INVISIBLE
        ):
            out.append(ch)
    return "".join(out)


def fold(text: str) -> str:
    """What phrase matching sees: tags decoded to ASCII, other invisible characters dropped."""
    if text.isascii():
        return text
    pieces: list[str] = []
    pos = 0
    for run in _NON_ASCII_RUN.finditer(text):
        pieces += (text[pos : run.start()], _fold_run(run.group(0)))
        pos = run.end()
    pieces.append(text[pos:])
    return unicodedata.normalize("NFKC", "".join(pieces))


def _hidden(cp: int, cat: str) -> bool:
    return cat in _SHOWN_CATEGORIES or _is_variation_selector(cp) or cp in _SHOWN_LETTERS


def reveal(text: str) -> str:
    """``text`` with hidden characters written as ``\\u{XXXX}`` (newline, tab and space kept)."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        cp = ord(ch)
        if ch in "\n\t " or not _hidden(cp, unicodedata.category(ch)):
            out.append(ch)
        else:
            out.append(f"\\u{{{cp:04X}}}")
    return "".join(out)


def excerpt(text: str, start: int, end: int, context: int = 30) -> str:
    """``text[start:end]`` with ``context`` characters around it, revealed, on one line."""
    lo, hi = max(0, start - context), min(len(text), end + context)
    body = " ".join(reveal(text[lo:hi]).split("\n"))
    return ("…" if lo else "") + body[:200] + ("…" if hi < len(text) else "")


# -- phrases --------------------------------------------------------------------------------

_WS = r"[\s\p{P}]*"  # lets "ignore  previous" and "do not -- mention" match too
POISONING_PHRASES: tuple[tuple[str, str], ...] = (
    (
        "instruction.override",
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|your|of)\s+)*"
        r"(?:previous|prior|above|earlier|preceding|other|system|safety|original)\s+"
        r"(?:instructions?|prompts?|rules?|guidelines?|directions?|messages?)"
        r"|\byou\s+are\s+now\b|\bnew\s+instructions?\s*:",
    ),
    (
        "instruction.concealment",
        r"\b(?:do\s+not|don'?t|never|must\s+not|should\s+not)\s+(?:ever\s+)?"
        r"(?:tell|inform|mention|reveal|disclose|notify|alert)\b"
        r"|\bwithout\s+(?:telling|informing|notifying|alerting|asking)\s+(?:the\s+)?user"
        r"|\b(?:hide|conceal|keep)\s+(?:this|it|that)\s+(?:secret\s+|hidden\s+)?from\s+the\s+user"
        r"|\bthe\s+user\s+(?:must|should|will|need)\s+(?:not|never)\s+(?:know|see|notice)",
    ),
    (
        "instruction.precondition",
        r"\b(?:before|prior\s+to)\s+(?:using|calling|invoking|running|executing)\s+"
        r"(?:this|the|any|other|these|all|each)(?:\s+other)?\s+(?:\w+\s+)?(?:tools?|functions?)\b",
    ),
    (
        "instruction.coercion",
        r"\b(?:otherwise|or\s+else)" + _WS + r"(?:the|this)\s+(?:tool|application|system|app)"
        r"\s+(?:will|would)\s+(?:not\s+work|fail|crash|break)"
        r"|\b(?:very\s+){2,}important\b",
    ),
    (
        "instruction.tag",
        r"</?\s*(?:important|system|instructions?|secret|hidden|admin|critical|urgent|"
        r"override|system[_-]?prompt|assistant)\b[^>\n]{0,40}>"
        r"|\[\s*/?(?:important|system|inst|instructions?)\s*[\]:]|<<\s*/?sys\s*>>|<!--",
    ),
    (
        "instruction.role_marker",
        r"<\|\s*(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
        r"end_header_id)\s*\|>|^[ \t]*(?:system|assistant|human)\s*:",
    ),
    (
        "reference.secret_file",
        r"~/\.ssh\b|\.ssh/|\bid_(?:rsa|dsa|ecdsa|ed25519)\b|\bauthorized_keys\b"
        r"|/etc/(?:passwd|shadow|sudoers)\b|\.aws/(?:credentials|config)\b|\.netrc\b"
        r"|\.npmrc\b|\.pypirc\b|\.git-credentials\b|\.docker/config\.json|\.kube/config\b"
        r"|\bmcp\.json\b|claude_desktop_config\.json|~/\.cursor\b|\.cursor/|\.gnupg\b"
        r"|\bwallet\.dat\b|\.(?:bash|zsh)_history\b|(?:^|[\s'\"`(/=:])\.env(?:\.[a-z]+)?\b",
    ),
    (
        "reference.credential",
        r"\b(?:credentials?|api[\s_-]?keys?|secret[\s_-]?keys?|private[\s_-]?keys?"
        r"|access[\s_-]?tokens?|auth[\s_-]?tokens?|passwords?|passphrases?"
        r"|(?:seed|recovery)\s+phrases?|session\s+cookies?)\b",
    ),
    ("text.padding", r"[ \t]{40,}|(?:[ \t]*\n){8,}"),
)
"""Phrase families for tool definitions and server instructions, by finding code.

Tuned for short declarative text written *to* the model.  Tool outputs need tighter families
(an ordinary e-mail says "please ignore my previous message"); see :mod:`.tripwires`.
"""


@dataclass(frozen=True)
class PhraseMatch:
    """One match of a phrase family: its code, span in the folded text, excerpt, match text."""

    code: str
    start: int
    end: int
    excerpt: str
    shown: str


def compile_phrases(families: Iterable[tuple[str, str]]) -> tuple[tuple[str, Any], ...]:
    """(code, RE2 pattern) pairs, case-insensitive and multi-line; RegexError if one is bad."""
    return tuple((code, compile_regex("(?im)" + pattern)) for code, pattern in families)


def find_phrases(
    folded: str, compiled: Iterable[tuple[str, Any]], max_per_family: int | None = None
) -> Iterator[PhraseMatch]:
    """Every match of every family in ``folded`` (see :func:`fold`), family by family.

    A match in which a group named ``veto`` took part is skipped: RE2 has no lookbehind, so a
    family says "not after 'never'" by matching the "never" in an optional ``veto`` group.
    With ``max_per_family``, a family stops after yielding that many matches (it has been
    found; the rest would only cost time).  Vetoed matches do not count, or a page of "never
    share your password" could use up the family before the real request.
    """
    for code, regex in compiled:
        vetoed = "veto" in regex.groupindex
        left = max_per_family
        for match in regex.finditer(folded):
            if vetoed and match.group("veto") is not None:
                continue
            if left is not None:
                if left <= 0:
                    break
                left -= 1
            shown = " ".join(reveal(match.group(0)).split()) or "whitespace"
            where = excerpt(folded, match.start(), match.end())
            yield PhraseMatch(code, match.start(), match.end(), where, repr(shown[:80]))


# -- encoded blobs --------------------------------------------------------------------------

BLOB = compile_regex(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class Blob:
    """A base64- or hex-looking run: ``kind`` is ``encoded_text`` (it decodes to readable
    text, given in ``decoded``), ``base64`` or ``hex`` (long and random-looking), or None
    (too short to matter, or an identifier).
    """

    kind: str | None
    start: int
    end: int
    text: str
    decoded: str | None


def decode_blob(blob: str) -> tuple[bool, bytes]:
    """(is_hex, bytes) for a base64 (standard or URL-safe) or hex run; b"" if it is neither.

    Whitespace inside the run is ignored, so line-wrapped (MIME) base64 decodes too.
    """
    blob = "".join(blob.split())
    is_hex = all(c in _HEX_DIGITS for c in blob)
    try:
        if is_hex:
            return True, bytes.fromhex(blob[: len(blob) // 2 * 2])
        body = blob.rstrip("=").replace("-", "+").replace("_", "/")
        body = body[:-1] if len(body) % 4 == 1 else body  # a lone trailing character
        return False, base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (ValueError, binascii.Error):
        return is_hex, b""


def as_text(raw: bytes) -> str | None:
    """``raw`` as text if it reads like text (what a hidden instruction decodes to)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
    return text if len(text) >= 12 and printable >= 0.95 * len(text) and " " in text else None


def _entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def random_looking(blob: str) -> bool:
    """True if ``blob`` looks like encoded bytes rather than an identifier."""
    # Identifiers are runs of words ("AbstractProxyFactory2"); encoded bytes switch between
    # upper case, lower case and digits about every other character.
    classes = [
        "u" if c.isupper() else "l" if c.islower() else "d" if c.isdigit() else "o" for c in blob
    ]
    switches = sum(a != b for a, b in itertools.pairwise(classes))
    return _entropy(blob) >= 4.0 and switches >= 0.4 * len(blob) and "d" in classes


def find_blobs(text: str, min_blob_chars: int, pattern: Any = BLOB) -> Iterator[Blob]:
    """Every run of ``pattern`` (default :data:`BLOB`) in ``text``, decoded and classified.

    Runs of at least ``min_blob_chars`` that do not decode to text are reported as ``hex`` (with
    both digits and letters) or ``base64`` (random-looking); shorter ones get kind None.
    """
    for match in pattern.finditer(text):
        blob = match.group(0)
        is_hex, raw = decode_blob(blob)
        decoded = as_text(raw)
        kind = None
        if decoded is not None:
            kind = "encoded_text"
        elif len(blob) >= min_blob_chars:
            if is_hex and any(c.isdigit() for c in blob) and any(c.isalpha() for c in blob):
                kind = "hex"
            elif not is_hex and random_looking(blob):
                kind = "base64"
        yield Blob(kind, match.start(), match.end(), blob, decoded)


# -- collecting -----------------------------------------------------------------------------


class Hits:
    """Gathers hits, one per (pointer, code): the first excerpt and the distinct matches.

    Only the first six distinct matches are kept: :meth:`items` shows five and an ellipsis,
    and a cap keeps a string with a hundred thousand matches from costing quadratic time.
    """

    _KEEP = 6

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], tuple[str, list[str]]] = {}

    def add(self, code: str, pointer: str, excerpt: str, match: str) -> None:
        """Record one hit; later excerpts for the same (pointer, code) are dropped."""
        matches = self._found.setdefault((pointer, code), (excerpt, []))[1]
        if len(matches) < self._KEEP and match not in matches:
            matches.append(match)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._found

    def items(self) -> Iterator[tuple[str, str, str, str]]:
        """(pointer, code, excerpt, matches shown as "a, b, …") in the order first seen."""
        for (pointer, code), (first, matches) in self._found.items():
            shown = ", ".join(matches[:5]) + (", …" * (len(matches) > 5))
            yield pointer, code, first, shown

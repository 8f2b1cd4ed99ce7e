"""Per-string detectors of the tool-output tripwires: what :func:`.tripwires.scan_output` runs on
every string it walks.  Findings go into a :class:`.textscan.Hits` by code; the codes, their
severities and labels are listed in :data:`.tripwires.CODES`.

Order of work on one string: hidden characters on the raw text; then, on the folded text
(:func:`.textscan.fold`, curly quotes made straight), the phrase families of
:mod:`.tripwire_rules`, whitespace padding, hidden HTML regions, encoded blobs and ROT13.  Text
that was hidden or encoded (HTML comments and hidden elements, base64/hex blobs, variation
selector payloads) is joined and scanned once more with the same phrase families, so one pass
costs the same however many blobs a string holds.
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Callable, Iterator

from ringfence.core.policy.regex import compile_regex
from ringfence.core.textscan import (
    Hits,
    PhraseMatch,
    as_text,
    compile_phrases,
    decode_blob,
    decode_tags,
    describe_chars,
    excerpt,
    find_phrases,
    fold,
    hidden_chars,
    reveal,
)
from ringfence.core.tripwire_rules import INJECTION, ROLE_MARKERS

__all__ = ["SHORT_TEXT", "finds_nothing", "scan_text"]


class _Families:
    """Compiled phrase families, and all of them as one pattern: most strings match nothing,
    and one pass over them is much cheaper than one pass per family.
    """

    def __init__(self, families: tuple[tuple[str, str], ...]) -> None:
        self.compiled = compile_phrases(families)
        self.pattern = "|".join(f"(?:{p})" for _, p in families)
        self.any = compile_regex("(?im)" + self.pattern)

    def find(self, text: str) -> list[PhraseMatch]:
        if not text or self.any.search(text) is None:
            return []
        return list(find_phrases(text, self.compiled, _MAX_MATCHES))


_PHRASES = _Families(INJECTION + ROLE_MARKERS)
# ROT13 is tried on every string, so only the high-severity families run on it: a chance
# match of "addressing" in rotated prose is more likely than a real rotated attack.
_ROT13_PHRASES = _Families(tuple(f for f in INJECTION if f[0] != "injection.addressing"))
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ROT13 = str.maketrans(_LETTERS, codecs.encode(_LETTERS, "rot13"))
# The same for ASCII text, as bytes: a table lookup per byte in C, not a dict lookup per char.
_ROT13_ASCII = bytes.maketrans(_LETTERS.encode(), codecs.encode(_LETTERS, "rot13").encode())

# Padding only counts when text follows it: trailing blank lines push nothing out of view.
# Wide text tables and PDF page breaks stay below these; a reader's window does not.
_PADDING = compile_regex(r"[ \t]{500,}\S|(?:[ \t]*\r?\n){100,}[ \t]*\S")
_MIN_PADDING_MATCH = 101  # the shortest _PADDING match: 100 line breaks and a character
# Base64 may be wrapped (MIME, PEM); continuation lines are joined before decoding.
_BLOB_PATTERN = r"[A-Za-z0-9+/_-]{16,}={0,2}(?:[ \t]*\r?\n[ \t]*[A-Za-z0-9+/]{4,}={0,2})*"
_BLOB = compile_regex(_BLOB_PATTERN)
# The usual string holds no phrase and no blob, in itself or rotated.  One search over the
# folded text and its ROT13 joined by a line break then stands for three (the phrase families
# on each, the blobs): a match inside either half is a match of the joined text, because no
# pattern anchors at the end of the text (``^``/``$`` are per line, and the break is no word
# character for ``\b``).  A match across the break, or of a family ROT13 does not run, only
# sends the string down the full path.
_QUIET = compile_regex(f"(?im:{_PHRASES.pattern})|(?:{_BLOB_PATTERN})")
_FLAG = compile_regex(r"\x{1F3F4}[\x{E0030}-\x{E0039}\x{E0061}-\x{E007A}]{1,6}\x{E007F}")
_RTL = compile_regex(r"[\p{Hebrew}\p{Arabic}\p{Syriac}\p{Thaana}\p{Nko}]")
_COMMENT = compile_regex(r"(?s)<!--(.*?)(?:-->|\z)")
_HIDDEN_ELEMENT = compile_regex(
    r"(?i)<([a-z][a-z0-9-]*)\b[^<>]*?(?:display\s*:\s*none|visibility\s*:\s*hidden"
    r"|font-size\s*:\s*0(?:\.0+)?(?:px|pt|em|rem|%)?\s*[;\"'!]|opacity\s*:\s*0(?:\.0+)?\s*[;\"'!]"
    r"|[\s;\"']color\s*:\s*(?:white|#fff(?:fff)?|transparent)\b|\shidden\b"
    r"|(?:height|width)\s*:\s*0(?:px)?\s*[;\"']|(?:left|top|text-indent)\s*:\s*-\d{3,})[^<>]*>"
)
_HIDDEN_REGION_CHARS = 2_000  # text after a hidden element's start tag that counts as hidden
# Per string: matches of one family, and hidden HTML regions.  Past these the finding is made;
# more matches would only add time (the phrase families still read every hidden region).
_MAX_MATCHES = 64
_MAX_REGIONS = 1_000

_OVERRIDES = frozenset({0x202D, 0x202E})  # LRO, RLO: reorder what a reader sees
_EMBEDDINGS = frozenset({0x202A, 0x202B, 0x202C, 0x2066, 0x2067, 0x2068, 0x2069})
_MIN_INVISIBLE_RUN = 8  # shorter runs occur in real pages (ZWSP, soft hyphens, BOMs)
_MIN_SELECTOR_RUN = 4  # an ideographic variation sequence has one selector


def _runs(where: list[int]) -> Iterator[list[int]]:
    """Maximal runs of consecutive positions."""
    for _, group in itertools.groupby(enumerate(where), key=lambda p: p[1] - p[0]):
        yield [i for _, i in group]


def _scan_tags(text: str, where: list[int], pointer: str, hits: Hits) -> None:
    # Subdivision flags (England, Scotland, Wales) are emoji spelled with tag characters.
    flags = {i for m in _FLAG.finditer(text) for i in range(m.start() + 1, m.end())}
    where = [i for i in where if i not in flags]
    if where:
        hidden = reveal(decode_tags(text, where))
        hits.add("hidden_text.tag", pointer, hidden[:200], f"hidden text {hidden[:80]!r}")


def _scan_bidi(text: str, where: list[int], pointer: str, hits: Hits) -> None:
    rtl = _RTL.search(text) is not None
    serious: list[int] = []
    marks: list[int] = []
    for i in where:
        cp = ord(text[i])
        # Embeddings and isolates are how right-to-left text is written correctly; without any
        # such text they only serve to reorder what a reader sees.
        (serious if cp in _OVERRIDES or (cp in _EMBEDDINGS and not rtl) else marks).append(i)
    for code, found in (("hidden_text.bidi", serious), ("hidden_text.bidi_mark", marks)):
        if found:
            hits.add(
                code, pointer, excerpt(text, found[0], found[0] + 1), describe_chars(text, found)
            )


def _scan_invisible(text: str, where: list[int], pointer: str, hits: Hits) -> None:
    runs: list[list[int]] = []
    lone: list[int] = []
    for run in _runs(where):
        if len(run) >= _MIN_INVISIBLE_RUN:
            runs.append(run)
        else:
            lone += run
    if runs:
        longest = max(len(run) for run in runs)
        what = describe_chars(text, itertools.chain(*runs)) + f" (up to {longest} in a row)"
        first = excerpt(text, runs[0][0], runs[0][-1] + 1)
        hits.add("hidden_text.invisible_run", pointer, first, what)
    if lone:
        first = excerpt(text, lone[0], lone[0] + 1)
        hits.add("hidden_text.invisible", pointer, first, describe_chars(text, lone))


def _vs_payloads(text: str, where: list[int], pointer: str, hits: Hits) -> tuple[list[int], str]:
    """Findings for runs of variation selectors, which can carry one byte each; returns the
    positions of the lone selectors (ordinary after an ideograph) and the decoded runs.
    """
    lone: list[int] = []
    decoded = []
    for run in _runs(where):
        if len(run) < _MIN_SELECTOR_RUN:
            lone += run
            continue
        cps = [ord(text[i]) for i in run]
        raw = bytes(cp - 0xFE00 if cp <= 0xFE0F else cp - 0xE0100 + 16 for cp in cps)
        readable = as_text(raw)
        what = f"{len(raw)} selectors" + (f" reading {reveal(readable)[:60]!r}" if readable else "")
        first = excerpt(text, run[0], run[-1] + 1, context=10)
        hits.add("hidden_text.variation_selectors", pointer, first, what)
        if readable:
            decoded.append(readable)
    return lone, "\n\n".join(decoded)


def _scan_chars(text: str, pointer: str, hits: Hits) -> str:
    """Hidden-character findings; returns the text decoded from variation selectors."""
    kinds = hidden_chars(text)
    if not kinds:
        return ""
    if "tag" in kinds:
        _scan_tags(text, kinds["tag"], pointer, hits)
    if "bidi" in kinds:
        _scan_bidi(text, kinds["bidi"], pointer, hits)
    lone, decoded = _vs_payloads(text, kinds.get("variation_selector", []), pointer, hits)
    invisible = sorted(kinds.get("invisible", []) + lone)
    if invisible:
        _scan_invisible(text, invisible, pointer, hits)
    for kind in ("control", "private_use"):
        if kind in kinds:
            where = kinds[kind]
            first = excerpt(text, where[0], where[0] + 1)
            hits.add("hidden_text." + kind, pointer, first, describe_chars(text, where))
    return decoded


def _scan_padding(folded: str, pointer: str, hits: Hits) -> None:
    if len(folded) < _MIN_PADDING_MATCH:
        return  # too short to hold padding (most strings)
    for match in itertools.islice(_PADDING.finditer(folded), _MAX_MATCHES):
        gap = match.end() - match.start() - 1
        lines = folded.count("\n", match.start(), match.end())
        what = f"{lines} blank lines" if lines else f"{gap} spaces"
        hits.add(
            "hidden_text.padding", pointer, excerpt(folded, match.end() - 1, match.end()), what
        )


def _hidden_html(folded: str) -> str:
    """The text of HTML comments and hidden elements, joined (tags removed)."""
    regions = [m.group(1) for m in itertools.islice(_COMMENT.finditer(folded), _MAX_REGIONS)]
    cursor = 0
    for match in itertools.islice(_HIDDEN_ELEMENT.finditer(folded), _MAX_REGIONS):
        # Regions never overlap, so nested or adjacent hidden elements cost linear time.
        start = max(match.end(), cursor)
        stop = min(len(folded), start + _HIDDEN_REGION_CHARS)
        close = folded[start:stop].lower().find("</" + match.group(1).lower())
        cursor = start + close if close >= 0 else stop
        regions.append(folded[start:cursor])
    return _strip_tags("\n\n".join(r for r in regions if r.strip()))


def _strip_tags(html: str) -> str:
    """``html`` with every ``<...>`` (no ``<`` inside) replaced by a space.

    Split rather than RE2's ``sub``, which costs a Python call per tag.
    """
    head, *pieces = html.split("<")
    out = [head]
    for piece in pieces:
        _, close, rest = piece.partition(">")
        out.append(" " + rest if close else "<" + piece)
    return "".join(out)


def _blob_payloads(folded: str) -> tuple[str, str, str]:
    """(decoded base64, decoded hex, first readable blob) for blobs that decode to text."""
    b64: list[str] = []
    hexes: list[str] = []
    first = ""
    for match in _BLOB.finditer(folded):
        blob = match.group(0)
        # The run may have taken in a word from the line after the blob: try without it.
        for candidate in dict.fromkeys((blob, blob.rsplit("\n", 1)[0], blob.split("\n", 1)[0])):
            is_hex, raw = decode_blob(candidate)
            readable = as_text(raw)
            if readable is not None:
                break
        if readable is not None:
            (hexes if is_hex else b64).append(readable)
            first = first or readable
    return "\n\n".join(b64), "\n\n".join(hexes), first


def _add_payload(code: str, matches: list[PhraseMatch], pointer: str, hits: Hits) -> bool:
    for match in matches:
        hits.add(code, pointer, match.excerpt, f"{match.code} {match.shown}")
    return bool(matches)


class _Recorder:
    """Stands in for :class:`Hits` to remember what a scan found, for replaying later."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def add(self, code: str, pointer: str, excerpt: str, match: str) -> None:
        self.calls.append((code, excerpt, match))


# Short strings recur in every tool result (keys, "type" values, ids, small answers), and a
# scan is deterministic: what it found is replayed at the new pointer instead of rescanned.
_CACHED_CHARS = SHORT_TEXT = 256
_CACHE_ENTRIES = 4096
_cache: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {}


def _cached(text: str) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    """The folded text and the findings (code, excerpt, match) of a short string's scan."""
    cached = _cache.get(text)
    if cached is None:
        recorder = _Recorder()
        cached = (_scan_text(text, "", recorder), tuple(recorder.calls))  # type: ignore[arg-type]
        if len(_cache) >= _CACHE_ENTRIES:
            _cache.clear()
        _cache[text] = cached
    return cached


def finds_nothing(text: str) -> bool:
    """Whether :func:`scan_text` finds nothing in ``text`` (a string of at most
    :data:`_CACHED_CHARS` characters, as a scan reads it); from the same cache."""
    return not _cached(text)[1]


def scan_text(text: str, pointer: str | Callable[[], str], hits: Hits) -> str:
    """Run every detector on one string at ``pointer``; returns the folded text.

    ``pointer`` may be a function making it: it is then called only if something was found
    (most strings find nothing, and building a JSON pointer costs more than looking up a
    cached scan)."""
    if len(text) > _CACHED_CHARS:
        return _scan_text(text, pointer if isinstance(pointer, str) else pointer(), hits)
    cached = _cache.get(text) or _cached(text)  # looked up inline: this runs per string
    if cached[1]:
        where = pointer if isinstance(pointer, str) else pointer()
        for code, shown, match in cached[1]:
            hits.add(code, where, shown, match)
    return cached[0]


def _scan_text(text: str, pointer: str, hits: Hits) -> str:
    vs_decoded = _scan_chars(text, pointer, hits)
    folded = fold(text)
    ascii_only = folded.isascii()  # then there are no curly quotes to straighten
    if not ascii_only:
        folded = folded.translate(_QUOTES)
    if ascii_only:
        rotated = folded.encode("ascii").translate(_ROT13_ASCII).decode("ascii")
    else:
        rotated = folded.translate(_ROT13)
    if (
        not vs_decoded
        and "<" not in folded
        and (len(folded) < _MIN_PADDING_MATCH or _PADDING.search(folded) is None)
        and _QUIET.search(folded + "\n" + rotated) is None
    ):
        return folded  # nothing below can find anything (see _QUIET)
    for match in _PHRASES.find(folded):
        hits.add(match.code, pointer, match.excerpt, match.shown)
    _scan_padding(folded, pointer, hits)
    if "<" in folded:
        hidden = _hidden_html(folded)
        if hidden and not _add_payload("hidden_text.html", _PHRASES.find(hidden), pointer, hits):
            hits.add("hidden_text.html_hidden", pointer, reveal(" ".join(hidden.split()))[:200], "")
    b64, hexes, first = _blob_payloads(folded)
    found = _add_payload(
        "encoded_payload.variation_selectors", _PHRASES.find(vs_decoded), pointer, hits
    )
    found |= _add_payload("encoded_payload.base64", _PHRASES.find(b64), pointer, hits)
    found |= _add_payload("encoded_payload.hex", _PHRASES.find(hexes), pointer, hits)
    if first and not found:
        hits.add("encoded_payload.text", pointer, reveal(first)[:200], repr(reveal(first)[:80]))
    _add_payload("encoded_payload.rot13", _ROT13_PHRASES.find(rotated), pointer, hits)
    return folded

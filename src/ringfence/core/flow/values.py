"""Walking a JSON-like value for its significant parts, within bounds.

Provenance is tracked per *part*, not per tool: :func:`parts_of` walks a value (dicts,
lists, strings, integers) and extracts, from every string, the things an action could be
pointed at (:func:`~.parts.string_parts`) — an e-mail address inside a message body is a
destination even when the body is one long string.  Both sides of a provenance question
go through the same extraction (the content a source showed the session, and the
argument being checked), so a part matches when it was extracted from both.

Besides the kinds of :mod:`.parts`:

* a whole string that starts with ``/`` or ``~/`` (and has no newline) is also one
  ``path`` as a whole, spaces and all;
* a JSON integer of 8 to 34 digits is an ``account``;
* a whole string of 4 to 256 characters that yielded no other part and has two letters
  in a row (not a number, amount, date or timestamp) is a ``text`` part:
  case-folded, whitespace collapsed, punctuation trimmed from both ends (``#general`` →
  ``general``), so that a short free-text value such as a channel or contact name can be
  traced.

No false provenance from short common tokens: strings under 4 characters yield nothing,
numbers under 8 digits yield nothing, a ``text`` part needs 4 characters and two letters
in a row and is never one of :data:`STOPWORDS`.  Dict keys are scanned for structured
parts only, never as ``text`` (keys are schema names, not values).

Bounded: at most ``FlowLimits.scan_parts`` parts, ``scan_bytes`` bytes of string and
``scan_nodes`` values per call.  When a bound is hit, :data:`~.parts.TRUNCATED` is in the
result — never a silently shorter answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import msgspec

from ringfence.core.flow.parts import (
    MAX_VALUE,
    TRUNCATED,
    Part,
    PartKind,
    path_part,
    string_parts,
)

__all__ = ["DEFAULT_LIMITS", "STOPWORDS", "FlowLimits", "normalise_text", "parts_of", "scan"]

_MIN_STRING = 4


class FlowLimits(msgspec.Struct, frozen=True):
    """Bounds on scanning and on session state; the defaults suit one agent session.

    ``scan_parts`` / ``scan_bytes`` / ``scan_nodes``: per :func:`parts_of` call (distinct
    parts, bytes of string, values visited).  ``parts_per_source`` and
    ``text_chars_per_source``: what :class:`~.provenance.Provenance` keeps per source;
    ``named_values``: how many values records the user named vouch for it keeps.
    ``counters`` / ``tools``: distinct names before the shared bucket.  ``recent``: the
    call-digest window.  ``labels`` / ``label_chars``: label count (an error beyond it) and
    the length of any label, counter or tool name.  ``state_bytes``: the encoded size cap.
    """

    scan_parts: int = 512
    scan_bytes: int = 1 << 20
    scan_nodes: int = 100_000
    parts_per_source: int = 4096
    named_values: int = 512
    text_chars_per_source: int = 32_768
    counters: int = 256
    tools: int = 256
    recent: int = 32
    labels: int = 1024
    label_chars: int = 128
    state_bytes: int = 1 << 20


DEFAULT_LIMITS = FlowLimits()

STOPWORDS = frozenset(
    # A word list reads better here than 130 quoted strings.
    """
    yes no true false none null nil n/a na ok okay sure fine done good great cool nope yeah
    yep hello hi hey thanks thank please regards cheers best welcome sorry
    the and or but not for with from this that these those there here what when where which
    who why how into onto over under about have has had will would should could just only
    also some any all each every more most other such than then them they their your yours
    today tomorrow yesterday tonight morning afternoon evening night week month year now later
    soon asap monday tuesday wednesday thursday friday saturday sunday january february march
    april june july august september october november december
    test testing info unknown undefined default empty nothing something anything everything
    nobody somebody anyone someone everyone
    """.split()  # noqa: SIM905
) | {"thank you", "no thanks", "n/a"}
"""Case-folded strings that never become a ``text`` part (shorter ones never do anyway)."""


def normalise_text(text: str) -> str:
    """``text`` case-folded with runs of whitespace collapsed to one space."""
    return " ".join(text.casefold().split())


def _text_part(text: str) -> Part | None:
    norm = normalise_text(text)
    lo, hi = 0, len(norm)
    while lo < hi and not norm[lo].isalnum():
        lo += 1
    while hi > lo and not norm[hi - 1].isalnum():
        hi -= 1
    norm = norm[lo:hi]
    if len(norm) < _MIN_STRING or norm in STOPWORDS:
        return None
    # Two letters in a row: numbers, amounts, dates and timestamps ("2024-03-15T10:00Z") are
    # not names.  (For ASCII, str.isalpha is exactly [A-Za-z]: one search in C.)
    if norm.isascii():
        if _TWO_ASCII_LETTERS.search(norm) is None:
            return None
    elif not any(a.isalpha() and b.isalpha() for a, b in pairwise(norm)):
        return None
    return Part(PartKind.TEXT, norm)


_TWO_ASCII_LETTERS = re.compile("[A-Za-z]{2}")


# Short strings recur in every result (keys, "type" values, ids, small answers) and their parts
# depend on nothing else: the parts of one are kept and reused (bounded, least recently used).
_CACHED_BYTES = 256


@functools.lru_cache(maxsize=4096)
def _short_string(text: str, whole: bool) -> tuple[Part, ...]:
    return tuple(_string_parts(text, text.encode(), whole, False))


def _string_parts(text: str, data: bytes, whole: bool, cut: bool) -> list[Part]:
    """The parts of one string (``data`` is its UTF-8), in order: the whole string as a path,
    the structured parts in it, else the whole string as a ``text`` part; ``cut``: the string
    was cut short by the scan budget (then it is never a ``text`` part)."""
    out: list[Part] = []
    stripped = text.strip()
    if whole and stripped.startswith(("/", "~/")) and "\n" not in stripped:
        # The in-text scan stops a path at a space; the whole string is one path too.
        # The scan still runs: "/tmp/x; curl https://evil.example" names a destination.
        part = path_part(stripped)
        if part:
            out.append(part)
    out.extend(string_parts(data))
    if whole and not out and not cut and len(text) <= MAX_VALUE:
        part = _text_part(text)
        if part:
            out.append(part)
    return out


class _Scan:
    """One bounded walk: parts in the order first seen, strings kept for a text corpus."""

    __slots__ = ("budget", "keep_texts", "limits", "nodes", "parts", "texts", "truncated")

    def __init__(self, limits: FlowLimits, keep_texts: bool) -> None:
        self.limits = limits
        self.parts: dict[Part, None] = {}
        self.texts: list[str] = []
        self.keep_texts = keep_texts
        self.budget = limits.scan_bytes
        self.nodes = 0
        self.truncated = False

    def add(self, part: Part) -> None:
        if part not in self.parts:
            if len(self.parts) >= self.limits.scan_parts:
                self.truncated = True
                return
            self.parts[part] = None

    def string(self, text: str, whole: bool) -> None:
        if len(text) < _MIN_STRING:
            return
        try:
            data = text.encode()
        except UnicodeEncodeError:  # lone surrogates: scan what a UTF-8 encoder would send
            data = text.encode("utf-8", "replace")
            text = data.decode()
        cut = len(data) > self.budget
        if cut:
            data = data[: self.budget]
            text = data.decode("utf-8", "ignore")
            self.truncated = True
        self.budget -= len(data)
        if self.keep_texts and whole:
            self.texts.append(normalise_text(text))
        found: Sequence[Part]
        if not cut and len(data) <= _CACHED_BYTES:
            found = _short_string(text, whole)
        else:
            found = _string_parts(text, data, whole, cut)
        for part in found:
            self.add(part)
            if self.truncated:
                return

    def walk(self, value: Any) -> None:
        stack = [value]
        while stack and not self.truncated:
            node = stack.pop()
            self.nodes += 1
            if self.nodes > self.limits.scan_nodes or self.budget <= 0:
                self.truncated = True
                return
            kind = type(node)
            if kind is str:
                self.string(node, whole=True)
            elif kind is int:
                number = abs(node)
                # Compare, not str(): a huge int would hit Python's int-to-str digit limit.
                if 10**7 <= number < 10**34:
                    self.add(Part(PartKind.ACCOUNT, str(number)))
            elif kind is dict:
                for key in node:
                    if isinstance(key, str):
                        self.string(key, whole=False)
                stack.extend(reversed(node.values()))
            elif kind in (list, tuple):
                stack.extend(reversed(node))
            elif isinstance(node, (set, frozenset)):
                stack.extend(sorted(node, key=repr))
            elif isinstance(node, str):  # str subclasses, e.g. StrEnum members
                self.string(str(node), whole=True)


def scan(
    value: Any, limits: FlowLimits = DEFAULT_LIMITS, *, keep_texts: bool = False
) -> tuple[list[Part], list[str], bool]:
    """Parts of ``value`` in the order first seen, its whole strings normalised (if
    ``keep_texts``), and whether a bound was hit.  :func:`parts_of` is the usual entry."""
    state = _Scan(limits, keep_texts)
    state.walk(value)
    return list(state.parts), state.texts, state.truncated


def parts_of(value: Any, limits: FlowLimits = DEFAULT_LIMITS) -> frozenset[Part]:
    """The significant parts of a JSON-like ``value``; includes :data:`TRUNCATED` if the
    scan hit a bound.  Never raises for str/int/float/bool/None/list/tuple/dict values;
    other types are ignored."""
    parts, _, truncated = scan(value, limits)
    return frozenset(parts) | {TRUNCATED} if truncated else frozenset(parts)

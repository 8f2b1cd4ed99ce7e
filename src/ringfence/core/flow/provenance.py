"""Value provenance: which sources showed the session each significant part of a value.

A :class:`Provenance` records, per :class:`Source`, the :class:`~.parts.Part`\\ s that
source's content contained.  A policy then asks about one argument: did every part of it
come from the user (:meth:`Provenance.from_user`), from the user or a trusted tool
(:meth:`~Provenance.trusted`), or does some part come only from untrusted content
(:meth:`~Provenance.untrusted_only`), from nowhere (:meth:`~Provenance.unknown`), or from
neither the user nor a trusted tool (:meth:`~Provenance.not_trusted`)?

A part counts as coming from a source when:

* that source showed exactly the same normalised part; or
* it is a ``url`` whose host (``www.`` removed) is a ``domain`` the source showed — a
  link on a domain the user typed, or on the domain of an address the user typed, is the
  user's.  Subdomains are *not* covered: ``a.example.com`` is not ``example.com``, because
  shared platforms hand out subdomains to anyone (``*.github.io``, ``*.ngrok.io``,
  ``*.blogspot.com``).  An ``email`` is only ever covered by the same address, never by
  its domain: "send it to the address in the page" stays untrusted even when the user
  named someone else at the same domain.  (``by_domain=False`` turns the URL rule off.)
* it is a ``text`` or ``path`` part and the source is USER or TRUSTED and its text
  contains it between word boundaries, case-folded — the user who wrote "post it in
  #marketing-team" typed the channel name ``marketing-team`` even though it was not a
  whole string, and "open /home/me/My Documents/plan.txt" names a path with a space in it
  (for a path, ``/ . _ - ~`` also count as word characters: ``/etc/passwd.bak`` does not
  contain ``/etc/passwd``).
  UNTRUSTED text is not searched: a name mentioned inside untrusted prose is ``unknown``
  (which :meth:`~Provenance.not_trusted` catches), only a whole untrusted string — a name
  a listing returned — is ``untrusted_only``.

Bounds fail closed.  Each source keeps at most ``FlowLimits.parts_per_source`` parts,
oldest dropped first, and marks itself ``overflowed``; once UNTRUSTED has overflowed, any
part in neither USER nor TRUSTED counts as untrusted-only.  Dropping USER or TRUSTED parts
or text only ever makes values look less trusted.  A value whose scan was cut short
(:data:`~.parts.TRUNCATED`) is never from the user or trusted, is unknown, and is
untrusted-only as soon as the session has seen any untrusted part.

A value with no parts at all (short strings, common words, small numbers) is vacuously
``from_user`` and ``trusted`` and is none of the other three: provenance says nothing
about it, so a policy that needs a destination to be traceable must say so.

Two questions compare whole values instead of parts, for ids, names and amounts that have
no significant parts (``C-20991``, ``i-0a41f2c9e1d7``, ``1450``):

* :meth:`Provenance.stated` — the user's own text contains the value as a whole token
  (``lt-runner`` is not in "delete lt-runner-1"), or the same number in any usual notation.
  Never vacuously true.
* :meth:`Provenance.user_named` — stated, or vouched for by a record the user named: when a
  tool declares ``user_named: {by: [id], vouch: [from]}``, a result record whose ``id`` the
  user stated ("reply to sup-55120") vouches for its ``from`` address (:func:`named_values`).
  A vouched value is *named*, not *from the user*: ``from_user`` stays false for it, so a
  rule that lets only the user's own words send sensitive data out still holds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any

import msgspec
from immutables import Map as Members

from ringfence.core.flow.parts import Part, PartKind, url_domain
from ringfence.core.flow.values import (
    DEFAULT_LIMITS,
    STOPWORDS,
    FlowLimits,
    normalise_text,
    parts_of,
    scan,
)

__all__ = ["Provenance", "Seen", "Source", "named_values"]

# A needle occurring this often without a word-bounded hit is treated as not found, which
# only ever makes a value look less trusted; it keeps a pathological corpus cheap.
_MAX_OCCURRENCES = 64


class Source(StrEnum):
    """Where content in a session came from."""

    USER = "user"
    """The user's own request (and later turns of the same conversation)."""
    TRUSTED = "trusted"
    """Trusted tools and the operator: output no outsider can write into."""
    UNTRUSTED = "untrusted"
    """Web pages, inbound e-mail and messages, files from outside, third-party tool output."""


class Seen(msgspec.Struct, frozen=True, dict=True, forbid_unknown_fields=True):
    """What one source showed the session: parts (oldest first), its text (USER and
    TRUSTED only, oldest first) and whether anything was dropped to stay within bounds."""

    parts: tuple[Part, ...] = ()
    texts: tuple[str, ...] = ()
    overflowed: bool = False

    @cached_property
    def part_set(self) -> Members[Part, None]:
        """``parts`` as a persistent set (a HAMT), computed once per value and then carried
        from record to record in O(log n) per change."""
        return Members(dict.fromkeys(self.parts))

    @cached_property
    def corpus(self) -> str:
        """``texts`` joined by newlines (normalised text contains none)."""
        return "\n".join(self.texts)

    @cached_property
    def words(self) -> Members[str, int]:
        """Each word of ``texts`` (a maximal run of letters and digits, :data:`_WORD`) and
        how many texts hold it.  A text part whose words are not all here is not in the
        text (:meth:`covers` answers without searching it).  Computed when first asked for,
        then carried from record to record (:meth:`added`)."""
        counts: dict[str, int] = {}
        for text in self.texts:
            for word in dict.fromkeys(_WORD.findall(text)):
                counts[word] = counts.get(word, 0) + 1
        return Members(counts)

    def _has_words(self, needle: str) -> bool:
        """Whether every word of ``needle`` is a word of ``texts``: needed (not enough) for
        ``needle`` to occur in them between word boundaries — each of its words then lies
        between non-letters, non-digits on both sides, so it is a whole word there too."""
        words = self.words
        return all(word in words for word in _WORD.findall(needle))

    @cached_property
    def numbers(self) -> frozenset[Decimal]:
        """Every number written in ``texts``, under each reading of its separators
        (``1,450`` is 1450 and 1.45; ``1.450,00`` is 1450)."""
        return frozenset(n for token in _NUMBER.findall(self.corpus) for n in _readings(token))

    def covers(self, part: Part, *, by_domain: bool = True) -> bool:
        """Whether this source showed ``part`` (see the module docstring for the rules)."""
        if part in self.part_set:
            return True
        if part.kind is PartKind.URL and by_domain:
            domain = url_domain(part.value)
            return domain is not None and Part(PartKind.DOMAIN, domain) in self.part_set
        if part.kind is PartKind.TEXT and self.texts:
            return self._has_words(part.value) and _contains_word(self.corpus, part.value, "")
        if part.kind is PartKind.PATH and self.texts:
            # A path with spaces in a sentence is cut short by the in-text scan.
            return _contains_word(self.corpus, part.value.casefold(), "/._-~")
        return False

    def added(
        self, parts: Iterable[Part], texts: Iterable[str], truncated: bool, limits: FlowLimits
    ) -> Seen:
        """This record with ``parts`` and ``texts`` added as the newest, within bounds.

        Re-seen parts and texts move to the newest end, so the oldest dropped are the least
        recent.  Both are appended to lists shared with this record (:class:`_Log`), not
        copied: the work grows with what is added, not with what is held.  The new record's
        sets, encoded size and text total are carried over from this one instead of
        recomputed.  Content that is already the newest, in order, leaves the record as it is
        (:meth:`_newest`).
        """
        new = dict.fromkeys(parts)
        fresh = dict.fromkeys(t for t in texts if t)
        if not truncated and ((not new and not fresh) or self._newest(new, fresh, limits)):
            return self
        cache = self.__dict__
        made: dict[str, Any] = {}  # what the new record carries over (sets, sizes, totals)
        held: tuple[Part, ...] | _Log = self.parts
        cut: list[Part] = []
        if new:
            log, again, cut, _ = _Log.of(held, cache.get("part_set")).added(
                new, limits.parts_per_source
            )
            held, made["part_set"] = log, log.counts
            if "_part_bytes" in cache:
                made["_part_bytes"] = (
                    cache["_part_bytes"] + _bytes(new) - _bytes(again) - _bytes(cut)
                )
        kept: tuple[str, ...] | _Log = self.texts
        dropped: list[str] = []
        newest_cut = False
        if fresh:
            # The newest texts whose lengths plus one separator each fit in the budget are
            # kept (the newest always, cut short below if it alone does not fit); the total
            # is carried over from record to record, not summed again.
            budget = limits.text_chars_per_source
            texts = _Log.of(kept, cache.get("text_set"))
            again_texts = [t for t in fresh if t in texts.counts]
            chars = self._text_chars + _chars(fresh) - _chars(again_texts)
            texts, _, dropped, chars = texts.added(fresh, -1, budget, chars)
            newest = texts.tail(1)[0]
            newest_cut = len(newest) >= budget
            if newest_cut:  # the newest alone does not fit: keep its beginning
                kept = (newest[:budget],)
            else:
                kept, made["text_set"], made["_text_chars"] = texts, texts.counts, chars
                if "_text_bytes" in cache:
                    made["_text_bytes"] = (
                        cache["_text_bytes"] + _bytes(fresh) - _bytes(again_texts) - _bytes(dropped)
                    )
                if "words" in cache:  # only once asked for: most sessions never do
                    known = set(again_texts)
                    new_texts = [t for t in fresh if t not in known]
                    made["words"] = _words_changed(cache["words"], new_texts, dropped)
        overflowed = self.overflowed or truncated or bool(cut) or bool(dropped) or newest_cut
        out = Seen(held, kept, overflowed)  # type: ignore[arg-type]  # logs read as tuples
        for key in ("part_set", "_part_bytes") if not new else ():
            if key in cache:
                made[key] = cache[key]
        for key in ("text_set", "_text_chars", "_text_bytes", "words") if not fresh else ():
            if key in cache:
                made[key] = cache[key]
        out.__dict__.update(made)
        return out

    def _newest(self, new: dict[Part, None], fresh: dict[str, None], limits: FlowLimits) -> bool:
        """Whether ``new`` and ``fresh`` are already this record's newest parts and texts, in
        the same order, and the record is within ``limits``: adding them again changes
        nothing (a tool that returns the same result call after call)."""
        n, m = len(new), len(fresh)
        if n > len(self.parts) or m > len(self.texts) or len(self.parts) > limits.parts_per_source:
            return False
        if n and _tail(self.parts, n) != tuple(new):
            return False
        if not m:
            return True
        # Within the text budget (so nothing would be dropped and the newest not cut short).
        within = self._text_chars <= limits.text_chars_per_source
        return within and _tail(self.texts, m) == tuple(fresh)

    @cached_property
    def text_set(self) -> Members[str, None]:
        """``texts`` as a persistent set, like :attr:`part_set`."""
        return Members(dict.fromkeys(self.texts))

    @cached_property
    def _text_chars(self) -> int:
        # What the text budget counts (see added), carried over from record to record.
        return _chars(self.texts)

    @cached_property
    def _part_bytes(self) -> int:
        return _items_bytes(self.parts)

    @cached_property
    def _text_bytes(self) -> int:
        return _items_bytes(self.texts)

    def encoded_size(self) -> int:
        """The length of this record encoded as JSON, kept up to date as parts are added
        (so bounding a session's size does not re-encode everything it holds)."""
        n, m = len(self.parts), len(self.texts)
        return (
            _EMPTY_SIZE[self.overflowed]
            + self._part_bytes
            + max(n - 1, 0)
            + self._text_bytes
            + max(m - 1, 0)
        )

    def without_oldest(self, count: int) -> Seen:
        """This record with its ``count`` oldest parts dropped and marked overflowed."""
        out = Seen(self.parts[count:], self.texts, True)
        cache = self.__dict__
        for key in ("text_set", "_text_chars", "_text_bytes", "words"):  # the same texts
            if key in cache:
                out.__dict__[key] = cache[key]
        return out


def as_tuple(value: Any) -> Any:
    """``enc_hook`` for msgspec encoders that may meet a record's parts held as a
    :class:`_Log`: they encode as the tuple they stand for."""
    if type(value) is _Log:
        return value.items()
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_ENCODE = msgspec.json.Encoder(order="deterministic", enc_hook=as_tuple).encode


def _bytes(items: Collection[Any]) -> int:
    """The sum of the encoded lengths of ``items``."""
    return sum(map(len, map(_ENCODE, items))) if items else 0


def _items_bytes(items: tuple[Any, ...]) -> int:
    """The sum of the encoded lengths of ``items`` (their JSON array minus brackets and commas)."""
    return len(_ENCODE(items)) - 2 - max(len(items) - 1, 0)


_EMPTY_SIZE = {flag: len(_ENCODE(Seen((), (), flag))) for flag in (False, True)}


class _Buffer(list[Any]):
    """The list a :class:`_Log` and the logs made from it view, and the lock under
    which one of them appends to it."""

    __slots__ = ("lock",)

    def __init__(self, items: Iterable[Any]) -> None:
        super().__init__(items)
        self.lock = threading.Lock()


class _Log:
    """A record's parts (or texts), oldest first, as a window ``[start, end)`` of a list that
    only grows and is shared with the records this one was made from.

    Adding items appends them (to the shared list when nothing was appended after this
    window, else to a fresh copy) and moves the window's start past the oldest ones dropped:
    nothing held is copied or released, which at 4,096 parts is most of what observing a new
    result costs.  An item seen again is appended again; its earlier entry is then dead,
    which ``counts`` (entries of each item in the window) tells: walking from the start, an
    entry whose item has more than one is dead.  When dead entries, or the entries before the
    window, outnumber the live ones by a margin, the window is copied into a list of its own
    (amortised: once per that many appends).  Reads as the tuple it stands for
    (:meth:`items`, built on first use): equal to it, same hash, same ``len``, iteration,
    indexing and ``in``.  Records never change, so views of one list never see each other's
    appends.
    """

    __slots__ = ("_buf", "_end", "_start", "_tuple", "counts")

    def __init__(
        self, buf: _Buffer, start: int, end: int, counts: Members[Any, int | None]
    ) -> None:
        self._buf = buf
        self._start = start
        self._end = end
        # item -> its entries in the window (None: one, as in a record's part_set); len() is
        # the number of items.
        self.counts = counts
        self._tuple: tuple[Any, ...] | None = None

    @staticmethod
    def of(items: tuple[Any, ...] | _Log, item_set: Members[Any, None] | None) -> _Log:
        """``items`` as a log (itself if it is one); ``item_set``: their set, if known."""
        if isinstance(items, _Log):
            return items
        if item_set is None:
            item_set = Members(dict.fromkeys(items))
        log = _Log(_Buffer(items), 0, len(items), item_set)
        log._tuple = items
        return log

    def items(self) -> tuple[Any, ...]:
        """The items, oldest first: the live entries of the window."""
        out = self._tuple
        if out is None:
            window = self._buf[self._start : self._end]
            if len(window) != len(self.counts):  # dead entries: keep each item's last
                window = list(dict.fromkeys(reversed(window)))
                window.reverse()
            out = self._tuple = tuple(window)
        return out

    def tail(self, n: int) -> tuple[Any, ...]:
        """The window's last ``n`` entries (live; the last ``n`` items if all distinct)."""
        return tuple(self._buf[self._end - n : self._end])

    def added(
        self, new: dict[Any, None], cap: int, budget: int = -1, total: int = 0
    ) -> tuple[_Log, list[Any], list[Any], int]:
        """This log with ``new`` moved or added to the newest end, and the oldest dropped:
        while it holds more than ``cap`` (if ``cap`` >= 0), and while ``total`` (which must
        count ``new``) is over ``budget`` (if ``budget`` >= 0; an item weighs its length plus
        one), the newest always kept.  The log, the items seen again, those dropped, and
        ``total`` after the drops."""
        counts = self.counts
        again = [part for part in new if part in counts]
        buf, start, end = self._buf, self._start, self._end
        with buf.lock:
            shared = len(buf) == end
            if shared:
                buf.extend(new)
        if not shared:  # another log appended after this window: continue from a copy
            buf, counts = self._copied()
            start, end = 0, len(buf)
            buf.extend(new)
        end += len(new)
        with counts.mutate() as m:
            for part in again:
                m[part] = (m[part] or 1) + 1
            for part in new:
                if part not in m:
                    m[part] = None
            drop = len(m) - cap if cap >= 0 else 0
            cut: list[Any] = []
            # The oldest live entries go; dead ones are stepped over.
            while drop > 0 or (budget >= 0 and total > budget and len(m) > 1):
                part = buf[start]
                start += 1
                seen = m[part]
                if seen is not None and seen > 1:
                    m[part] = seen - 1 if seen > 2 else None
                else:
                    del m[part]
                    cut.append(part)
                    drop -= 1
                    if budget >= 0:
                        total -= len(part) + 1
            counts = m.finish()
        log = _Log(buf, start, end, counts)
        live = len(counts)
        if end - start - live > max(64, live >> 3) or start > live + 64:
            fresh, counts = log._copied()
            log = _Log(fresh, 0, live, counts)
        return log, again, cut, total

    def _copied(self) -> tuple[_Buffer, Members[Any, int | None]]:
        """The items in a list of their own, and their counts (all one) for it."""
        items = self.items()
        counts = self.counts
        if self._end - self._start != len(counts):  # dead entries: their counts go
            counts = Members(dict.fromkeys(items))
        return _Buffer(items), counts

    # -- reads as the tuple it stands for ----------------------------------------------------

    def __len__(self) -> int:
        return len(self.counts)

    def __bool__(self) -> bool:
        return len(self.counts) > 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items())

    def __reversed__(self) -> Iterator[Any]:
        return iter(self.items()[::-1])

    def __getitem__(self, index: Any) -> Any:
        return self.items()[index]

    def __contains__(self, part: object) -> bool:
        return part in self.counts

    def __eq__(self, other: object) -> bool:
        if type(other) is _Log:
            other = other.items()
        return self.items() == other if type(other) is tuple else NotImplemented

    def __hash__(self) -> int:
        return hash(self.items())

    def __repr__(self) -> str:
        return repr(self.items())


def _tail(items: tuple[Any, ...] | _Log, n: int) -> tuple[Any, ...]:
    return items.tail(n) if type(items) is _Log else items[-n:]


_LAST = "_last_observed"  # (source, text, limits) of the observation that made a Provenance


_LAST_CHARS = 4096  # the longest text remembered that way: it is kept until the next one


def _plain_text(content: Any) -> str | tuple[str, ...] | None:
    """``content`` as a comparable value if it is short text (a string or a list of strings:
    a tool result's text blocks, :data:`_LAST_CHARS` at most in all), else None."""
    if type(content) is str:
        return content if len(content) <= _LAST_CHARS else None
    if (
        type(content) in (list, tuple)
        and all(type(item) is str for item in content)
        and sum(map(len, content)) <= _LAST_CHARS
    ):
        return tuple(content)
    return None


# A word, for Seen.words: a maximal run of the characters str.isalnum accepts (re's \w is
# exactly those and the underscore).
_WORD = re.compile(r"[^\W_]+")


def _words_changed(
    words: Members[str, int], added: Iterable[str], removed: Iterable[str]
) -> Members[str, int]:
    """``words`` (:attr:`Seen.words`) after the texts ``added`` joined and ``removed`` left."""
    with words.mutate() as m:
        for text in added:
            for word in dict.fromkeys(_WORD.findall(text)):
                m[word] = m.get(word, 0) + 1
        for text in removed:
            for word in dict.fromkeys(_WORD.findall(text)):
                left = m[word] - 1
                if left:
                    m[word] = left
                else:
                    del m[word]
        words = m.finish()
    return words


def _move_to_end(merged: dict[Any, None], new: dict[Any, None]) -> None:
    """Add ``new`` to ``merged`` as its newest entries, moving those it holds already."""
    for item in new:
        merged.pop(item, None)
        merged[item] = None


def _chars(texts: Collection[str]) -> int:
    """What the text budget counts of ``texts``: their lengths plus one separator each."""
    return sum(map(len, texts)) + len(texts)


def _contains_word(haystack: str, needle: str, word_chars: str) -> bool:
    """Whether ``needle`` occurs in ``haystack`` with no letter, digit or ``word_chars``
    character right before or after it."""
    start = 0
    for _ in range(_MAX_OCCURRENCES):
        i = haystack.find(needle, start)
        if i < 0:
            return False
        j = i + len(needle)
        before = haystack[i - 1] if i else " "
        after = haystack[j] if j < len(haystack) else " "
        if not (before.isalnum() or before in word_chars or after.isalnum() or after in word_chars):
            return True
        start = i + 1
    return False


# A number standing alone: not part of a longer token (``2024-1187``, ``v1.2``, ``a/12``).
_NUMBER = re.compile(r"(?<![\w.,'/-])\d+(?:[.,']\d+)*(?![\w/-])")
_MAX_NUMBER_DIGITS = 40
# A record field is taken as named by the user only through a value this long (normalised).
_MIN_NAMED = 4
_TYPE_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,31}:(?!//)")


def _readings(token: str) -> set[Decimal]:
    """The numbers ``token`` (digits and ``. , '`` separators) can be read as."""
    plain = token.replace("'", "")
    if len(plain) > _MAX_NUMBER_DIGITS:
        return set()
    groups = re.split(r"[.,]", plain)
    out: set[Decimal] = set()
    if all(len(g) == 3 for g in groups[1:]):  # every separator a thousands separator
        out.add(Decimal("".join(groups)))
    cut = max(plain.rfind("."), plain.rfind(","))
    if cut > 0:  # the last separator the decimal point, the others thousands separators
        head = re.split(r"[.,]", plain[:cut])
        if all(len(g) == 3 for g in head[1:]) and plain[cut] not in plain[:cut]:
            out.add(Decimal(f"{''.join(head)}.{plain[cut + 1 :]}"))
    return out


def _strings(value: Any) -> list[str] | None:
    """The strings (and integers, as text) a ``stated`` / ``user_named`` question is about;
    None if ``value`` holds anything else (a dict, a bool, None) or nothing at all."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif type(item) is int:
            out.append(str(item))
        else:
            return None
    return out or None


def _normal(text: str) -> str:
    """``text`` normalised for whole-value comparison: case-folded, whitespace collapsed,
    punctuation trimmed from both ends."""
    norm = normalise_text(text)
    lo, hi = 0, len(norm)
    while lo < hi and not norm[lo].isalnum():
        lo += 1
    while hi > lo and not norm[hi - 1].isalnum():
        hi -= 1
    return norm[lo:hi]


def _forms(text: str) -> list[str]:
    """``text`` normalised, and without a resource type prefix (``recipient:a@b.example``)."""
    if len(text) > MAX_NAMED_CHARS:
        return []
    norm = _normal(text)
    prefix = _TYPE_PREFIX.match(text)
    return [norm, _normal(text[prefix.end() :])] if prefix else [norm]


MAX_NAMED_CHARS = 256
"""The longest value :func:`named_values` records (longer field values are not recorded)."""


def named_values(
    content: Any,
    user: Seen,
    by: Sequence[str],
    vouch: Sequence[str],
    *,
    limits: FlowLimits = DEFAULT_LIMITS,
) -> list[str]:
    """The values a record the user named vouches for: in every dict inside ``content``
    (a tool result) that has a field in ``by`` whose whole value the user's text contains
    (see :meth:`Provenance.stated`; at least four characters, not a stop word), the values
    of the fields in ``vouch`` — each whole (normalised) and each significant part of it.

    "Reply to sup-55120" names the message whose ``id`` is ``sup-55120``, so its ``from``
    address is the one the user meant; "delete lt-runner-1" names the instance whose
    ``name`` that is, so its ``id`` is.  Only the fields the policy lists are vouched for:
    the rest of a record the user named (a description, a body) stays what it was.
    Bounded by ``limits.scan_nodes`` (values visited); a cut walk vouches for less.
    """
    if not by or not vouch or not user.texts:
        return []
    out: dict[str, None] = {}
    stack: list[Any] = [content]
    nodes = 0
    while stack:
        node = stack.pop()
        nodes += 1
        if nodes > limits.scan_nodes:
            break
        if isinstance(node, dict):
            if any(_names(user, node.get(key)) for key in by):
                for key in vouch:
                    for text in _strings(node.get(key)) or ():
                        if len(text) > MAX_NAMED_CHARS:
                            continue
                        out[_normal(text)] = None
                        for part in parts_of(text, limits):
                            out[part.value.casefold()] = None
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return [v for v in out if v and len(v) <= MAX_NAMED_CHARS]


def _names(user: Seen, value: Any) -> bool:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return False
    norm = _normal(str(value))
    if len(norm) < _MIN_NAMED or norm in STOPWORDS or len(norm) > MAX_NAMED_CHARS:
        return False
    return _contains_token(user.corpus, norm)


def _contains_token(haystack: str, needle: str) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as a whole token: not preceded or followed
    by a letter, a digit, ``- _ @ /``, or a ``.`` / ``,`` that continues the token
    (``lt-runner`` is not in "lt-runner-1"; ``a@b.example`` is in "mail a@b.example.")."""
    start = 0
    for _ in range(_MAX_OCCURRENCES):
        i = haystack.find(needle, start)
        if i < 0:
            return False
        j = i + len(needle)
        before = haystack[i - 1] if i else " "
        after = haystack[j] if j < len(haystack) else " "
        after2 = haystack[j + 1] if j + 1 < len(haystack) else " "
        if not (
            before.isalnum()
            or before in _JOINERS
            or (before in ".," and i > 1 and haystack[i - 2].isalnum())
            or after.isalnum()
            or after in _JOINERS
            or (after in ".," and after2.isalnum())
        ):
            return True
        start = i + 1
    return False


_JOINERS = "-_@/"


class Provenance(msgspec.Struct, frozen=True, dict=True, forbid_unknown_fields=True):
    """The parts each source showed the session.  Immutable: :meth:`observe` returns a new
    value.  The predicates take any JSON-like value (an argument, a list of recipients)."""

    user_seen: Seen = Seen()
    trusted_seen: Seen = Seen()
    untrusted_seen: Seen = Seen()
    named: tuple[str, ...] = ()
    """Values records the user named vouch for (see :func:`named_values`), oldest first."""

    def seen(self, source: Source) -> Seen:
        """The record for ``source``."""
        if source is Source.USER:
            return self.user_seen
        return self.trusted_seen if source is Source.TRUSTED else self.untrusted_seen

    def observe(
        self, content: Any, source: Source, *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> Provenance:
        """This provenance after ``source`` showed the session ``content``."""
        source = Source(source)
        key = _plain_text(content)
        if key is not None and self.__dict__.get(_LAST) == (source, key, limits):
            return self  # what was just observed, again (Seen._newest: nothing changes)
        # Text is searched for USER and TRUSTED only; see the module docstring.
        keep_texts = source is not Source.UNTRUSTED
        parts, texts, truncated = scan(content, limits, keep_texts=keep_texts)
        seen = self.seen(source).added(parts, texts, truncated, limits)
        out = self.replaced(source, seen)
        if key is not None:
            out.__dict__[_LAST] = (source, key, limits)
        return out

    def observe_many(
        self, items: Sequence[tuple[Any, Source]], *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> Provenance:
        """This provenance after each ``(content, source)`` of ``items`` in turn, as
        :meth:`observe` would leave it one by one: the same parts and texts in the same
        order, the same ``overflowed`` flags.  Each content is scanned as before, but each
        source's record is added to once for them all (a batch of results costs one record
        per source, not one per result)."""
        if len(items) == 1:
            content, source = items[0]
            return self.observe(content, source, limits=limits)
        last = self.__dict__.get(_LAST)
        batches: dict[Source, tuple[dict[Part, None], dict[str, None], list[bool]]] = {}
        for content, given in items:
            source = Source(given)
            key = _plain_text(content)
            mark = None if key is None else (source, key, limits)
            if mark is not None and mark == last:
                continue  # what was just observed, again: observe skips it too
            last = mark
            keep_texts = source is not Source.UNTRUSTED
            parts, texts, truncated = scan(content, limits, keep_texts=keep_texts)
            held, said, cut = batches.setdefault(source, ({}, {}, [False]))
            # One by one, what a later result shows again moves to the newest end.
            _move_to_end(held, dict.fromkeys(parts))
            _move_to_end(said, dict.fromkeys(t for t in texts if t))
            cut[0] = cut[0] or truncated
        out = self
        for source, (held, said, cut) in batches.items():
            out = out.replaced(source, out.seen(source).added(held, said, cut[0], limits))
        if last is not None:
            out.__dict__[_LAST] = last
        return out

    def replaced(self, source: Source, seen: Seen) -> Provenance:
        """This provenance with the record for ``source`` replaced by ``seen``."""
        if seen is self.seen(source):
            return self
        if source is Source.USER:
            return Provenance(seen, self.trusted_seen, self.untrusted_seen, self.named)
        if source is Source.TRUSTED:
            return Provenance(self.user_seen, seen, self.untrusted_seen, self.named)
        return Provenance(self.user_seen, self.trusted_seen, seen, self.named)

    def with_named(
        self, values: Iterable[str], *, limits: FlowLimits = DEFAULT_LIMITS
    ) -> Provenance:
        """This provenance with ``values`` (from :func:`named_values`) vouched for; at most
        ``limits.named_values`` are kept, the oldest dropped first (which only ever makes a
        value look less named)."""
        new = dict.fromkeys(values)
        if not new:
            return self
        merged = [v for v in self.named if v not in new]
        merged.extend(new)
        kept = tuple(merged[-limits.named_values :]) if limits.named_values > 0 else ()
        return Provenance(self.user_seen, self.trusted_seen, self.untrusted_seen, kept)

    @cached_property
    def _named_set(self) -> frozenset[str]:
        return frozenset(self.named)

    def stated(self, value: Any) -> bool:
        """The user's own text contains ``value`` whole: every string of it (a list: every
        element) between word boundaries, case-folded, punctuation trimmed — or, for a
        number, the same number in any usual notation (``1450`` / ``1,450.00`` /
        ``1.450,00``).  False for values with nothing to compare (None, bools, dicts, an
        empty list or string): unlike ``from_user`` this question is never vacuously true.
        A ``type:`` prefix (``recipient:``) is ignored, for resources."""
        user = self.user_seen
        if not user.texts:
            return False
        if isinstance(value, float) or (type(value) is int and abs(value) < 10**_MAX_NUMBER_DIGITS):
            try:
                return Decimal(repr(value)) in user.numbers
            except InvalidOperation:
                return False
        texts = _strings(value)
        if texts is None:
            return False
        return all(
            any(form and _contains_token(user.corpus, form) for form in _forms(t)) for t in texts
        )

    def user_named(self, value: Any) -> bool:
        """The user named ``value``: :meth:`stated`, or every string of it is a value a record
        the user named vouches for (:func:`named_values`, compared whole, normalised)."""
        if self.stated(value):
            return True
        texts = _strings(value)
        if texts is None:
            return False
        named, corpus = self._named_set, self.user_seen.corpus
        return all(
            any(form and (form in named or _contains_token(corpus, form)) for form in _forms(t))
            for t in texts
        )

    def sources_of(
        self, value: Any, *, by_domain: bool = True, limits: FlowLimits = DEFAULT_LIMITS
    ) -> dict[Part, frozenset[Source]]:
        """Each part of ``value`` and the sources it is counted as coming from (the
        explanation behind every predicate).  :data:`~.parts.TRUNCATED` maps to no source."""
        return {part: self._sources(part, by_domain) for part in parts_of(value, limits)}

    def _sources(self, part: Part, by_domain: bool) -> frozenset[Source]:
        if part.kind is PartKind.TRUNCATED:
            return frozenset()
        return frozenset(s for s in Source if self.seen(s).covers(part, by_domain=by_domain))

    def _in_trusted(self, part: Part, by_domain: bool) -> bool:
        if part.kind is PartKind.TRUNCATED:
            return False
        return self.user_seen.covers(part, by_domain=by_domain) or self.trusted_seen.covers(
            part, by_domain=by_domain
        )

    def untrusted_only(
        self, value: Any, *, by_domain: bool = True, limits: FlowLimits = DEFAULT_LIMITS
    ) -> bool:
        """Some part of ``value`` was seen in untrusted content and in neither the user's
        nor trusted content — or could have been, because the untrusted record overflowed
        or the value was too large to scan whole after untrusted parts were seen."""
        untrusted = self.untrusted_seen
        tainted = bool(untrusted.parts) or untrusted.overflowed
        for part in parts_of(value, limits):
            if self._in_trusted(part, by_domain):
                continue
            if part.kind is PartKind.TRUNCATED:
                if tainted:
                    return True
            elif untrusted.overflowed or untrusted.covers(part, by_domain=by_domain):
                return True
        return False

    def unknown(
        self, value: Any, *, by_domain: bool = True, limits: FlowLimits = DEFAULT_LIMITS
    ) -> bool:
        """Some part of ``value`` was seen in no source (a truncated scan counts)."""
        return any(not self._sources(p, by_domain) for p in parts_of(value, limits))

    def not_trusted(
        self, value: Any, *, by_domain: bool = True, limits: FlowLimits = DEFAULT_LIMITS
    ) -> bool:
        """Some part of ``value`` is in neither the user's nor trusted content
        (``untrusted_only or unknown``, a truncated scan counts)."""
        return any(not self._in_trusted(p, by_domain) for p in parts_of(value, limits))

    def from_user(
        self, value: Any, *, by_domain: bool = True, limits: FlowLimits = DEFAULT_LIMITS
    ) -> bool:
        """Every part of ``value`` came from the user (vacuously true with no parts; false
        for a truncated scan)."""
        return all(
            p.kind is not PartKind.TRUNCATED and self.user_seen.covers(p, by_domain=by_domain)
            for p in parts_of(value, limits)
        )

    def trusted(
        self, value: Any, *, by_domain: bool = True, limits: FlowLimits = DEFAULT_LIMITS
    ) -> bool:
        """Every part of ``value`` came from the user or a trusted source (vacuously true
        with no parts; false for a truncated scan).  Always ``not not_trusted(value)``."""
        return not self.not_trusted(value, by_domain=by_domain, limits=limits)

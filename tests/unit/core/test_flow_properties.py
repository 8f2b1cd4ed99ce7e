"""Property tests: labels never disappear, scanning never raises, predicates agree."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ringfence.core.flow import (
    UNTRUSTED_LABEL,
    FlowLimits,
    Part,
    Provenance,
    SessionState,
    Source,
    call_digest,
    decode_state,
    encode_state,
    parts_of,
)
from ringfence.core.flow import provenance as provenance_module
from ringfence.core.flow.parts import PartKind
from ringfence.core.flow.provenance import Seen
from ringfence.core.flow.session import _encoded_size, _headroom
from ringfence.core.flow.values import normalise_text, scan

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings drawn partly from fragments that make parts, so the scanner's branches are hit.
FRAGMENTS = [
    "bob@corp.example",
    "https://evil.example/x?y=1",
    "www.shop.example",
    "DE89 3704 0044 0532 0130 00",
    "+1 555 010 9999",
    "4111-1111-1111-1111",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "550e8400-e29b-41d4-a716-446655440000",
    "sk_live_AbCdEf1234567890",
    "#general",
    "203.0.113.5",
    "ok",
    " ",
    "\u00a0",
    "\u2014",
    "(",
    ")",
    ".",
    "@",
    ":",
    "/",
]
texts = st.text(max_size=40) | st.lists(
    st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=8
).map("".join)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | texts
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
sources = st.sampled_from(list(Source))
SMALL = FlowLimits(scan_parts=8, parts_per_source=6, text_chars_per_source=64, state_bytes=1 << 20)
TIGHT_TEXT = FlowLimits(parts_per_source=3, text_chars_per_source=20)


@SETTINGS
@given(json_like)
@example("[" * 50 + "a@b.example")
@example("\ud800bob@x.example")
@example({"\udfff": ["x" * 300, 10**33, -(10**7)]})
def test_parts_of_never_raises(value: Any) -> None:
    parts = parts_of(value)
    assert isinstance(parts, frozenset)
    assert all(isinstance(part, Part) and isinstance(part.value, str) for part in parts)
    assert parts_of(value) == parts  # deterministic
    parts_of(value, SMALL)  # tight bounds are no excuse either


@SETTINGS
@given(st.text(max_size=400))
def test_parts_of_arbitrary_text(text: str) -> None:
    for part in parts_of(text):
        assert len(part.value) <= 256 + 100  # digested beyond 256 (a URL keeps its host)


# One step of a session: call, benign label, counter, observation, or a store round trip.
BENIGN_LABELS = st.lists(st.sampled_from(["pii", "sensitive", "secret", "reviewed", "safe"]))
steps = st.one_of(
    st.tuples(st.just("call"), st.sampled_from(["read", "send", "pay"]), json_like),
    st.tuples(st.just("labels"), BENIGN_LABELS),
    st.tuples(st.just("counter"), st.sampled_from(["spend", "calls", "x"]), st.integers(0, 99)),
    st.tuples(st.just("observe"), json_like, sources),
    st.tuples(st.just("named"), json_like, sources),
    st.tuples(st.just("store")),
)


def apply(state: SessionState, step: tuple[Any, ...], limits: FlowLimits) -> SessionState:
    kind = step[0]
    if kind == "call":
        return state.with_call(step[1], call_digest(step[1], {"v": step[2]}), limits=limits)
    if kind == "labels":
        return state.with_labels(step[1], limits=limits)
    if kind == "counter":
        return state.with_counter(step[1], step[2], limits=limits)
    if kind == "observe":
        return state.observe(step[1], step[2], limits=limits)
    if kind == "named":  # a result with a user_named declaration
        return state.observe(
            step[1], step[2], named=(("id", "name"), ("from", "id")), limits=limits
        )
    return decode_state(encode_state(state), limits=limits)


@SETTINGS
@given(json_like, st.lists(steps, max_size=12), st.booleans())
def test_no_benign_sequence_clears_untrusted(
    injected: Any, sequence: list[tuple[Any, ...]], tight: bool
) -> None:
    limits = (
        FlowLimits(
            parts_per_source=4,
            named_values=2,
            text_chars_per_source=32,
            counters=2,
            tools=2,
            recent=3,
        )
        if tight
        else FlowLimits()
    )
    state = SessionState().observe(injected, Source.UNTRUSTED, limits=limits)
    assert UNTRUSTED_LABEL in state.labels
    labels = state.labels
    for step in sequence:
        state = apply(state, step, limits)
        assert UNTRUSTED_LABEL in state.labels
        assert labels <= state.labels  # no label of any kind is ever lost
        labels = state.labels
        assert state.size_bytes() <= limits.state_bytes


@SETTINGS
@given(st.lists(st.tuples(json_like, sources), max_size=6), json_like, st.booleans())
def test_predicates_agree(observations: list[tuple[Any, Source]], value: Any, tight: bool) -> None:
    limits = SMALL if tight else FlowLimits()
    provenance = Provenance()
    for content, source in observations:
        provenance = provenance.observe(content, source, limits=limits)
    untrusted_only = provenance.untrusted_only(value, limits=limits)
    unknown = provenance.unknown(value, limits=limits)
    not_trusted = provenance.not_trusted(value, limits=limits)
    assert not_trusted == (untrusted_only or unknown)
    assert provenance.trusted(value, limits=limits) == (not not_trusted)
    if provenance.from_user(value, limits=limits):
        assert provenance.trusted(value, limits=limits)
    if not parts_of(value, limits):
        assert not (untrusted_only or unknown or not_trusted)


@SETTINGS
@given(st.lists(st.tuples(json_like, sources), max_size=6))
def test_what_was_observed_is_traced_to_its_source(observations: list[tuple[Any, Source]]) -> None:
    provenance = Provenance()
    for content, source in observations:
        provenance = provenance.observe(content, source)
    for content, source in observations:
        if source is Source.USER:
            assert provenance.from_user(content) or provenance.user_seen.overflowed
        elif source is Source.TRUSTED:
            assert provenance.trusted(content) or provenance.trusted_seen.overflowed
        else:
            assert not provenance.unknown(content) or provenance.untrusted_seen.overflowed


@SETTINGS
@given(st.lists(steps, max_size=10))
def test_encoding_round_trips(sequence: list[tuple[Any, ...]]) -> None:
    state = SessionState()
    for step in sequence:
        state = apply(state, step, FlowLimits())
    data = encode_state(state)
    assert decode_state(data) == state
    assert encode_state(decode_state(data)) == data


@SETTINGS
@given(st.lists(st.tuples(json_like, sources), max_size=12), st.booleans())
def test_carried_sets_and_sizes_match_recomputed(
    observations: list[tuple[Any, Source]], tight: bool
) -> None:
    """What each record carries from the last (its sets, its encoded size) is what building
    it from scratch gives, however parts and texts were added, moved and dropped."""
    limits = SMALL if tight else FlowLimits()
    provenance = Provenance()
    for content, source in observations:
        provenance = provenance.observe(content, source, limits=limits)
        for seen in (provenance.user_seen, provenance.trusted_seen, provenance.untrusted_seen):
            fresh = decode_state(
                encode_state(SessionState(provenance=Provenance(user_seen=seen))), limits=limits
            ).provenance.user_seen
            assert seen == fresh
            assert set(seen.part_set) == set(seen.parts) == set(fresh.part_set)
            assert set(seen.text_set) == set(seen.texts)
            assert len(seen.parts) == len(set(seen.parts))
            assert seen.encoded_size() == fresh.encoded_size() == len(encode_state(seen))
        state = SessionState(provenance=provenance)
        assert _encoded_size(state) == state.size_bytes() == len(encode_state(state))


# Results made of a few shared values, so that observations overlap and reorder parts.
overlapping = st.lists(st.sampled_from(FRAGMENTS[:12]), min_size=1, max_size=4).map(" and ".join)
repeats = st.one_of(
    steps,
    st.tuples(st.just("observe"), overlapping | st.lists(overlapping, max_size=3), sources),
    st.tuples(st.just("observe"), st.lists(st.sampled_from(["", "ok", FRAGMENTS[0]])), sources),
)


@SETTINGS
@given(
    st.lists(st.tuples(repeats, st.integers(min_value=1, max_value=3), st.booleans()), max_size=12),
)
def test_observing_again_what_was_just_seen_changes_nothing(
    sequence: list[tuple[tuple[Any, ...], int, bool]],
) -> None:
    """The shortcut for content observed again while it is still the newest (a tool that
    returns the same result call after call) leaves exactly the state the full merge does,
    also when the limits are tighter than those the state was built under."""
    quick = slow = SessionState()
    for step, times, tight in sequence:
        # (A stored state is read back under the limits it was written with.)
        limits = SMALL if tight and step[0] != "store" else FlowLimits()
        for _ in range(times):
            quick = apply(quick, step, limits)
            with (
                patch.object(Seen, "_newest", lambda *a: False),
                patch.object(provenance_module, "_plain_text", lambda content: None),
            ):
                slow = apply(slow, step, limits)
            assert quick == slow
            assert encode_state(quick) == encode_state(slow)


def test_the_same_result_again_keeps_the_state() -> None:
    result = {"to": "bob@corp.example", "text": "status: green"}
    state = SessionState().observe(result, Source.TRUSTED)
    assert state.observe(result, Source.TRUSTED) is state
    assert state.observe(result, Source.USER) is not state  # another source's record
    other = state.observe({"to": "eve@evil.example"}, Source.TRUSTED)
    assert other is not state
    again = other.observe(result, Source.TRUSTED)  # no longer the newest: moved to the end
    assert again is not other
    assert again.provenance.trusted_seen.texts[-1] == state.provenance.trusted_seen.texts[-1]


def reference_added(seen: Seen, content: Any, limits: FlowLimits, keep_texts: bool) -> Seen:
    """What :meth:`Seen.added` must give, written plainly: re-seen parts and texts move to
    the newest end; the oldest parts beyond the cap go; the oldest texts go until the rest
    (lengths plus one separator each) fit the budget, the newest always kept, cut short if
    it alone does not fit; anything dropped or cut marks the record overflowed."""
    parts, texts, truncated = scan(content, limits, keep_texts=keep_texts)
    new, fresh = list(dict.fromkeys(parts)), list(dict.fromkeys(t for t in texts if t))
    if not new and not fresh and not truncated:
        return seen
    cap, budget = limits.parts_per_source, limits.text_chars_per_source
    held = [p for p in seen.parts if p not in new] + new
    kept_parts = held[max(0, len(held) - cap) :] if cap else []
    held_texts = [t for t in seen.texts if t not in fresh] + fresh
    overflowed = seen.overflowed or truncated or len(kept_parts) < len(held)
    if fresh:
        while sum(len(t) + 1 for t in held_texts) > budget and len(held_texts) > 1:
            held_texts.pop(0)
            overflowed = True
        if len(held_texts[-1]) >= budget:
            held_texts = [held_texts[-1][:budget]]
            overflowed = True
    return Seen(tuple(kept_parts), tuple(held_texts), overflowed)


@SETTINGS
@given(
    st.lists(st.tuples(json_like | overlapping | st.lists(overlapping, max_size=3), st.booleans())),
    st.sampled_from(
        [SMALL, FlowLimits(), FlowLimits(parts_per_source=0, text_chars_per_source=1), TIGHT_TEXT]
    ),
)
def test_added_is_the_plain_merge(steps: list[tuple[Any, bool]], limits: FlowLimits) -> None:
    """However parts and texts move, drop and get cut, :meth:`Seen.added` (one copy, totals
    carried over) gives what the plain list version does, and what it carries is right."""
    seen = Seen()
    for content, keep_texts in steps:
        parts, texts, truncated = scan(content, limits, keep_texts=keep_texts)
        expected = reference_added(seen, content, limits, keep_texts)
        seen = seen.added(parts, texts, truncated, limits)
        assert seen == expected
        assert seen._text_chars == sum(map(len, seen.texts)) + len(seen.texts)
        assert set(seen.text_set) == set(seen.texts)
        assert set(seen.part_set) == set(seen.parts)


batch = st.lists(
    st.tuples(json_like | overlapping | st.lists(overlapping, max_size=3), sources), max_size=10
)


@SETTINGS
@given(
    st.lists(batch, min_size=1, max_size=4),
    st.sampled_from([SMALL, FlowLimits(), TIGHT_TEXT, FlowLimits(parts_per_source=0)]),
)
def test_a_batch_leaves_what_one_by_one_does(
    batches: list[list[tuple[Any, Source]]], limits: FlowLimits
) -> None:
    """:meth:`Provenance.observe_many` gives the parts, texts and flags that observing each
    result in turn gives, batch after batch, whatever repeats, moves and drops."""
    one_by_one = many = Provenance()
    for items in batches:
        for content, source in items:
            one_by_one = one_by_one.observe(content, source, limits=limits)
        many = many.observe_many(items, limits=limits)
        assert many == one_by_one
        assert encode_state(SessionState(provenance=many)) == encode_state(
            SessionState(provenance=one_by_one)
        )
        for seen in (many.user_seen, many.trusted_seen, many.untrusted_seen):
            assert set(seen.part_set) == set(seen.parts)
            assert set(seen.text_set) == set(seen.texts)
            assert seen.encoded_size() == len(encode_state(seen))


@SETTINGS
@given(batch, st.booleans())
def test_a_batch_of_states_stays_within_bounds(
    items: list[tuple[Any, Source]], tight: bool
) -> None:
    """A session state after a batch carries the same labels as one by one, and the same
    provenance unless it had to shrink; it stays within its size either way, and a source
    that gave up parts is marked overflowed."""
    # Tight: room for what counters and recent calls may still add, and about 3 KB more.
    room = _headroom(SessionState(), FlowLimits()) + 3_000
    limits = FlowLimits(state_bytes=room) if tight else FlowLimits()
    one_by_one = SessionState()
    for content, source in items:
        one_by_one = one_by_one.observe(content, source, limits=limits)
    many = SessionState().observe_many(items, limits=limits)
    assert many.labels == one_by_one.labels
    assert _encoded_size(many) == len(encode_state(many)) <= limits.state_bytes
    if not tight:
        assert many == one_by_one
    plain = Provenance()
    for content, source in items:
        plain = plain.observe(content, source, limits=limits)
    for source in Source:
        kept, everything = many.provenance.seen(source), plain.seen(source)
        if kept.parts != everything.parts:
            assert kept.overflowed
            # What was dropped is the oldest: what is kept is the newest, in order.
            assert everything.parts[len(everything.parts) - len(kept.parts) :] == kept.parts


def test_a_batch_with_a_scan_cut_short_is_overflowed() -> None:
    """A result whose scan hit a bound marks its source overflowed in a batch too, even when
    a later result of the batch is scanned whole."""
    limits = FlowLimits(scan_parts=4)  # a result's scan stops at 4 parts; the record holds more
    crowded = " ".join(f"user{i}@corp.example" for i in range(20))
    items = [(crowded, Source.UNTRUSTED), ("bob@corp.example", Source.UNTRUSTED)]
    one_by_one = Provenance()
    for content, source in items:
        one_by_one = one_by_one.observe(content, source, limits=limits)
    many = Provenance().observe_many(items, limits=limits)
    assert len(many.untrusted_seen.parts) == 5
    assert many == one_by_one
    assert many.untrusted_seen.overflowed
    assert not many.trusted_seen.overflowed


# Letters, digits and separators where str.isalnum and regular expressions could part ways:
# superscripts and other numerals, combining marks, the underscore, joiners, dotless i.
WORDISH = st.text(
    alphabet=st.sampled_from(
        [*"ab1 ._-@/,\n", "é", "ß", "²", "\u0663", "\u216b", "\u0301", "\u0131", "\u0130"]
    ),
    max_size=24,
)


@SETTINGS
@given(st.lists(WORDISH, min_size=1, max_size=6), WORDISH)
@example(["x_y"], "x")
@example(["a\u0301b"], "b")
@example(["2² x"], "2²")
def test_a_text_part_missing_a_word_is_not_in_the_text(texts: list[str], raw: str) -> None:
    """The word check that :meth:`Seen.covers` makes before searching the text never turns
    a found text part into one not found: the answer is the search's."""
    kept = tuple(dict.fromkeys(normalise_text(t) for t in texts if normalise_text(t)))
    needle = normalise_text(raw)
    if not kept or not needle:
        return
    seen = Seen((), kept)
    found = provenance_module._contains_word(seen.corpus, needle, "")
    if found:
        assert seen._has_words(needle)
    assert seen.covers(Part(PartKind.TEXT, needle)) is found


@SETTINGS
@given(
    st.lists(st.tuples(json_like | overlapping | st.lists(overlapping, max_size=3), sources)),
    st.sampled_from([SMALL, FlowLimits(), TIGHT_TEXT, FlowLimits(text_chars_per_source=1)]),
)
def test_carried_words_match_recomputed(
    observations: list[tuple[Any, Source]], limits: FlowLimits
) -> None:
    """Once a record's words were asked for, each record after it carries them over
    (texts joining, moving, dropped, cut short, parts dropped to fit): always what counting
    them from scratch gives."""
    state = SessionState()
    for content, source in observations:
        for s in Source:
            _ = state.provenance.seen(s).words  # asked for: from now on carried over
        state = state.observe(content, source, limits=limits)
        for s in Source:
            seen = state.provenance.seen(s)
            assert seen.words == Seen(seen.parts, seen.texts).words

"""Property tests: canonical encoding, Merkle proofs, and tamper detection of stored logs."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ringfence.core.audit.encoding import canonical, decode, is_canonical
from ringfence.core.audit.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

from .logs import OTHER_KEY, Log, chain, checkpoint, edit, replace_cp

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Canonical encoding

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
records = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
ENCODING = settings(SETTINGS, max_examples=100)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every dict rebuilt in a random insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def structure(data: bytes) -> list[int]:
    """Positions of the bytes of ``data`` that are outside JSON strings."""
    out, in_string, escaped = [], False, False
    for i, byte in enumerate(data):
        if in_string:
            if escaped:
                escaped = False
            elif byte == ord("\\"):
                escaped = True
            elif byte == ord('"'):
                in_string = False
        elif byte == ord('"'):
            in_string = True
        else:
            out.append(i)
    return out


def same(a: Any, b: Any) -> bool:
    """Equality that also tells 1 from 1.0 and True from 1 (JSON does)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@ENCODING
@given(records)
def test_canonical_round_trips(record: dict[str, Any]) -> None:
    data = canonical(record)
    assert same(decode(data), record)
    assert is_canonical(data)


@ENCODING
@given(records, st.randoms(use_true_random=False))
def test_canonical_is_independent_of_insertion_order(
    record: dict[str, Any], rng: random.Random
) -> None:
    assert canonical(shuffled(record, rng)) == canonical(record)


@ENCODING
@given(records)
def test_canonical_is_standard_json_with_sorted_keys_and_no_whitespace(
    record: dict[str, Any],
) -> None:
    data = canonical(record)
    assert same(json.loads(data), record)
    data.decode("utf-8")  # valid UTF-8
    assert is_canonical(data)

    def keys_sorted(value: Any) -> bool:
        if isinstance(value, dict):
            return list(value) == sorted(value) and all(keys_sorted(v) for v in value.values())
        if isinstance(value, list):
            return all(keys_sorted(v) for v in value)
        return True

    assert keys_sorted(json.loads(data))
    assert not any(data[i : i + 1] in b" \t\r\n" for i in structure(data))


@ENCODING
@given(records, st.sampled_from([b" ", b"\n", b"\t"]), st.data())
def test_inserted_whitespace_is_never_canonical(
    record: dict[str, Any], blank: bytes, data: st.DataObject
) -> None:
    encoded = canonical(record)
    # between two structural characters whitespace is insignificant JSON, but not canonical
    spots = [i + 1 for i in structure(encoded)]
    at = data.draw(st.sampled_from(spots))
    edited = encoded[:at] + blank + encoded[at:]
    assert not is_canonical(edited)


# ---------------------------------------------------------------------------------------------
# Merkle tree

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(600)]


@SETTINGS
@given(st.integers(1, 600), st.data())
def test_inclusion_proofs_verify(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    leaves = LEAVES[:size]
    root = root_of(leaves)
    proof = inclusion_proof(index, leaves)
    assert len(proof) <= size.bit_length()
    assert verify_inclusion(index, size, leaves[index], proof, root)
    other = data.draw(st.integers(0, size - 1).filter(lambda j: j != index)) if size > 1 else None
    if other is not None:
        assert not verify_inclusion(other, size, leaves[index], proof, root)
        assert not verify_inclusion(index, size, leaves[other], proof, root)


@SETTINGS
@given(st.integers(1, 600), st.data())
def test_consistency_proofs_verify(new_size: int, data: st.DataObject) -> None:
    old_size = data.draw(st.integers(1, new_size))
    leaves = LEAVES[:new_size]
    old_root, new_root = root_of(leaves[:old_size]), root_of(leaves)
    proof = consistency_proof(old_size, leaves)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)
    if old_size < new_size:
        changed = [*leaves]
        spot = data.draw(st.integers(0, old_size - 1))
        changed[spot] = leaf_hash(b"changed")
        bad_proof = consistency_proof(old_size, changed)
        assert not verify_consistency(old_size, new_size, old_root, root_of(changed), bad_proof)
        assert not verify_consistency(
            old_size, new_size, root_of(changed[:old_size]), new_root, proof
        )


@SETTINGS
@given(st.lists(st.binary(max_size=8), max_size=300), st.integers(0, 300))
def test_compact_range_matches_root_of(items: list[bytes], resume_at: int) -> None:
    leaves = [leaf_hash(x) for x in items]
    tree = CompactRange()
    for leaf in leaves[: min(resume_at, len(leaves))]:
        tree.append(leaf)
    tree = CompactRange.from_state(tree.size, tree.state())
    for leaf in leaves[tree.size :]:
        tree.append(leaf)
    assert tree.size == len(leaves)
    assert tree.root() == root_of(leaves)


# ---------------------------------------------------------------------------------------------
# Tampering with a stored log is always detected


@st.composite
def sealed_logs(draw: st.DrawFn) -> tuple[int, tuple[int, ...]]:
    n = draw(st.integers(1, 24))
    seals = draw(st.sets(st.integers(1, n - 1), max_size=3)) if n > 1 else set()
    return n, (*sorted(seals), n)  # the last checkpoint seals the whole log


def check_detected(log: Log, rows: list[tuple[int, bytes]] | None = None) -> Any:
    report = log.verify(rows)
    assert not report.ok
    assert report.problems
    return report


@SETTINGS
@given(sealed_logs(), st.data())
def test_edited_byte_is_detected(shape: tuple[int, tuple[int, ...]], data: st.DataObject) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    i = data.draw(st.integers(0, n - 1), label="record")
    original = log.datas[i]
    at = data.draw(st.integers(0, len(original) - 1), label="byte")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[at]), label="value")
    log.datas[i] = original[:at] + bytes([new]) + original[at + 1 :]
    report = check_detected(log)
    # an edit inside "prev" looks like an edit of the record it pointed to
    assert report.first_bad in (i, max(i - 1, 0))


@SETTINGS
@given(sealed_logs(), st.data())
def test_edited_field_is_detected(shape: tuple[int, tuple[int, ...]], data: st.DataObject) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    i = data.draw(st.integers(0, n - 1), label="record")
    field = data.draw(st.sampled_from(["note", "args", "ts", "type", "v", "extra"]), label="field")
    value = data.draw(json_values, label="value")
    before = decode(log.datas[i])
    assume(field not in before or not same(before[field], value))
    log.datas[i] = edit(log.datas[i], **{field: value})
    report = check_detected(log)
    assert report.first_bad == i


@SETTINGS
@given(sealed_logs(), st.data())
def test_rewritten_chain_is_detected(
    shape: tuple[int, tuple[int, ...]], data: st.DataObject
) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    i = data.draw(st.integers(0, n - 1), label="record")
    log.datas[i] = edit(log.datas[i], note="rewritten")
    log.datas = chain(log.datas)  # every later link recomputed, as an attacker without the key can
    report = check_detected(log)
    assert report.first_bad is not None
    if report.bad_range is None:
        assert report.first_bad == i
    else:
        lo, hi = report.bad_range
        assert report.first_bad == lo <= i < hi
        assert hi in seals


@SETTINGS
@given(sealed_logs(), st.data(), st.booleans())
def test_deleted_record_is_detected(
    shape: tuple[int, tuple[int, ...]], data: st.DataObject, keep_positions: bool
) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    k = data.draw(st.integers(0, n - 1), label="deleted")
    if keep_positions:
        rows = [(p, d) for p, d in log.rows() if p != k]
        report = check_detected(log, rows)
    else:
        del log.datas[k]
        report = check_detected(log)
    assert report.first_bad == k


@SETTINGS
@given(sealed_logs(), st.data())
def test_inserted_copy_is_detected(shape: tuple[int, tuple[int, ...]], data: st.DataObject) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    copy = data.draw(st.integers(0, n - 1), label="copy of")
    at = data.draw(st.integers(0, n), label="inserted at")
    log.datas.insert(at, log.datas[copy])
    report = check_detected(log)
    assert report.first_bad == (at + 1 if copy == at else at)


@SETTINGS
@given(sealed_logs(), st.data())
def test_swapped_records_are_detected(
    shape: tuple[int, tuple[int, ...]], data: st.DataObject
) -> None:
    n, seals = shape
    assume(n >= 2)
    log = Log.build(n, seals)
    i = data.draw(st.integers(0, n - 2), label="i")
    j = data.draw(st.integers(i + 1, n - 1), label="j")
    log.datas[i], log.datas[j] = log.datas[j], log.datas[i]
    report = check_detected(log)
    assert report.first_bad == i


@SETTINGS
@given(sealed_logs(), st.data())
def test_truncation_below_the_last_checkpoint_is_detected(
    shape: tuple[int, tuple[int, ...]], data: st.DataObject
) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    keep = data.draw(st.integers(0, n - 1), label="kept")
    del log.datas[keep:]
    report = check_detected(log)
    assert report.first_bad == keep
    assert report.problems[-1].endswith("records were truncated")


@SETTINGS
@given(sealed_logs(), st.data())
def test_forged_checkpoint_is_detected(
    shape: tuple[int, tuple[int, ...]], data: st.DataObject
) -> None:
    n, seals = shape
    log = Log.build(n, seals)
    how = data.draw(st.sampled_from(["field", "other key", "added"]), label="how")
    target = data.draw(st.integers(0, len(log.cps) - 1), label="checkpoint")
    cp = log.cps[target]
    if how == "field":
        field, value = data.draw(
            st.sampled_from(
                [
                    ("root", "00" * 32),
                    ("head", "11" * 32),
                    ("size", cp.size + 1),
                    ("size", cp.size - 1),
                    ("time_ns", cp.time_ns + 1),
                    ("log_id", "another-log"),
                    ("signature", cp.signature[::-1]),
                ]
            ),
            label="change",
        )
        assume(getattr(cp, field) != value)
        log.cps[target] = replace_cp(cp, **{field: value})
    elif how == "other key":
        log.cps[target] = checkpoint(log.datas, cp.size, key=OTHER_KEY)
    else:
        size = data.draw(st.integers(0, n + 3), label="claimed size")
        log.cps.append(checkpoint(log.datas if size <= n else log.datas * 2, size, key=OTHER_KEY))
    report = check_detected(log)
    assert report.first_bad is None  # the records themselves are intact
    assert any("(forged or tampered)" in p for p in report.problems)

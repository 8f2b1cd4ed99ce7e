"""The canonical record encoding (rf-cjson-1)."""

from __future__ import annotations

import math

import pytest

from ringfence.core.audit.encoding import FORMAT, canonical, decode, is_canonical
from ringfence.errors import InputError


def test_format_name() -> None:
    assert FORMAT == "rf-cjson-1"


def test_keys_sorted_no_whitespace() -> None:
    assert canonical({"b": 1, "a": [1, {"d": None, "c": True}], "A": "x"}) == (
        b'{"A":"x","a":[1,{"c":true,"d":null}],"b":1}'
    )


def test_keys_sorted_by_code_point() -> None:
    assert canonical({"é": 1, "z": 2, "Z": 3, "_": 4}) == '{"Z":3,"_":4,"z":2,"é":1}'.encode()


def test_strings_utf8_with_only_required_escapes() -> None:
    assert canonical({"s": 'é✓𝄞"\\\n\x01/'}) == '{"s":"é✓𝄞\\"\\\\\\n\\u0001/"}'.encode()


def test_numbers() -> None:
    assert canonical({"i": -(2**63), "u": 2**64 - 1, "f": 0.1, "g": 1.0, "z": -0.0}) == (
        b'{"f":0.1,"g":1.0,"i":-9223372036854775808,"u":18446744073709551615,"z":-0.0}'
    )


def test_insertion_order_does_not_matter() -> None:
    assert canonical({"a": 1, "b": {"x": 1, "y": 2}}) == canonical({"b": {"y": 2, "x": 1}, "a": 1})


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"x": math.nan}, "record.x: nan is not allowed (numbers must be finite)"),
        ({"x": [math.inf]}, "record.x[0]: inf is not allowed (numbers must be finite)"),
        ({"x": -math.inf}, "record.x: -inf is not allowed (numbers must be finite)"),
        ({"x": 2**64}, "record.x: integer out of the 64-bit range"),
        ({"x": {"y": -(2**63) - 1}}, "record.x.y: integer out of the 64-bit range"),
        ({"x": "\ud800"}, "record.x: string is not valid UTF-8 (lone surrogate)"),
        (
            {"x": b"raw"},
            "record.x: bytes is not a JSON value (use str, int, float, bool, None, list, dict)",
        ),
        ({1: "x"}, "record: key 1 is not a string"),
    ],
)
def test_refuses_what_the_format_forbids(record: dict[object, object], message: str) -> None:
    with pytest.raises(InputError) as info:
        canonical(record)  # type: ignore[arg-type]
    assert (info.value.code, info.value.message) == ("input.record", message)


def test_decode_round_trip() -> None:
    record = {"a": [1, 2.5, "x", None, True, {"b": []}], "u": 2**64 - 1}
    assert decode(canonical(record)) == record


@pytest.mark.parametrize(
    ("data", "message_start"),
    [
        (b"{", "record is not valid JSON: "),
        (b"", "record is not valid JSON: "),
        (b"\xff", "record is not valid JSON: "),
        (b"[1]", "record is not a JSON object"),
        (b'"s"', "record is not a JSON object"),
        (b"null", "record is not a JSON object"),
    ],
)
def test_decode_errors(data: bytes, message_start: str) -> None:
    with pytest.raises(InputError) as info:
        decode(data)
    assert info.value.code == "input.record"
    assert info.value.message.startswith(message_start)


def test_is_canonical_accepts_canonical_bytes() -> None:
    assert is_canonical(canonical({"b": 1, "a": {"c": [1.5, "é"]}}))
    assert is_canonical(b"{}")


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',  # space after the colon
        b'{"a":1} ',  # trailing space
        b' {"a":1}',
        b'{"a":1,\n"b":2}',
        b'{"b":1,"a":2}',  # keys out of order
        b'{"a":1,"a":1}',  # duplicate key
        b'{"a":"\\u00e9"}',  # needless escape
        b'{"a":"\\/"}',
        b'{"a":1.0e0}',  # non-shortest number
        b'{"a":1E2}',
        b'{"a":01}',  # not JSON at all
        b'{"a":1',
        b"[]",  # not an object
        b'{"a":"\xff"}',  # invalid UTF-8
    ],
)
def test_is_canonical_rejects_edited_json(data: bytes) -> None:
    assert not is_canonical(data)


@pytest.mark.parametrize("data", [b'{"a":"\xff"}', b'{"\xed\xa0\x80":1}', b'{"a":"\\ud800"}'])
def test_decode_refuses_invalid_utf8_inside_strings(data: bytes) -> None:
    with pytest.raises(InputError) as info:
        decode(data)
    assert info.value.code == "input.record"
    assert info.value.message.startswith("record is not valid JSON: ")

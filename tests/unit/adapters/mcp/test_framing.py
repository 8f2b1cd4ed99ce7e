"""Line framing of the gateway's stdio wires (framing.LineSplitter): every way bytes arrive."""

from __future__ import annotations

import pytest

from ringfence.adapters.mcp.framing import HEAD_BYTES, LineSplitter, leading_id

LIMIT = 64


class Seen:
    """What a splitter handed over, in order: ("line", bytes) or ("big", head)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.splitter = LineSplitter(
            LIMIT,
            lambda line: self.items.append(("line", line)),
            lambda head: self.items.append(("big", head)),
        )


def test_one_whole_line_is_handed_over_as_it_came() -> None:
    seen = Seen()
    data = b'{"id": 1}\n'
    seen.splitter.feed(data)
    assert seen.items == [("line", data)]


def test_several_lines_in_one_chunk_and_one_line_in_several() -> None:
    seen = Seen()
    seen.splitter.feed(b'{"a": 1}\n{"b"')
    seen.splitter.feed(b": 2}")
    assert seen.items == [("line", b'{"a": 1}\n')]
    seen.splitter.feed(b'\n{"c": 3}\n')
    assert seen.items == [("line", b'{"a": 1}\n'), ("line", b'{"b": 2}\n'), ("line", b'{"c": 3}\n')]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_the_limit_is_exact_whatever_the_chunks(chunk: int) -> None:
    fits, over = b"x" * LIMIT + b"\n", b"y" * (LIMIT + 1) + b"\n"
    data = fits + over + fits
    seen = Seen()
    for i in range(0, len(data), chunk):
        seen.splitter.feed(data[i : i + chunk])
    assert [kind for kind, _ in seen.items] == ["line", "big", "line"]
    assert seen.items[0][1] == fits and seen.items[2][1] == fits
    assert seen.items[1][1].startswith(b"y")


def test_an_oversized_line_is_dropped_as_it_arrives_and_its_head_kept() -> None:
    seen = Seen()
    head = b'{"jsonrpc": "2.0", "id": "rf-7", "result": {"text": "'
    seen.splitter.feed(head + b"z" * 10_000)  # no newline yet: nothing is held past the limit
    assert seen.items == []
    assert len(seen.splitter._buf) == 0
    seen.splitter.feed(b"z" * 10_000 + b'"}}\n{"id": 2}\n')
    assert seen.items[0] == ("big", (head + b"z" * 10_000)[:HEAD_BYTES])
    assert seen.items[1] == ("line", b'{"id": 2}\n')


def test_the_head_of_an_oversized_line_names_its_id() -> None:
    seen = Seen()
    seen.splitter.feed(b'{"jsonrpc":"2.0","id":"rf-9","result":{"t":"' + b"q" * 500 + b'"}}\n')
    assert seen.items[0][0] == "big"
    assert leading_id(seen.items[0][1]) == "rf-9"


def test_the_end_hands_over_a_last_line_without_its_newline() -> None:
    seen = Seen()
    seen.splitter.feed(b'{"a": 1}\n{"b": 2}')
    seen.splitter.end()
    assert seen.items == [("line", b'{"a": 1}\n'), ("line", b'{"b": 2}')]


def test_the_end_in_the_middle_of_an_oversized_line_reports_it() -> None:
    seen = Seen()
    seen.splitter.feed(b'{"id": 5, "x": "' + b"w" * 200)
    seen.splitter.end()
    assert [kind for kind, _ in seen.items] == ["big"]
    assert leading_id(seen.items[0][1]) == 5


def test_blank_input_hands_over_nothing_at_the_end() -> None:
    seen = Seen()
    seen.splitter.feed(b"   ")
    seen.splitter.end()
    assert seen.items == []

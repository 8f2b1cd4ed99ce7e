"""plain_tool_result against the SDK's own shaping (serialize_server_result), every version.

The gateway takes this shortcut for the answers nearly every tool gives; it is only right if,
whenever it answers at all, it answers exactly what the SDK's types would — which is what
these generated results check, including the shapes it must leave to the SDK.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_types import methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from ringfence.adapters.mcp.shapes import plain_tool_result

VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)
SERVER_INFO = "io.modelcontextprotocol/serverInfo"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
text_block = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=12)})
odd_block = st.one_of(
    text_block.map(lambda b: {**b, "annotations": {"priority": 0.5}}),
    text_block.map(lambda b: {**b, "text": None}),
    st.just({"type": "image", "data": "aGk=", "mimeType": "image/png"}),
    st.just({"type": "text"}),
    json_values,
)
meta = st.one_of(
    st.just({SERVER_INFO: {"name": "up", "version": "1"}}),
    st.just({SERVER_INFO: {"name": "up"}}),  # not a valid stamp: the SDK refuses it
    st.just({}),
    st.dictionaries(st.text(max_size=5), json_values, max_size=2),
    json_values,
)
results = st.fixed_dictionaries(
    {},
    optional={
        "content": st.one_of(
            st.lists(text_block, max_size=3), st.lists(odd_block, max_size=2), json_values
        ),
        "isError": st.one_of(st.booleans(), json_values),
        "structuredContent": st.one_of(
            st.dictionaries(st.text(max_size=5), json_values, max_size=3), json_values
        ),
        "resultType": st.one_of(st.just("complete"), st.just("input_required"), json_values),
        "_meta": meta,
        "extra": json_values,
    },
)


def sdk(result: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The SDK's shaping, with its own _meta keys left out as the gateway leaves them out."""
    try:
        shaped: dict[str, Any] = methods.serialize_server_result("tools/call", version, result)
    except ValidationError:
        return None
    meta = shaped.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith("io.modelcontextprotocol/")}
        if kept:
            shaped["_meta"] = kept
        else:
            del shaped["_meta"]
    return shaped


@settings(max_examples=400, deadline=None)
@given(result=results, version=st.sampled_from(VERSIONS))
def test_a_plain_result_is_exactly_what_the_sdk_makes_of_it(
    result: dict[str, Any], version: str
) -> None:
    plain = plain_tool_result(result, version)
    if plain is not None:
        assert plain == sdk(result, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_usual_answers_take_the_shortcut(version: str) -> None:
    stamp = {SERVER_INFO: {"name": "up", "version": "1"}}
    usual = [
        {"content": [{"type": "text", "text": "hello"}], "isError": False},
        {"content": [], "structuredContent": {"a": [1, None]}, "_meta": stamp},
        {"content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
    ]
    for result in usual:
        if version in MODERN_PROTOCOL_VERSIONS:
            result = {**result, "resultType": "complete"}
        assert plain_tool_result(result, version) is not None
        assert plain_tool_result(result, version) == sdk(result, version)


@pytest.mark.parametrize(
    "result",
    [
        {"content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]},
        {"content": [{"type": "text", "text": "a", "annotations": {"audience": ["user"]}}]},
        {"content": "text"},
        {"content": [], "isError": "no"},
        {"content": [], "_meta": {"mine": 1}},
        {"content": [], "_meta": {}},
        {"content": [], "extra": 1},
        {"content": [], "structuredContent": [1]},
    ],
)
def test_anything_else_is_left_to_the_sdk(result: dict[str, Any]) -> None:
    for version in VERSIONS:
        candidate = (
            {**result, "resultType": "complete"} if version in MODERN_PROTOCOL_VERSIONS else result
        )
        assert plain_tool_result(candidate, version) is None


def test_a_modern_result_without_its_type_is_left_to_the_sdk() -> None:
    (modern,) = MODERN_PROTOCOL_VERSIONS
    assert plain_tool_result({"content": []}, modern) is None
    assert plain_tool_result({"content": [], "resultType": "input_required"}, modern) is None

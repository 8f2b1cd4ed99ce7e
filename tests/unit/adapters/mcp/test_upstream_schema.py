"""A server's input schema is hostile input: checked without fetching, code or backtracking."""

from __future__ import annotations

import socket
from typing import Any

import mcp_types as types
import pytest

from ringfence.adapters.mcp.catalog import _validator


def checker(schema: dict[str, Any]) -> Any:
    validate = _validator(types.Tool(name="t", input_schema=schema))
    assert validate is not None
    return validate


def refusal(schema: dict[str, Any], args: Any = None) -> str:
    with pytest.raises(ValueError) as info:
        checker(schema)({} if args is None else args)
    return str(info.value)


def test_valid_arguments_pass_and_invalid_ones_name_the_place() -> None:
    validate = checker(
        {
            "type": "object",
            "properties": {"n": {"type": "integer"}, "tags": {"type": "array"}},
            "required": ["n"],
        }
    )
    validate({"n": 1, "tags": []})
    assert refusal({"type": "object", "required": ["n"]}) == '"n" is a required property'
    message = refusal({"properties": {"n": {"type": "integer"}}}, {"n": "x"})
    assert message == '"x" is not of type "integer" (at n)'


@pytest.mark.parametrize(
    "ref",
    [
        "http://169.254.169.254/latest/meta-data/iam",
        "https://schemas.example/evil.json",
        "file:///etc/passwd",
        "urn:anything",
    ],
)
def test_references_outside_the_schema_are_refused_never_fetched(
    ref: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*_: Any, **__: Any) -> Any:
        raise AssertionError("the schema check tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    message = refusal({"$ref": ref})
    assert message.startswith("the tool's input schema cannot be used")
    assert "references are not fetched" in message


def test_references_inside_the_schema_work_even_recursively() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    }
    validate = checker(tree)
    validate({"kids": [{"kids": [{"kids": []}]}]})
    assert "not of type" in refusal(tree, {"kids": [{"kids": 5}]})


@pytest.mark.parametrize("pattern", ["(?=a)b", "(a)\\1", "(?<!x)y"])
def test_patterns_needing_backtracking_make_the_schema_unusable(pattern: str) -> None:
    message = refusal({"properties": {"s": {"type": "string", "pattern": pattern}}}, {"s": "b"})
    assert message.startswith("the tool's input schema cannot be used")


def test_a_linear_pattern_is_checked() -> None:
    validate = checker({"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}})
    validate({"s": "a" * 50})  # the classic catastrophic pattern is linear here
    assert "does not match" in refusal(
        {"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}, {"s": "a" * 5000 + "!"}
    )


@pytest.mark.parametrize("schema", [{"type": 5}, {"minimum": "x"}, {"required": "n"}])
def test_a_malformed_schema_refuses_every_call(schema: dict[str, Any]) -> None:
    assert refusal(schema).startswith("the tool's input schema cannot be used")


def test_no_schema_means_no_check() -> None:
    assert _validator(types.Tool(name="t", input_schema={})) is None

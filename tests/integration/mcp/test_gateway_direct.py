"""The direct path (fastpath.py, pipe.py) answers exactly as the SDK's path does.

The same requests go through two gateways over raw stdio, one with ``direct_calls: false``
(every request through the SDK server and the SDK client) and one with the default: every
frame the client gets must be the same (decision and approval ids masked), and the upstream
must receive the same calls.  Both protocol eras: the 2025-11-25 handshake, and 2026-07-28
requests that carry their own envelope.  The recording server shows which path carried each
call: the direct lane numbers its requests ``rf-1``, ``rf-2``, …
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from .conftest import audit_records, by_decision, of_type, raw_gateway
from .test_gateway_playbook import received, recording_setup

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "parity", "version": "1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
IDS = re.compile(r"\b(?:d|ap)-[0-9a-z-]{6,}")


def calls(era: str) -> list[dict[str, Any]]:
    """Requests covering every way a tools/call can end."""

    def call(name: str, arguments: Any, **meta: Any) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        envelope = {**(ENVELOPE if era == MODERN else {}), **meta}
        if envelope:
            params["_meta"] = envelope
        return params

    return [
        call("rec__read_note", {"n": 1}),  # allowed: the server's result
        call("rec__read_note", {"n": 2}),
        call("rec__delete_note", {"n": 1}),  # denied by a rule
        call("rec__transfer", {"amount": 5, "to": "bob"}),  # approval pending
        call("rec__read_note", {"n": "one"}),  # breaks the server's schema
        call("rec__nothing", {}),  # no such tool
        call("rec__read_note", {"n": 3}, progressToken="p-1"),  # progress: the SDK's path
        call("rec__read_note", {"n": 4, "extra": "x" * 40}),
    ]


async def run(tmp_path: Path, era: str, direct: bool) -> tuple[list[str], list[Any], list[Any]]:
    setup, log = recording_setup(tmp_path)
    setup.options["direct_calls"] = direct
    setup.write()
    frames: list[str] = []
    async with raw_gateway(setup) as gw:
        if era == MODERN:
            await gw.request(0, "server/discover", {"_meta": ENVELOPE})
        else:
            await gw.initialize(era)
        for i, params in enumerate(calls(era), start=1):
            for message in await gw.request(i, "tools/call", params):
                frames.append(IDS.sub("<id>", json.dumps(message, sort_keys=True)))
    upstream = [m for m in received(log) if m.get("method") == "tools/call"]
    sent = [(m["params"]["name"], m["params"].get("arguments")) for m in upstream]
    return frames, sent, [m["id"] for m in upstream]


@pytest.mark.parametrize("era", ["2025-11-25", MODERN])
async def test_direct_calls_answer_as_the_sdk_path_does(tmp_path: Path, era: str) -> None:
    sdk_frames, sdk_sent, sdk_ids = await run(tmp_path / "sdk", era, direct=False)
    frames, sent, ids = await run(tmp_path / "direct", era, direct=True)
    assert frames == sdk_frames
    assert any("note 1: hello" in frame for frame in frames), frames  # the server answered
    assert sent == sdk_sent
    assert [name for name, _ in sent] == ["read_note"] * 4  # the refused never got there
    # Which path carried each call: the SDK numbers its requests, the lane names them.
    assert not any(isinstance(i, str) for i in sdk_ids)
    assert [isinstance(i, str) and i.startswith("rf-") for i in ids] == [True, True, False, True]


async def test_a_call_before_the_handshake_is_left_to_the_sdk(tmp_path: Path) -> None:
    setup, log = recording_setup(tmp_path)
    async with raw_gateway(setup) as gw:
        note = {"name": "rec__read_note", "arguments": {"n": 1}}
        (early,) = await gw.request(1, "tools/call", note)
        await gw.initialize()
        (late,) = await gw.request(2, "tools/call", note)
    assert "error" in early  # the SDK's answer to a request before initialize
    assert "result" in late
    assert [m["id"] for m in received(log) if m.get("method") == "tools/call"] == ["rf-1"]


async def test_a_direct_call_is_cancelled_upstream_and_gets_no_answer(tmp_path: Path) -> None:
    setup, log = recording_setup(tmp_path)
    async with raw_gateway(setup) as gw:
        await gw.initialize()
        await gw.send(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "rec__hang", "arguments": {}},
            }
        )
        for _ in range(200):
            if any(m.get("method") == "tools/call" for m in received(log)):
                break
            await anyio.sleep(0.02)
        await gw.send(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
        )
        assert await gw.request(8, "ping") == [{"jsonrpc": "2.0", "id": 8, "result": {}}]
    upstream = received(log)
    (hang,) = [m for m in upstream if m.get("method") == "tools/call"]
    (cancel,) = [m for m in upstream if m.get("method") == "notifications/cancelled"]
    assert hang["id"] == cancel["params"]["requestId"] == "rf-1"
    # The call was allowed and sent, so its end is on record: cancelled, not lost.
    records = audit_records(setup.root / "data")
    (decision,) = [r for r in of_type(records, "decision") if r["tool"] == "rec__hang"]
    (outcome,) = by_decision(records)[decision["decision_id"]][1:]
    assert (outcome["type"], outcome["status"]) == ("outcome", "error")
    assert "cancelled" in outcome["error"]


def test_direct_calls_is_a_boolean_in_the_config(tmp_path: Path) -> None:
    from ringfence.adapters.mcp.config import config_from_text
    from ringfence.errors import ConfigError

    text = "policy: p.yaml\nservers: {a: {command: x}}\ndirect_calls: VALUE\n"
    assert config_from_text(text.replace("VALUE", "false")).direct_calls is False
    assert config_from_text("policy: p.yaml\nservers: {a: {command: x}}\n").direct_calls
    with pytest.raises(ConfigError, match="direct_calls"):
        config_from_text(text.replace("VALUE", '"yes"'))


@pytest.mark.parametrize("era", ["2025-11-25", MODERN])
async def test_an_upstream_held_to_the_handshake_era_serves_either_client(
    tmp_path: Path, era: str
) -> None:
    setup, log = recording_setup(tmp_path)
    setup.servers["rec"]["protocol"] = "handshake"
    setup.write()
    async with raw_gateway(setup) as gw:
        if era == MODERN:
            await gw.request(0, "server/discover", {"_meta": ENVELOPE})
        else:
            await gw.initialize(era)
        params = calls(era)[0]
        (answer,) = await gw.request(1, "tools/call", params)
    assert answer["result"]["content"] == [{"type": "text", "text": "note 1: hello"}]
    assert ("resultType" in answer["result"]) is (era == MODERN)
    upstream = received(log)
    assert [
        m["method"] for m in upstream if m.get("method") in ("initialize", "server/discover")
    ] == ["initialize"]
    assert [m["id"] for m in upstream if m.get("method") == "tools/call"] == ["rf-1"]

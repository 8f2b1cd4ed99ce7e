"""Playbook tests: the exact JSON-RPC messages a client sees, and what the upstream receives.

The gateway runs as a subprocess spoken to in raw newline-delimited JSON-RPC (legacy era:
`initialize` with protocolVersion 2025-11-25, then `notifications/initialized`), with no SDK on
the client side.  Behind it, fixtures/recording_server.py writes down every message it gets,
so each test can assert both sides: the client's message sequence, and that refused calls
never reached the server while allowed ones did, in order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from .conftest import GatewaySetup, audit_records, fixture_entry, of_type, raw_gateway

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

DENY_DELETE = "notes are kept"
NEEDS_HUMAN = "money moves need a human"
RULES: list[dict[str, Any]] = [
    {"id": "notes-read", "effect": "allow", "tool": "rec__read_note"},
    {"id": "notes-keep", "effect": "deny", "tool": "rec__delete_note", "reason": DENY_DELETE},
    {
        "id": "money-approval",
        "effect": "require_approval",
        "tool": "rec__transfer",
        "reason": NEEDS_HUMAN,
    },
    {"id": "misc", "effect": "allow", "tool": ["rec__poisoned", "rec__crash", "rec__hang"]},
]
DECISION = re.compile(r"\(decision (d-[0-9a-z-]+)\)$")


def recording_setup(tmp_path: Path, variant: str = "original") -> tuple[GatewaySetup, Path]:
    log = tmp_path / "received.jsonl"
    entry = fixture_entry(
        "recording_server.py", env={"RECORDING_LOG": str(log), "RECORDING_VARIANT": variant}
    )
    return GatewaySetup(tmp_path / "gateway", servers={"rec": entry}, rules=RULES), log


def received(log: Path) -> list[dict[str, Any]]:
    """What the recording server was sent, one entry per message."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def tool_calls(log: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["params"]["name"], m["params"].get("arguments", {}))
        for m in received(log)
        if m.get("method") == "tools/call"
    ]


def summary(message: dict[str, Any]) -> tuple[Any, ...]:
    """(id, "error", code, message) or (id, "result", isError, text) with decision ids masked."""
    if "error" in message:
        error = message["error"]
        return (message.get("id"), "error", error["code"], error["message"])
    result = message["result"]
    if "content" in result:
        text = result["content"][0]["text"]
        found = DECISION.search(text)
        if found is not None:
            # The id in the text is the one in _meta, and the one in the audit log.
            assert result["_meta"]["io.ringfence/decision"]["decision_id"] == found[1]
            text = text[: found.start()] + "(decision *)"
        text = re.sub(r"\bap-[0-9a-f]+", "ap-*", text)
        return (message["id"], "result", result["isError"], text)
    if "tools" in result:
        return (message["id"], "result", [t["name"] for t in result["tools"]])
    return (message["id"], "result", sorted(result))


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


async def test_playbook_allow_deny_approval_quarantine_crash(tmp_path: Path) -> None:
    setup, log = recording_setup(tmp_path)
    async with raw_gateway(setup) as gw:
        init = await gw.initialize()
        assert init["id"] == 0
        assert init["result"]["protocolVersion"] == "2025-11-25"
        assert init["result"]["serverInfo"]["name"] == "ringfence-gateway"
        seen = []
        seen += await gw.request(1, "tools/list", {})
        seen += await gw.request(2, "tools/call", call("rec__read_note", {"n": 1}))
        seen += await gw.request(3, "tools/call", call("rec__delete_note", {"n": 1}))
        seen += await gw.request(4, "tools/call", call("rec__transfer", {"amount": 100}))
        seen += await gw.request(5, "tools/call", call("rec__poisoned", {}))
        seen += await gw.request(6, "tools/call", call("rec__crash", {}))
        seen += await gw.request(7, "tools/call", call("rec__read_note", {"n": 2}))
        seen += await gw.request(8, "no/such/method", {})
        seen += await gw.request(9, "ping")

    assert [summary(m) for m in seen] == [
        (1, "result", ["rec__crash", "rec__hang", "rec__read_note", "rec__transfer"]),
        (2, "result", False, "note 1: hello"),
        (3, "result", True, f"Ringfence denied this call: {DENY_DELETE} (decision *)"),
        (
            4,
            "result",
            True,
            f"Ringfence is waiting for human approval of this call: {NEEDS_HUMAN}; "
            "not approved by ringfence: approval pending: request ap-*; a reviewer answers "
            "with 'ringfence approvals approve ap-*' (or deny); retry the same call once it "
            "is approved (decision *)",
        ),
        (
            5,
            "result",
            True,
            "Ringfence denied this call: tool is quarantined: poisoning scan: "
            "instruction.concealment, instruction.precondition, instruction.tag, "
            "reference.secret_file (decision *)",
        ),
        (
            6,
            "error",
            -32603,
            "MCP server 'rec' closed the connection (crashed?); it is being restarted",
        ),
        (7, "result", False, "note 2: hello"),
        (8, "error", -32601, "Method not found"),
        (9, "result", []),
    ]
    meta = {m["id"]: m["result"]["_meta"]["io.ringfence/decision"] for m in seen[2:5]}
    assert [(meta[i]["effect"], meta[i]["rules"]) for i in (3, 4, 5)] == [
        ("deny", ["notes-keep"]),
        ("deny", ["money-approval", "ringfence:approval"]),
        ("deny", ["ringfence:quarantine"]),
    ]
    assert seen[5]["error"]["data"]["decision_id"].startswith("d-")

    # The upstream got exactly the allowed calls, in order (the crash restarted it in between).
    assert tool_calls(log) == [("read_note", {"n": 1}), ("crash", {}), ("read_note", {"n": 2})]
    everything = json.dumps(received(log))
    for refused in ("delete_note", "transfer", "poisoned"):
        assert f'"name": "{refused}"' not in everything

    records = audit_records(setup.data)
    approval = of_type(records, "approval")
    assert [(a["tool"], a["approved"], a["approver"]) for a in approval] == [
        ("rec__transfer", False, "ringfence")
    ]
    assert approval[0]["note"].startswith("approval pending: request ap-")
    assert approval[0]["decision_id"] == meta[4]["decision_id"]


async def test_playbook_cancellation_is_passed_upstream(tmp_path: Path) -> None:
    setup, log = recording_setup(tmp_path)
    async with raw_gateway(setup) as gw:
        await gw.initialize()
        await gw.send(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call("rec__hang", {})}
        )
        for _ in range(200):  # until the call has reached the server
            if tool_calls(log):
                break
            await anyio.sleep(0.02)
        await gw.send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": 1, "reason": "the user gave up"},
            }
        )
        for _ in range(200):  # until the cancellation has reached the server
            if any(m.get("method") == "notifications/cancelled" for m in received(log)):
                break
            await anyio.sleep(0.02)
        # A cancelled request gets no response: the next message is the ping's.
        assert [summary(m) for m in await gw.request(2, "ping")] == [(2, "result", [])]

    upstream = received(log)
    (hang,) = [m for m in upstream if m.get("method") == "tools/call"]
    (cancel,) = [m for m in upstream if m.get("method") == "notifications/cancelled"]
    assert hang["params"]["name"] == "hang"
    assert cancel["params"]["requestId"] == hang["id"]


async def test_playbook_rug_pull_quarantine(tmp_path: Path) -> None:
    setup, log = recording_setup(tmp_path)
    async with raw_gateway(setup) as gw:
        await gw.initialize()
        (listed,) = await gw.request(1, "tools/list", {})
    assert "rec__read_note" in summary(listed)[2]

    setup.servers["rec"]["env"]["RECORDING_VARIANT"] = "changed"  # read_note's description
    setup.write()
    async with raw_gateway(setup) as gw:
        await gw.initialize()
        seen = await gw.request(1, "tools/list", {})
        seen += await gw.request(2, "tools/call", call("rec__read_note", {"n": 1}))
    assert summary(seen[0]) == (1, "result", ["rec__crash", "rec__hang", "rec__transfer"])
    assert len(seen) == 2
    assert seen[1]["id"] == 2
    assert seen[1]["result"]["isError"] is True
    assert seen[1]["result"]["_meta"]["io.ringfence/decision"]["rules"] == ["ringfence:quarantine"]
    assert seen[1]["result"]["content"][0]["text"].startswith(
        "Ringfence denied this call: tool is quarantined: definition changed since approval "
        "(sha256:"
    )
    assert tool_calls(log) == []  # neither run forwarded a call


async def test_playbook_malformed_lines_get_json_rpc_errors(tmp_path: Path) -> None:
    setup, log = recording_setup(tmp_path)
    async with raw_gateway(setup) as gw:
        await gw.initialize()
        await gw.send_line(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"')  # cut short
        await gw.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": "oops"})
        seen = await gw.request(3, "ping")
    # The gateway keeps answering ...
    assert summary(seen[-1]) == (3, "result", [])
    # ... and, per JSON-RPC 2.0, a line that is not JSON is a Parse error (id null) and a
    # request whose params are not an object an Invalid Request (id null when it cannot be
    # read from the request); a client waiting on id 2 otherwise waits forever.
    errors = [(m.get("id"), m["error"]["code"]) for m in seen if "error" in m]
    assert errors[:1] == [(None, -32700)], f"no Parse error for a malformed line; got {seen}"
    assert errors[1:] in ([(2, -32600)], [(None, -32600)], [(2, -32602)]), seen
    assert tool_calls(log) == []

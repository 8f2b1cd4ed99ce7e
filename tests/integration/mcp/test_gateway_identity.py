"""`ringfence gateway run` with `identity: {verify: true}`, as a real subprocess.

The test makes the identity registry in the gateway's data folder (the project's SQLite
registry and Authority, as `ringfence identity create/issue/delegate` do), then drives the
gateway with the official SDK client over Streamable HTTP (`Authorization: Bearer
<credential>`) and over stdio (the credential in `RINGFENCE_CREDENTIAL`), in front of the real
mcp-server-time.  Revocations are made from this process while a client is connected: the
gateway process sees them through the shared registry on the next request.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ringfence.core.identity.token import parse
from ringfence.runtime.authority import Authority
from ringfence.stores.identity import MemoryIdentityRegistry, SQLiteIdentityRegistry

from .conftest import (
    CALL_TIMEOUT,
    GatewaySetup,
    audit_records,
    background,
    free_port,
    names,
    of_type,
    server_entry,
    text_of,
)
from .servers import time_server

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TD = "corp.example"
AUDIENCE = "mcp-gw"
PLANNER = f"spiffe://{TD}/agent/planner"
RESEARCHER = f"spiffe://{TD}/agent/researcher"
GET_TIME = "time__get_current_time"
CONVERT = "time__convert_time"
REFUSED = -32004


def identity_setup(tmp_path: Path, port: int | None = None) -> tuple[GatewaySetup, Authority]:
    options: dict[str, Any] = {
        "identity": {"agent": "unverified", "verify": True, "audience": AUDIENCE}
    }
    if port is not None:
        options["listen"] = {"host": "127.0.0.1", "port": port}
    setup = GatewaySetup(
        tmp_path,
        servers={"time": server_entry(time_server(), trusted=True)},
        rules=[{"id": "time", "effect": "allow", "tool": [GET_TIME, CONVERT]}],
        options=options,
    )
    registry = SQLiteIdentityRegistry(setup.data / "identity")
    authority = Authority(registry, trust_domain=TD)
    authority.create_agent("planner")
    authority.create_agent("researcher")
    return setup, authority


def root(authority: Authority, **kw: Any) -> str:
    kw.setdefault("tools", ("time__*",))
    kw.setdefault("audience", (AUDIENCE,))
    kw.setdefault("user", "alice")
    kw.setdefault("delegable", 1)
    return authority.issue("planner", **kw)


def jti(credential: str) -> str:
    return parse(credential.rsplit("~", 1)[-1]).claims.jti


def tampered(credential: str) -> str:
    header, payload, signature = credential.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user"] = "mallory"
    data = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{data}.{signature}"


def refused_at_connect(authority: Authority) -> dict[str, tuple[str | None, str]]:
    earlier = Authority(
        authority.registry, trust_domain=TD, clock=lambda: time.time_ns() - 7200 * 10**9
    )
    forger = Authority(MemoryIdentityRegistry(), trust_domain=TD)
    forger.create_agent("planner")
    return {
        "missing": (None, "credential.missing"),
        "expired": (root(authority=earlier), "credential.expired"),
        "wrong audience": (root(authority, audience=("other",)), "credential.wrong_audience"),
        "tampered": (tampered(root(authority)), "credential.bad_signature"),
        "forged": (
            forger.issue("planner", tools=("time__*",), audience=(AUDIENCE,)),
            "credential.unknown_key",
        ),
    }


@asynccontextmanager
async def http_client(url: str, credential: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {credential}"} if credential is not None else None
    async with create_mcp_http_client(headers=headers) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, cache=None, read_timeout_seconds=CALL_TIMEOUT) as client:
            yield client


@asynccontextmanager
async def stdio_gateway(setup: GatewaySetup, credential: str | None) -> AsyncIterator[Client]:
    env = {"RINGFENCE_CREDENTIAL": credential} if credential is not None else {}
    command = setup.command()
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=setup.root, env=env)
    with setup.log.open("a", encoding="utf-8") as errlog:
        async with Client(
            stdio_client(params, errlog=errlog), cache=None, read_timeout_seconds=CALL_TIMEOUT
        ) as client:
            yield client


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def identity_denies(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(tool, code, agent) of every decision refused for its credential."""
    return [
        (d["tool"], d["reasons"][0].split(":", 1)[0], d["agent"])
        for d in of_type(records, "decision")
        if d["rules"] == ["ringfence:identity"]
    ]


async def test_http_credentials_verified_on_every_request(tmp_path: Path) -> None:
    port = free_port()
    setup, authority = identity_setup(tmp_path, port)
    url = f"http://127.0.0.1:{port}/mcp"
    planner = root(authority)
    researcher = authority.delegate(planner, "researcher", tools=(GET_TIME,))
    bad = refused_at_connect(authority)
    with background(setup.command("--http"), port, setup.log) as gateway:
        async with http_client(url, planner) as client:
            assert names(await client.list_tools()) == {GET_TIME, CONVERT}
            now = await client.call_tool(GET_TIME, {"timezone": "UTC"})
            assert now.is_error is False and now.structured_content is not None

        async with http_client(url, researcher) as client:
            assert names(await client.list_tools()) == {GET_TIME}
            assert (await client.call_tool(GET_TIME, {"timezone": "UTC"})).is_error is False
            outside = await client.call_tool(
                CONVERT, {"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"}
            )
            assert outside.is_error is True
            assert "credential.tool_not_in_scope" in text_of(outside)

        for name, (credential, code) in bad.items():
            with pytest.raises(BaseException) as refused:
                async with http_client(url, credential):
                    pass
            errors = [e for e in leaves(refused.value) if isinstance(e, MCPError)]
            assert errors and errors[0].code == REFUSED, (name, refused.value)
            assert errors[0].message.startswith(f"{code}: "), (name, errors[0].message)

        async with http_client(url, planner) as client:
            assert (await client.call_tool(GET_TIME, {"timezone": "UTC"})).is_error is False
            authority.revoke_credential(planner, reason="leaked")  # from this process
            with pytest.raises(MCPError) as revoked:
                await client.call_tool(GET_TIME, {"timezone": "UTC"})
            assert revoked.value.code == REFUSED
            assert revoked.value.message.startswith("credential.revoked: ")
        gateway.stop()

    records = audit_records(setup.data)
    decisions = of_type(records, "decision")
    allowed = [d for d in decisions if d["effect"] == "allow"]
    assert [(d["agent"], d["user"], d["credential"]) for d in allowed] == [
        (PLANNER, "alice", {"id": jti(planner), "chain": []}),
        (RESEARCHER, "alice", {"id": jti(researcher), "chain": [jti(planner)]}),
        (PLANNER, "alice", {"id": jti(planner), "chain": []}),
    ]
    (scope,) = [d for d in decisions if d["tool"] == CONVERT]
    assert (scope["agent"], scope["delegation"], scope["effect"]) == (
        RESEARCHER,
        [PLANNER],
        "deny",
    )
    assert scope["credential"] == {"id": jti(researcher), "chain": [jti(planner)]}
    assert scope["reasons"][0].startswith("credential.tool_not_in_scope: ")
    denies = identity_denies(records)
    for _, code in bad.values():  # each refused at connect, named as the configured identity
        assert ("initialize", code, "unverified") in denies
    assert (GET_TIME, "credential.revoked", "unverified") in denies
    revoked_record = next(d for d in decisions if d["reasons"][0].startswith("credential.revoked"))
    assert revoked_record["kind"] == "tool_call" and revoked_record["credential"] is None
    outcomes = of_type(records, "outcome")
    assert [o["agent"] for o in outcomes] == [PLANNER, RESEARCHER, PLANNER]


async def test_stdio_credential_from_the_environment(tmp_path: Path) -> None:
    setup, authority = identity_setup(tmp_path)
    planner = root(authority)
    researcher = authority.delegate(planner, "researcher", tools=(GET_TIME,))

    async with stdio_gateway(setup, researcher) as client:
        assert names(await client.list_tools()) == {GET_TIME}
        assert (await client.call_tool(GET_TIME, {"timezone": "UTC"})).is_error is False
        outside = await client.call_tool(
            CONVERT, {"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"}
        )
        assert outside.is_error is True and "credential.tool_not_in_scope" in text_of(outside)
        authority.revoke_agent("planner")  # the delegate's chain goes with it
        with pytest.raises(MCPError) as revoked:  # the same error a revoked HTTP client gets
            await client.call_tool(GET_TIME, {"timezone": "UTC"})
        assert revoked.value.code == REFUSED
        assert revoked.value.message.startswith("credential.agent_revoked: ")
        with pytest.raises(MCPError) as unlisted:
            await client.list_tools()
        assert unlisted.value.code == REFUSED
        assert unlisted.value.message.startswith("credential.agent_revoked: ")

    async with stdio_gateway(setup, None) as client:
        with pytest.raises(MCPError) as missing:
            await client.list_tools()
        assert missing.value.code == REFUSED
        assert missing.value.message.startswith("credential.missing: ")
        with pytest.raises(MCPError) as missing_call:
            await client.call_tool(GET_TIME, {"timezone": "UTC"})
        assert missing_call.value.code == REFUSED
        assert missing_call.value.message.startswith("credential.missing: ")

    records = audit_records(setup.data)
    decisions = of_type(records, "decision")
    allowed, scope = decisions[:2]
    assert (allowed["effect"], allowed["agent"], allowed["delegation"]) == (
        "allow",
        RESEARCHER,
        [PLANNER],
    )
    assert allowed["credential"] == {"id": jti(researcher), "chain": [jti(planner)]}
    assert (scope["tool"], scope["effect"], scope["credential"]) == (
        CONVERT,
        "deny",
        allowed["credential"],
    )
    assert identity_denies(records) == [
        (CONVERT, "credential.tool_not_in_scope", RESEARCHER),
        (GET_TIME, "credential.agent_revoked", "unverified"),
        ("tools/list", "credential.agent_revoked", "unverified"),
        ("tools/list", "credential.missing", "unverified"),
        (GET_TIME, "credential.missing", "unverified"),
    ]
    sessions = {d["session"] for d in decisions}
    assert len(sessions) == 2 and None not in sessions  # one per stdio gateway run

"""A client's requests on their way to the Guard, and the ones that are not tool calls.

:class:`Connection` is who a client acts as; :class:`Requests`, a part of
:class:`~ringfence.adapters.mcp.gateway.Gateway` (its base class, kept in its own module for
size), turns a request on a connection into an :class:`~ringfence.core.action.Action`, keeps
secrets out of upstream errors, and serves resources and prompts: the listings
(``resources/list``, ``resources/templates/list``, ``prompts/list``) and the two requests that
reach a server (``resources/read``, ``prompts/get``).  Each of those is checked by the Guard as
an ``mcp_request`` action named ``<server>__resources/read`` or ``<server>__prompts/get``; a
listing shows only the servers whose request the policy could allow.  Tool calls are
:mod:`.gateway`'s.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import mcp_types as types
import msgspec
from mcp import Client, MCPError

from ringfence.adapters.mcp import secrets as sec
from ringfence.adapters.mcp.catalog import Catalog
from ringfence.adapters.mcp.config import SEPARATOR, GatewayConfig, Identity
from ringfence.adapters.mcp.recorder import Recorder
from ringfence.adapters.mcp.results import (
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    RESOURCE_NOT_FOUND,
    UNKNOWN_TOOL_RULE,
    GatewayError,
    credential_refusal,
    denied_text,
    rpc_error,
    upstream_error,
    wire,
)
from ringfence.adapters.mcp.upstream import Upstream, UpstreamUnavailable, collect_pages
from ringfence.core.action import Action, ActionKind, Resource
from ringfence.errors import IdentityError
from ringfence.runtime.broker import SECRET_LABEL, SECRET_RULE, SecretBroker, destinations
from ringfence.runtime.guard import Guard

__all__ = ["Connection", "Requests"]

log = logging.getLogger("ringfence.gateway")
R = TypeVar("R", types.ReadResourceResult, types.GetPromptResult)


@dataclass(frozen=True)
class Connection:
    """One client connection: who it acts as, and the session its actions belong to.

    ``credential``: what the client presents (with a credential verifier): its text, or a
    function that reads it again for every request (a stdio client's, from a file that may
    be renewed).  Every check the Guard makes for the connection verifies it.
    """

    identity: Identity
    session: str = field(default_factory=lambda: f"mcp-{uuid.uuid4().hex[:16]}")
    credential: str | Callable[[], str | None] | None = field(default=None, repr=False)

    def presented(self) -> str | None:
        """The credential the client presents now (None: none)."""
        credential = self.credential
        return credential() if callable(credential) else credential


class Requests:
    """Requests on a connection as Actions; resources and prompts through the Guard."""

    # Set up by Gateway.__init__.
    config: GatewayConfig
    guard: Guard
    catalog: Catalog
    secrets: SecretBroker | None
    upstreams: dict[str, Upstream]
    recorder: Recorder
    _resource_servers: dict[str, str]  # resource URI -> the server that listed it
    _template_servers: dict[str, str]  # URI template prefix -> the server that listed it

    def action(
        self, conn: Connection, tool: str, args: dict[str, Any], kind: str = ActionKind.TOOL_CALL
    ) -> Action:
        """The Action for a request on ``conn`` (as its verified credential's, if it has one).

        Every outcome the recorder was handed before is recorded first: no request is
        decided without the labels and provenance earlier results brought."""
        self.recorder.flush()
        ident = conn.identity
        action = Action(
            kind=kind,
            tool=tool,
            args=args,
            agent=ident.agent,
            roles=ident.roles,
            user=ident.user,
            session=conn.session,
            time_ns=time.time_ns(),
        )
        if conn.credential is not None and (verifier := self.guard.verifier) is not None:
            # So that refusals made before the Guard checks (unknown tool, quarantine, …)
            # are recorded with the credential's identity and id; a credential that fails
            # here is the Guard's to refuse, with its reason.
            with contextlib.suppress(IdentityError):
                action = verifier.verify(conn.presented(), action.time_ns).identify(action)
        return action

    def _scrub(self, exc: BaseException) -> BaseException:
        """``exc`` with secrets redacted from its message, for the audit record."""
        return exc if self.secrets is None else self.secrets.scrub(exc)

    def _scrub_error(self, error: GatewayError) -> GatewayError:
        """A JSON-RPC error for the client with secrets redacted from message and data."""
        if self.secrets is None:
            return error
        return GatewayError(error.code, *sec.scrub_error(self.secrets, error.message, error.data))

    def _visible(self, conn: Connection, server: str, what: str) -> bool:
        ident = conn.identity
        return self.guard.policy.could_allow(
            ActionKind.MCP_REQUEST,
            f"{server}{SEPARATOR}{what}",
            agent=ident.agent,
            roles=ident.roles,
            user=ident.user,
        )

    async def _gather(
        self, conn: Connection, what: str, fetch: Callable[[Upstream], Any]
    ) -> list[tuple[str, Any]]:
        """``fetch`` from every connected server whose ``what`` the policy could allow."""
        out: list[tuple[str, Any]] = []
        for name, upstream in self.upstreams.items():
            if upstream.client is None or not self._visible(conn, name, what):
                continue
            try:
                for item in await fetch(upstream):
                    out.append((name, item))
            except (UpstreamUnavailable, MCPError) as exc:
                log.warning("MCP server %r: listing for %s failed: %s", name, what, exc)
        return out

    async def list_resources(self, conn: Connection) -> list[types.Resource]:
        """Resources of every server whose resources/read the policy could allow."""

        async def fetch(u: Upstream) -> list[types.Resource]:
            return await _pages(
                u, lambda c, cur: c.list_resources(cursor=cur, cache_mode="bypass"), "resources"
            )

        found = await self._gather(conn, "resources/read", fetch)
        for server, res in found:
            self._resource_servers.setdefault(str(res.uri), server)
        return [res for _, res in found]

    async def list_resource_templates(self, conn: Connection) -> list[types.ResourceTemplate]:
        """Resource templates, likewise."""

        async def fetch(u: Upstream) -> list[types.ResourceTemplate]:
            return await _pages(
                u,
                lambda c, cur: c.list_resource_templates(cursor=cur, cache_mode="bypass"),
                "resource_templates",
            )

        found = await self._gather(conn, "resources/read", fetch)
        for server, tpl in found:
            prefix = tpl.uri_template.split("{", 1)[0]
            if prefix:
                self._template_servers.setdefault(prefix, server)
        return [tpl for _, tpl in found]

    def _resource_server(self, uri: str) -> str | None:
        server = self._resource_servers.get(uri)
        if server is not None:
            return server
        best = max((p for p in self._template_servers if uri.startswith(p)), key=len, default=None)
        return None if best is None else self._template_servers[best]

    async def read_resource(self, conn: Connection, uri: str) -> types.ReadResourceResult:
        """Check ``<server>__resources/read`` with the URI as a ``uri`` resource, then read."""
        server = self._resource_server(uri)
        tool = f"{server}{SEPARATOR}resources/read" if server else "resources/read"
        action = self.action(conn, tool, {"uri": uri}, ActionKind.MCP_REQUEST)
        action = msgspec.structs.replace(action, resources=(Resource("uri", uri),))
        if server is None:
            d = self.guard.refuse(action, UNKNOWN_TOOL_RULE, f"no server offers resource {uri!r}")
            raise rpc_error(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", d)
        return await self._forward(
            server, action, lambda c: c.read_resource(uri, cache_mode="bypass")
        )

    async def _forward(
        self, server: str, action: Action, call: Callable[[Client], Awaitable[R]]
    ) -> R:
        """Check ``action``; if allowed, run ``call`` on ``server`` and record the outcome.

        For requests that are not tool calls (resources/read, prompts/get): a refusal is a
        JSON-RPC error ``-32003`` carrying the decision id.
        """
        refused = None
        if self.secrets is not None:  # handles are substituted in tool calls only
            hosts = destinations(self.guard.policy, action)
            refused = self.secrets.check(action.tool, action.args, hosts)
        if refused is not None:
            reason = f"{refused.code}: {refused.message}"
            decision = self.guard.refuse(action, SECRET_RULE, reason)
        else:
            decision = self.guard.check(action)
        if not decision.allowed:
            unverified = credential_refusal(decision)  # a credential that did not verify
            raise unverified or rpc_error(FORBIDDEN, denied_text(decision), decision)
        started = time.perf_counter_ns()
        try:
            result = await self.upstreams[server].request(call)
        except (UpstreamUnavailable, MCPError) as exc:
            self.guard.record_outcome(action, decision, started_ns=started, error=self._scrub(exc))
            raise self._scrub_error(upstream_error(exc, decision)) from None
        dump = wire(result)
        brought: tuple[str, ...] = self.catalog.server_labels(server)
        found = False
        if self.secrets is not None:
            redacted, _, found = sec.redact_result(self.secrets, type(result), dump)
            if redacted is None:
                raise GatewayError(INTERNAL_ERROR, sec.WITHHELD)
            if found:
                dump, result = redacted, type(result).model_validate(redacted, by_name=False)
        keep = self.config.record_results == "content"
        self.guard.record_outcome(
            action,
            decision,
            started_ns=started,
            result=dump,
            content=dump if keep else None,
            labels=(*brought, SECRET_LABEL) if found else brought,
        )
        return result

    async def list_prompts(self, conn: Connection) -> list[types.Prompt]:
        """Prompts (namespaced ``server__prompt``) of servers whose prompts/get could be allowed."""

        async def fetch(u: Upstream) -> list[types.Prompt]:
            return await _pages(
                u, lambda c, cur: c.list_prompts(cursor=cur, cache_mode="bypass"), "prompts"
            )

        found = await self._gather(conn, "prompts/get", fetch)
        return [p.model_copy(update={"name": f"{s}{SEPARATOR}{p.name}"}) for s, p in found]

    async def get_prompt(
        self, conn: Connection, name: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult:
        """Check ``<server>__prompts/get`` (prompt name and arguments as args), then get."""
        server, sep, prompt = name.partition(SEPARATOR)
        args: dict[str, Any] = {"name": prompt, "arguments": dict(arguments or {})}
        action = self.action(conn, f"{server}{SEPARATOR}prompts/get", args, ActionKind.MCP_REQUEST)
        if not sep or server not in self.upstreams:
            d = self.guard.refuse(action, UNKNOWN_TOOL_RULE, f"no prompt {name!r} on any server")
            raise rpc_error(INVALID_PARAMS, f"Unknown prompt: {name}", d)
        return await self._forward(server, action, lambda c: c.get_prompt(prompt, arguments))


async def _pages(
    upstream: Upstream, page: Callable[[Client, str | None], Any], field: str
) -> list[Any]:
    return await upstream.request(lambda c: collect_pages(c, page, field, upstream.name))

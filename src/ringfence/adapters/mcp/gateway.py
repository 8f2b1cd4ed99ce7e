"""The gateway's core: every MCP tool call from a client, checked by the Guard before it goes on.

Transport-free (the MCP server side lives in ``server.py``): it holds the upstream servers, the
tool surface they expose (pinned, scanned, namespaced ``server__tool``) and turns each request
into an :class:`~ringfence.core.action.Action` for the same Guard, policy and audit log the
library uses.  No policy logic here: the gateway only refuses what the policy cannot see — an
unknown or quarantined tool, arguments that break the server's own schema — and records those
refusals as decisions too (pseudo-rules ``ringfence:unknown-tool``, ``ringfence:quarantine``,
``ringfence:upstream-schema``).

This module holds :class:`Gateway`'s lifetime, the tool listing and the tool-call path
(``admit``, ``call_tool_wire`` and the outcome record).  :class:`Connection`, the Action a
request becomes, and resources and prompts are in :mod:`.requests` (Gateway's base class);
what reaches the client — JSON-RPC errors and their codes, deny results — is in :mod:`.results`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError
from mcp.shared.dispatcher import ProgressFnT as Progress

from ringfence.adapters.mcp import secrets as sec
from ringfence.adapters.mcp.catalog import Catalog, ToolEntry
from ringfence.adapters.mcp.config import SEPARATOR, GatewayConfig
from ringfence.adapters.mcp.recorder import Recorder
from ringfence.adapters.mcp.requests import Connection, Requests
from ringfence.adapters.mcp.results import (
    INPUT_RULE,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    QUARANTINE_RULE,
    UNKNOWN_TOOL_RULE,
    UPSTREAM_SCHEMA_RULE,
    GatewayError,
    ToolError,
    credential_refusal,
    denied_result,
    lane_result,
    rpc_error,
    upstream_error,
    wire,
)
from ringfence.adapters.mcp.scan import Severity
from ringfence.adapters.mcp.toolcall import ToolCall, Withheld, model_text, withheld_result
from ringfence.adapters.mcp.upstream import (
    ResultTooLarge,
    Upstream,
    UpstreamUnavailable,
    collect_pages,
)
from ringfence.core.action import Action, ActionKind, argument_problem
from ringfence.core.decision import Decision
from ringfence.errors import SecretError
from ringfence.runtime.broker import (
    SECRET_LABEL,
    SECRET_RULE,
    SecretBroker,
    install_audit_redaction,
)
from ringfence.runtime.guard import Guard
from ringfence.runtime.guard_outcomes import encode_result

__all__ = ["Connection", "Gateway", "GatewayError", "ToolCall", "Withheld", "model_text"]

log = logging.getLogger("ringfence.gateway")
_SDK_META = "io.modelcontextprotocol/"
# Results up to this size (encoded) are taken into session provenance by the batch
# (ringfence.runtime.sessions); larger ones at once, so what waits stays small.
_DEFER_BYTES = 64 << 10


class Gateway(Requests):
    """Upstream servers, their checked tool surface, and the request path through the Guard."""

    def __init__(
        self,
        config: GatewayConfig,
        guard: Guard,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        errlog: Any = None,
        transports: Mapping[str, Callable[[], Any]] | None = None,
        secrets: SecretBroker | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        """``transports`` replaces how a server is reached (a test connects in-process).

        With ``secrets``, tool calls may carry secret handles (substituted after the decision,
        only where the policy's ``secrets:`` grants allow), and secrets are redacted from
        results, errors and — through the Guard's audit log — every audit record.
        """
        self.config = config
        self.guard = guard
        self.secrets = secrets
        # Where outcome records are written once the client has its answer (see
        # .recorder): at once by default; on a thread of its own in `ringfence gateway run`.
        self.recorder = recorder or Recorder()
        if secrets is not None:
            install_audit_redaction(guard.audit, secrets)
        self.catalog = Catalog(config, now=now, record=self._audit)
        self.upstreams = {
            name: Upstream(
                name,
                server,
                base=config.base,
                on_connect=self._connected,
                on_tools_changed=self._tools_changed,
                errlog=errlog,
                transport=(transports or {}).get(name),
                max_message_bytes=config.max_result_bytes + config.max_message_bytes,
            )
            for name, server in config.servers.items()
        }
        self._first: set[str] = set()
        # Called when the tools a client can see change (a server's list_changed, a
        # quarantine); the stdio server turns it into notifications/tools/list_changed.
        self.listeners: list[Callable[[], Awaitable[None]]] = []
        self._resource_servers: dict[str, str] = {}
        self._template_servers: dict[str, str] = {}

    def _audit(self, record: dict[str, Any]) -> None:
        try:
            self.guard.audit.append({**record, "ts": time.time_ns()})
        except Exception:
            log.exception("could not record a tool-surface event")

    # -- lifetime ----------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every upstream's supervisor; reports started once each has tried to connect."""
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams.values():
                tg.start_soon(upstream.run)
            deadline = max(s.connect_timeout for s in self.config.servers.values())
            with anyio.move_on_after(deadline):
                while any(
                    u.status == "starting" and u.name not in self._first
                    for u in self.upstreams.values()
                ):
                    await anyio.sleep(0.01)
            task_status.started()

    def stop(self) -> None:
        """Disconnect every upstream (run() then returns); outcomes still waiting to be
        recorded are written first."""
        self.recorder.flush()
        for upstream in self.upstreams.values():
            upstream.stop()

    async def _connected(self, upstream: Upstream, client: Client) -> None:
        tools = await _all_tools(upstream, client)
        self.catalog.observe(upstream.name, tools, client.instructions)
        self._first.add(upstream.name)

    async def _tools_changed(self, upstream: Upstream) -> None:
        client = upstream.client
        if client is None:
            return
        try:
            tools = await _all_tools(upstream, client)
        except Exception as exc:  # the old surface stays in force; calls still check pins
            log.warning("MCP server %r: re-listing tools failed: %s", upstream.name, exc)
            return
        before = self._surface(upstream.name)
        self.catalog.observe(upstream.name, tools, client.instructions)
        if self._surface(upstream.name) != before:
            for listener in list(self.listeners):
                try:
                    await listener()
                except Exception:  # a client that went away must not stop the others
                    log.exception("could not tell a client that the tool list changed")

    def _surface(self, server: str) -> list[tuple[str, bool, str]]:
        """What clients can see of ``server``'s tools: names, callable or not, definitions."""
        return [
            (e.exposed, self.catalog.refusal(e) is None, e.tool.model_dump_json())
            for e in self.catalog.entries()
            if e.server == server
        ]

    def instructions(self) -> str | None:
        """The servers' instructions for the client, each under its server's name.

        Only approved (pinned) instructions with no pending change and no finding of the
        poisoning scan at medium severity or above are passed on: anything else the model
        would read is exactly what pinning and the scan exist to stop.
        """
        parts = []
        for name in self.upstreams:
            pin = self.catalog.pins.servers.get(name)
            approved = pin.instructions if pin is not None else None
            if pin is None or approved is None or not approved.text or pin.pending_instructions:
                continue
            flagged = any(
                f.tool is None and f.severity in (Severity.MEDIUM, Severity.HIGH)
                for f in self.catalog.findings.get(name, ())
            )
            if flagged:
                log.warning("MCP server %r: instructions withheld (poisoning scan)", name)
                continue
            parts.append(f"## {name} (tools named {name}{SEPARATOR}*)\n\n{approved.text.strip()}")
        return "\n\n".join(parts) or None

    # -- listing -----------------------------------------------------------------------------

    def list_tools(self, conn: Connection) -> list[types.Tool]:
        """The tools this connection may see: pinned (not quarantined) and reachable by policy."""
        ident = conn.identity
        out = []
        for entry in self.catalog.entries():
            if self.catalog.refusal(entry) is not None:
                continue
            if not self.guard.policy.could_allow(
                ActionKind.TOOL_CALL,
                entry.exposed,
                agent=ident.agent,
                roles=ident.roles,
                user=ident.user,
            ):
                continue
            update: dict[str, Any] = {"name": entry.exposed}
            handles = self.secrets.handles_for(entry.exposed) if self.secrets else []
            if handles:
                update["description"] = (
                    (entry.tool.description or "").rstrip()
                    + f"\n\nCredentials: pass {', '.join(handles)} where this tool needs that "
                    "credential; Ringfence puts the real value in when the call runs."
                ).lstrip()
            out.append(entry.tool.model_copy(update=update))
        return out

    # -- calling -----------------------------------------------------------------------------

    def admit(
        self, conn: Connection, name: str, args: dict[str, Any]
    ) -> tuple[ToolEntry, Action, Decision]:
        """Everything before forwarding: resolve, gate, check.  Raises GatewayError."""
        entry = self.catalog.get(name)
        action = self.action(conn, name, args)
        if entry is None:
            d = self.guard.refuse(action, UNKNOWN_TOOL_RULE, f"no tool {name!r} on any server")
            raise rpc_error(INVALID_PARAMS, f"Unknown tool: {name}", d)
        problem = argument_problem(args, self.guard.policy.limits)
        if problem is not None:
            d = self.guard.refuse(action, INPUT_RULE, problem)
            raise rpc_error(INVALID_PARAMS, f"Invalid arguments for {name}: {problem}", d)
        refusal = self.catalog.refusal(entry)
        if refusal is not None:
            return entry, action, self.guard.refuse(action, QUARANTINE_RULE, refusal)
        schema_problem = _check_schema(entry, args)
        if schema_problem is not None:
            d = self.guard.refuse(action, UPSTREAM_SCHEMA_RULE, schema_problem)
            raise rpc_error(INVALID_PARAMS, f"Invalid arguments for {name}: {schema_problem}", d)
        if self.secrets is not None:
            refused = self.secrets.check(*sec.secret_scope(self.guard.policy, entry, action))
            if refused is not None:
                reason = f"{refused.code}: {refused.message}"
                return entry, action, self.guard.refuse(action, SECRET_RULE, reason)
        proxied = self._proxied(conn, entry, args)
        if proxied is not None and not proxied.allowed:
            return entry, action, proxied
        return entry, action, self.guard.check(action, conn.presented())

    def _proxied(self, conn: Connection, entry: ToolEntry, args: dict[str, Any]) -> Decision | None:
        """A meta tool's inner call, checked as the tool it reaches (None: not a meta tool)."""
        spec = entry.config.proxies if entry.config else None
        if spec is None:
            return None
        inner = args.get(spec.tool)
        server = args.get(spec.server, entry.server) if spec.server else entry.server
        inner_args = args.get(spec.arguments, {}) if spec.arguments else {}
        exposed = f"{server}{SEPARATOR}{inner}"
        action = self.action(conn, exposed, inner_args if isinstance(inner_args, dict) else {})
        if (
            not isinstance(inner, str)
            or not isinstance(server, str)
            or not isinstance(inner_args, dict)
        ):
            return self.guard.refuse(
                action,
                UPSTREAM_SCHEMA_RULE,
                f"{entry.exposed} proxies a tool: {spec.tool!r} must name it",
            )
        target = self.catalog.get(exposed)
        if target is not None and (refusal := self.catalog.refusal(target)) is not None:
            return self.guard.refuse(action, QUARANTINE_RULE, refusal)
        return self.guard.check(action, conn.presented())

    async def call_tool(
        self,
        conn: Connection,
        name: str,
        args: dict[str, Any] | None,
        progress: Progress | None = None,
    ) -> types.CallToolResult:
        """:meth:`call_tool_wire`, as the SDK's model (for the SDK server's handler)."""
        dump = await self.call_tool_wire(conn, name, args, progress)
        return types.CallToolResult.model_validate(dump, by_name=False)

    async def call_tool_wire(
        self,
        conn: Connection,
        name: str,
        args: dict[str, Any] | None,
        progress: Progress | None = None,
        *,
        deliver: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Check, forward if allowed, record the outcome; see the module docstring.  The
        result is a ``CallToolResult`` as JSON (wire names), checked by the SDK's types.

        ``progress`` relays the upstream's progress notifications; pass it only when the
        client asked for progress (the upstream then gets a progress token too).  Without
        it, a stdio upstream is called on its direct lane (:mod:`.pipe`).

        ``deliver``, if given, is handed a tool's (redacted, size-checked) result as soon as
        it is ready and before its outcome is recorded, so the answer is on its way while the
        record is written.  It must not await: the outcome, and the labels the result brings
        to the session, are in place before the caller's event loop runs anything else (the
        next request on the connection is decided with them).
        """
        call = self.begin_call(conn, name, args, redact_progress=progress)
        if not isinstance(call, ToolCall):
            return call
        try:
            dump = await self.send_call(call)
        except Withheld as withheld:
            return withheld.result
        return self.call_done(call, dump, deliver)

    async def send_call(self, call: ToolCall) -> dict[str, Any]:
        """Send an admitted call to its upstream and wait: the result as JSON.  A failure is
        recorded and raised as :meth:`call_failed` says."""
        upstream = self.upstreams[call.entry.server]
        progress = call.progress
        try:
            dump = None
            if progress is None and self.config.direct_calls:
                dump = lane_result(await upstream.call_direct("tools/call", call.params))
            if dump is None:
                tool, send = call.entry.tool.name, call.send
                result = await upstream.request(
                    lambda c: c.call_tool(tool, send, progress_callback=progress)
                )
                dump = wire(result)
        except BaseException as exc:
            raise self.call_failed(call, exc) from None
        return dump

    def begin_call(
        self,
        conn: Connection,
        name: str,
        args: dict[str, Any] | None,
        *,
        redact_progress: Progress | None = None,
    ) -> ToolCall | dict[str, Any]:
        """Everything before the upstream sees a tool call: :meth:`admit`, then the secrets
        put in.  A :class:`ToolCall` to send, or the result for a call that does not go
        through (a deny, a pending approval, a refused secret), already recorded.  Raises
        GatewayError for what is a JSON-RPC error (see :meth:`admit`)."""
        args = {} if args is None else args
        entry, action, decision = self.admit(conn, name, args)
        if not decision.allowed and self.guard.enforcement == "enforce":
            refused = credential_refusal(decision)  # a credential that did not verify
            if refused is not None:
                raise refused
            return wire(denied_result(decision))
        started = time.perf_counter_ns()
        send = args
        progress = redact_progress
        if self.secrets is not None:
            # After the decision (which records the handles), right before the call.
            try:
                send = self.secrets.substitute(*sec.secret_scope(self.guard.policy, entry, action))
            except SecretError as exc:
                self.guard.record_outcome(action, decision, started_ns=started, error=exc)
                return wire(sec.secret_refused_result(decision, exc))
            if progress is not None:
                progress = sec.redacting(self.secrets, progress)
        return ToolCall(entry, action, decision, started, send, progress)

    def call_failed(self, call: ToolCall, exc: BaseException) -> BaseException:
        """Record how a call that went to the upstream failed; what to raise instead of
        ``exc``: a GatewayError for the client, :class:`Withheld` for a result too large to
        pass on, or ``exc`` itself for an internal failure (an internal error to the
        client) and when the call was cancelled by the client or by shutdown."""
        action, decision, started = call.action, call.decision, call.started
        if isinstance(exc, ResultTooLarge):  # the call ran: its result is withheld
            limit = self.config.max_result_bytes
            error = ValueError(f"result is larger than max_result_bytes ({limit}); {exc}")
            self.guard.record_outcome(action, decision, started_ns=started, error=error)
            return Withheld(withheld_result(decision, error))
        if isinstance(exc, UpstreamUnavailable | MCPError):
            self.guard.record_outcome(action, decision, started_ns=started, error=self._scrub(exc))
            return self._scrub_error(upstream_error(exc, decision))
        if isinstance(exc, ValueError):  # the server's answer is not a CallToolResult
            # The details stay in the log: a validation message can quote the result.
            server = call.entry.server
            log.warning("MCP server %r sent an invalid tools/call result: %s", server, exc)
            why = f"MCP server {server!r} sent an invalid result"
            self.guard.record_outcome(action, decision, started_ns=started, error=ValueError(why))
            return GatewayError(INTERNAL_ERROR, why, {"decision_id": decision.decision_id})
        if isinstance(exc, Exception):  # an internal failure: on record as what it was
            self.guard.record_outcome(action, decision, started_ns=started, error=self._scrub(exc))
            return exc
        cancelled = anyio.get_cancelled_exc_class()("the call was cancelled before it ended")
        self.guard.record_outcome(action, decision, started_ns=started, error=cancelled)
        return exc

    def call_done(
        self,
        call: ToolCall,
        dump: dict[str, Any],
        deliver: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The upstream's result (as JSON): recorded, and the result for the client."""
        return self._record(call.entry, call.action, call.decision, call.started, dump, deliver)

    def _record(
        self,
        entry: ToolEntry,
        action: Action,
        decision: Decision,
        started: int,
        dump: dict[str, Any],
        deliver: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Record the outcome; the result for the client (oversized results replaced),
        handed to ``deliver`` first if given (see :meth:`call_tool_wire`)."""
        meta = dump.get("_meta")
        if meta and any(k.startswith(_SDK_META) for k in meta):
            # The upstream's own protocol metadata (its serverInfo, …) is not the client's
            # business: the client talks to the gateway.
            kept = {k: v for k, v in meta.items() if not k.startswith(_SDK_META)}
            dump = {k: v for k, v in dump.items() if k != "_meta"}
            if kept:
                dump["_meta"] = kept
        labels = entry.labels
        if self.secrets is not None:
            redacted, meta, found = sec.redact_result(self.secrets, types.CallToolResult, dump)
            dump = wire(sec.withheld_result(meta)) if redacted is None else redacted
            labels = (*labels, SECRET_LABEL) if found else labels
        # Encoded once: its length is the size checked here, and the outcome record's hash
        # and size are taken over the same bytes.
        data = encode_result(dump)
        size = len(data)
        if size > self.config.max_result_bytes:
            limit = self.config.max_result_bytes
            error = ValueError(f"result of {size} bytes is larger than max_result_bytes ({limit})")
            self.guard.record_outcome(action, decision, started_ns=started, error=error)
            return withheld_result(decision, error)
        keep = (entry.config.record_results if entry.config else None) or self.config.record_results

        def record() -> None:
            self.guard.record_outcome(
                action,
                decision,
                started_ns=started,
                result=dump,
                error=ToolError("the tool reported an error") if dump.get("isError") else None,
                content=dump if keep == "content" else None,
                labels=labels,
                observed=model_text(dump),
                encoded=data,
                defer=size <= _DEFER_BYTES,
            )

        if deliver is None:
            record()
            return dump
        try:
            deliver(dump)
        finally:
            self.recorder.submit(record)  # before the next action: Requests.action flushes
        return dump


def _check_schema(entry: ToolEntry, args: dict[str, Any]) -> str | None:
    validate = entry.validator
    if validate is None:
        return None
    try:
        validate(args)
    except ValueError as exc:
        return str(exc)
    except Exception as exc:  # a validator that blows up (recursion, …) refuses too
        return f"arguments could not be checked against the tool's schema ({type(exc).__name__})"
    return None


async def _all_tools(upstream: Upstream, client: Client) -> list[types.Tool]:
    return await collect_pages(
        client, lambda c, cur: c.list_tools(cursor=cur, cache_mode="bypass"), "tools", upstream.name
    )

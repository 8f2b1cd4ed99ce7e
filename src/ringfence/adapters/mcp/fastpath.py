"""``tools/call`` from a stdio client, answered by the gateway without the SDK server's dispatch.

The SDK's low-level ``Server`` serves the gateway's client side: negotiation, listings,
resources, prompts, pings, errors for anything malformed.  Its per-request machinery (task
group, dispatcher context, request context, middleware chain) costs about 0.4 ms of CPU per
call on the machines we measure on, more than everything Ringfence itself does.  The tool
call is the one request an agent makes over and over, so :class:`DirectCalls` answers it
itself, with the same code the SDK handler runs (:meth:`Gateway.call_tool_wire`) and the
SDK's own rules for what goes on the wire:

* it takes a request only when the connection is negotiated and the request is plain: a
  2026-07-28 request whose envelope passes the SDK's own ladder
  (``classify_inbound_request``), or a request on a connection whose ``initialize`` the SDK
  answered and whose ``notifications/initialized`` arrived; params the SDK's
  ``CallToolRequestParams`` accepts (asked once per ``_meta``: a client stamps every request
  alike, and only ``name`` and ``arguments`` are then checked by hand); no progress token.
  Anything else — a malformed call, a call before negotiation, a call asking for progress —
  goes to the SDK server, which answers it as it always does;
* the call is admitted and sent on the upstream's lane before the reader's callback returns,
  and answered from the lane reader's callback (a task only when the lane cannot take it);
* the result is shaped by the SDK's per-version serializer
  (``mcp_types.methods.serialize_server_result``; :func:`~.shapes.plain_tool_result` for
  the usual text answer, held to the same output by a property test; not again when the
  lane shaped it for the same version) and, for 2026-07-28, gets ``resultType`` and the
  gateway's ``serverInfo`` stamp (``Server.server_info_stamp``), as the SDK's runner does;
* a ``notifications/cancelled`` for a call taken here cancels it (no response is sent, and
  the upstream is told); any other goes to the SDK.

A test drives the same calls through both paths and compares the frames.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import mcp_types as types
import msgspec
from mcp.server import Server
from mcp.shared.inbound import InboundModernRoute, classify_inbound_request
from mcp_types import methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from ringfence.adapters.mcp.gateway import (
    Connection,
    Gateway,
    GatewayError,
    ToolCall,
    Withheld,
)
from ringfence.adapters.mcp.results import complete_result
from ringfence.adapters.mcp.shapes import plain_tool_result

__all__ = ["DirectCalls"]

log = logging.getLogger("ringfence.gateway")
_PLAIN_PARAMS = frozenset(("name", "arguments", "_meta"))
_encode = msgspec.json.Encoder().encode


class DirectCalls:
    """The stdio client's tool calls, taken off the SDK server's path (see the module doc)."""

    def __init__(
        self, gateway: Gateway, conn: Connection, server: Server[Any], *, enabled: bool = True
    ) -> None:
        self.gateway = gateway
        self.enabled = enabled  # False: only follow the negotiation (see handshake)
        self.conn = conn
        # The SDK hands out a fresh deep copy per access so that no response can alias it;
        # this one is only ever encoded, never changed, so one copy serves every answer.
        self._stamp = server.server_info_stamp
        self._initialize_ids: set[types.RequestId] = set()
        self._negotiated: str | None = None  # the handshake version the SDK answered with
        self._initialized = False
        self._calls: dict[types.RequestId, asyncio.Task[None] | _LaneCall] = {}
        # What the SDK's checks accepted last (see _call and _version): the same _meta again
        # (a client stamps every request alike) is not checked again.
        self._accepted_meta: dict[str, Any] | None = None
        self._envelope: tuple[dict[str, Any], str] | None = None

    # -- what the client sends ------------------------------------------------------------------

    def take_call(self, raw: Any, out: asyncio.StreamWriter) -> bool:
        """Whether ``raw`` (a line as decoded JSON) is a plain ``tools/call`` request taken
        here, before the SDK parses it.  Anything this does not recognise as exactly such a
        request the SDK's parser sees as before (:meth:`take` then sees it too): only a
        request the SDK's ``JSONRPCRequest`` would accept as is (it ignores extra keys) is
        taken, and its params still go through the SDK's ``CallToolRequestParams``."""
        if not self.enabled or not isinstance(raw, dict) or raw.get("method") != "tools/call":
            return False
        request_id = raw.get("id")
        if (
            raw.get("jsonrpc") != "2.0"
            or not isinstance(request_id, int | str)
            or isinstance(request_id, bool)
        ):
            return False
        return self._call(request_id, raw.get("params"), out)

    def take(self, message: types.JSONRPCMessage, out: asyncio.StreamWriter) -> bool:
        """Whether ``message`` was taken here (else the SDK server gets it)."""
        root = getattr(message, "root", message)
        if isinstance(root, types.JSONRPCRequest):
            if root.method == "tools/call":
                return self.enabled and self._call(root.id, root.params, out)
            if root.method == "initialize":
                self._initialize_ids.add(root.id)
            return False
        if isinstance(root, types.JSONRPCNotification):
            if root.method == "notifications/initialized":
                self._initialized = True
            elif root.method == "notifications/cancelled":
                return self._cancel(root.params)
        return False

    def _call(self, request_id: types.RequestId, params: Any, out: asyncio.StreamWriter) -> bool:
        if not isinstance(params, dict):
            return False
        meta = params.get("_meta")
        if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
            return False
        version = self._version("tools/call", params, meta)
        if version is None or request_id in self._calls:
            return False
        name: Any = params.get("name")
        arguments: Any = params.get("arguments")
        plain = (
            type(name) is str
            and (arguments is None or type(arguments) is dict)
            and params.keys() <= _PLAIN_PARAMS
            and (meta is None or meta == self._accepted_meta)
        )
        if not plain:
            # The SDK's model decides (and its errors are the SDK server's to send).  What
            # it accepted once is not asked again: a client sends the same envelope each time.
            try:
                call = types.CallToolRequestParams.model_validate(params, by_name=False)
            except ValueError:
                return False
            name, arguments = call.name, call.arguments
            if meta is not None:
                self._accepted_meta = meta
        self._start(request_id, version, name, arguments, out)
        return True

    def _start(
        self,
        request_id: types.RequestId,
        version: str,
        name: str,
        arguments: dict[str, Any] | None,
        out: asyncio.StreamWriter,
    ) -> None:
        """Admit the call and send it on the upstream's lane, all before returning; its
        answer is written from the lane's reader (:meth:`_answered`).  A call the lane
        cannot take now (HTTP upstream, reconnecting) goes on in a task."""
        gateway = self.gateway
        try:
            call = gateway.begin_call(self.conn, name, arguments)
            if not isinstance(call, ToolCall):  # refused: the result says why
                out.write(self._result_frame(request_id, version, call))
                return
        except Exception as exc:
            out.write(self._error_frame(request_id, version, name, exc))
            return
        try:
            upstream = gateway.upstreams[call.entry.server]
            answered = functools.partial(self._answered, request_id, version, call, out)
            started = upstream.start_direct("tools/call", call.params, answered)
        except Exception as exc:  # allowed and on record: its end is recorded too
            failed = gateway.call_failed(call, exc)
            out.write(self._error_frame(request_id, version, name, failed))
            return
        if started is not None:
            cancel, call.shaped_for = started
            self._calls[request_id] = _LaneCall(gateway, call, cancel)
            return
        task = asyncio.get_running_loop().create_task(self._answer(request_id, version, call, out))
        self._calls[request_id] = task
        task.add_done_callback(functools.partial(self._done, request_id, task))

    def _done(self, request_id: types.RequestId, task: object, _: object = None) -> None:
        if self._calls.get(request_id) is task:
            del self._calls[request_id]

    def _version(self, method: str, params: dict[str, Any], meta: Any) -> str | None:
        """The protocol version to answer in, or None to leave the request to the SDK."""
        if isinstance(meta, dict) and types.PROTOCOL_VERSION_META_KEY in meta:
            if self._negotiated is not None:
                return None  # an envelope on a handshake connection: the SDK decides
            known = self._envelope
            if known is not None and known[0] == meta:
                return known[1]  # the envelope the ladder passed last time
            route = classify_inbound_request(
                {"method": method, "params": params},
                supported_modern_versions=MODERN_PROTOCOL_VERSIONS,
            )
            if not isinstance(route, InboundModernRoute):
                return None
            self._envelope = (meta, route.protocol_version)
            return route.protocol_version
        if self._negotiated is not None and self._initialized:
            return self._negotiated
        return None

    def _cancel(self, params: Any) -> bool:
        request_id = params.get("requestId") if isinstance(params, dict) else None
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return False
        call = self._calls.get(request_id)
        if call is None:
            return False
        if isinstance(call, _LaneCall):
            del self._calls[request_id]  # a task leaves when it has finished cancelling
        call.cancel()
        return True

    @property
    def handshake(self) -> str | None:
        """The version the client and the SDK server agreed on in ``initialize`` (once the
        client confirmed with ``notifications/initialized``); None for 2026-07-28 clients,
        whose every request carries its own version, and before negotiation."""
        return self._negotiated if self._initialized else None

    # -- what the SDK server sends ---------------------------------------------------------------

    def sent(self, message: types.JSONRPCMessage) -> None:
        """Learn the negotiated version from the SDK's answer to ``initialize``."""
        if not self._initialize_ids:
            return
        root = getattr(message, "root", message)
        if isinstance(root, types.JSONRPCResponse | types.JSONRPCError):
            if root.id not in self._initialize_ids:
                return
            self._initialize_ids.discard(root.id)
            if isinstance(root, types.JSONRPCResponse):
                version = root.result.get("protocolVersion")
                if version in HANDSHAKE_PROTOCOL_VERSIONS:
                    self._negotiated = version

    # -- answering ---------------------------------------------------------------------------

    def _answered(
        self,
        request_id: types.RequestId,
        version: str,
        call: ToolCall,
        out: asyncio.StreamWriter,
        outcome: Any,
    ) -> None:
        """The lane's answer to a call :meth:`_start` sent: the client's answer is written,
        then the outcome recorded (see :meth:`Gateway.call_tool_wire`)."""
        self._calls.pop(request_id, None)
        gateway = self.gateway
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            dump = complete_result(outcome)
        except Exception as exc:
            failed = gateway.call_failed(call, exc)
            name = call.entry.exposed
            if isinstance(failed, Withheld):
                frame = self._result_frame(request_id, version, failed.result)
            else:
                frame = self._error_frame(request_id, version, name, failed)
            out.write(frame)
            return
        self._finish(
            request_id,
            version,
            call.entry.exposed,
            out,
            lambda d: gateway.call_done(call, dump, d),
            shaped_for=call.shaped_for,
        )

    async def _answer(
        self,
        request_id: types.RequestId,
        version: str,
        call: ToolCall,
        out: asyncio.StreamWriter,
    ) -> None:
        """A call the lane could not take at once: through :meth:`Gateway.send_call`."""
        gateway, name = self.gateway, call.entry.exposed
        try:
            dump = await gateway.send_call(call)
        except asyncio.CancelledError:
            return  # a cancelled request gets no response (the outcome is recorded)
        except Withheld as withheld:
            out.write(self._result_frame(request_id, version, withheld.result))
            await out.drain()
            return
        except Exception as exc:
            out.write(self._error_frame(request_id, version, name, exc))
            await out.drain()
            return
        self._finish(request_id, version, name, out, lambda d: gateway.call_done(call, dump, d))
        await out.drain()

    def _finish(
        self,
        request_id: types.RequestId,
        version: str,
        name: str,
        out: asyncio.StreamWriter,
        record: Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]],
        *,
        shaped_for: str | None = None,
    ) -> None:
        """``record(deliver)``: the result written to the client by ``deliver`` before its
        outcome is recorded (the write only queues bytes, so the record is done before the
        next message is read).  ``shaped_for``: the version the SDK's types already shaped
        the result for (the lane's), which is not shaped again for a client of that version."""
        sent = False

        def deliver(result: dict[str, Any]) -> None:
            nonlocal sent
            frame = self._result_frame(request_id, version, result, shaped_for)
            out.write(frame)  # one write per frame: never interleaved
            sent = True

        try:
            result = record(deliver)
            if not sent:
                out.write(self._result_frame(request_id, version, result))
        except Exception as exc:
            if not sent:
                out.write(self._error_frame(request_id, version, name, exc))
            else:  # the answer is out; the record's failure is the Guard's to report
                log.exception("tools/call %r: recording the outcome failed", name)

    def _result_frame(
        self,
        request_id: types.RequestId,
        version: str,
        result: dict[str, Any],
        shaped_for: str | None = None,
    ) -> bytes:
        shaped = self._shaped(version, result, shaped_for == version)
        return _encode({"jsonrpc": "2.0", "id": request_id, "result": shaped}) + b"\n"

    def _error_frame(
        self, request_id: types.RequestId, version: str, name: str, exc: BaseException
    ) -> bytes:
        """The JSON-RPC error the SDK's server would send for ``exc``."""
        if isinstance(exc, GatewayError):
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
        elif isinstance(exc, ValidationError):
            log.error("tools/call %r: the result does not fit protocol %s: %s", name, version, exc)
            error = {"code": types.INTERNAL_ERROR, "message": "Handler returned an invalid result"}
        else:  # as the SDK: internals never reach the wire
            log.error("tools/call %r failed", name, exc_info=exc)
            error = {"code": types.INTERNAL_ERROR, "message": "Internal server error"}
        return _encode({"jsonrpc": "2.0", "id": request_id, "error": error}) + b"\n"

    def _shaped(self, version: str, result: dict[str, Any], done: bool = False) -> dict[str, Any]:
        """``result`` as the SDK's runner puts a tools/call result on the wire (``done``: the
        SDK's types already shaped it for ``version``; only the stamp is added)."""
        modern = version in MODERN_PROTOCOL_VERSIONS
        if modern and "resultType" not in result:  # the SDK's CallToolResult defaults it
            result = {**result, "resultType": "complete"}
        shaped: dict[str, Any]
        if done:
            shaped = dict(result)  # the result itself is what gets recorded: not changed
            if not modern:
                shaped.pop("resultType", None)  # not in the handshake era's schema
        else:
            plain = plain_tool_result(result, version)
            if plain is None:
                plain = methods.serialize_server_result("tools/call", version, result)
            shaped = plain
        if modern:
            meta = shaped.get("_meta")
            if meta is None:
                shaped["_meta"] = {types.SERVER_INFO_META_KEY: self._stamp}
            elif isinstance(meta, dict) and meta.get(types.SERVER_INFO_META_KEY) is None:
                shaped["_meta"] = {**meta, types.SERVER_INFO_META_KEY: self._stamp}
        return shaped

    async def drain(self) -> None:
        """Cancel the calls still running (the client went away)."""
        calls = list(self._calls.values())
        for call in calls:
            call.cancel()
        tasks = [c for c in calls if isinstance(c, asyncio.Task)]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._calls.clear()


class _LaneCall:
    """A call waiting on the upstream's lane; cancelling it tells the upstream and records
    the cancelled outcome (the client gets no response, as for a cancelled task)."""

    __slots__ = ("_call", "_cancel", "_gateway")

    def __init__(self, gateway: Gateway, call: ToolCall, cancel: Callable[[], None]) -> None:
        self._gateway = gateway
        self._call = call
        self._cancel: Callable[[], None] | None = cancel

    def cancel(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is None:
            return  # cancelled already: recorded once
        cancel()
        self._gateway.call_failed(self._call, asyncio.CancelledError())

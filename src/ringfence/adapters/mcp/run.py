"""Starting the gateway from a configuration file: the Guard, the Gateway, a transport.

``open_gateway`` builds everything from a :class:`GatewayConfig` (the policy, the audit log in
the data folder, the upstream definitions); ``serve`` runs it over stdio or Streamable HTTP
until the client goes away or the process is told to stop.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.lowlevel.server import NotificationOptions
from mcp.shared.message import SessionMessage

from ringfence.adapters.mcp.config import GatewayConfig, SecretsConfig
from ringfence.adapters.mcp.credentials import close_verifier, open_verifier, stdio_credential
from ringfence.adapters.mcp.fastpath import DirectCalls
from ringfence.adapters.mcp.gateway import Connection, Gateway
from ringfence.adapters.mcp.recorder import Recorder
from ringfence.adapters.mcp.server import bearer_identity, build_server
from ringfence.adapters.mcp.stdio import wire_stdio
from ringfence.runtime.broker import SecretBroker, install_log_filter
from ringfence.runtime.embedded import open_guard
from ringfence.runtime.guard import Guard
from ringfence.stores.secretfile import open_secret_source

__all__ = ["open_gateway", "serve_http", "serve_stdio"]

log = logging.getLogger("ringfence.gateway")


@asynccontextmanager
async def open_gateway(config: GatewayConfig, *, errlog: Any = None) -> AsyncIterator[Gateway]:
    """A running gateway: upstreams connected (or reported unavailable), audit log open."""
    verifier = open_verifier(config)  # identity.verify: clients present credentials
    guard = open_guard(
        config.path(config.policy),
        data_dir=config.path(config.data_dir),
        durability=config.durability,
        agent=config.identity.agent,
        # require_approval: the client gets "approval pending, request ap-..." at once (the
        # event loop must not block); the same call retried after `ringfence approvals
        # approve` redeems the receipt once.
        approval_queue=True,
        approval_wait_s=0,
        verifier=verifier,
    )
    guard.closing(lambda: close_verifier(verifier))
    try:
        recorder = Recorder(threaded=True, idle=guard.sessions.settle_all)
        guard.closing(recorder.close)  # outcomes still waiting are written before the log closes
        gateway = Gateway(
            config,
            guard,
            errlog=errlog or sys.stderr,
            secrets=_secret_broker(config, guard),
            recorder=recorder,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(gateway.run)
            try:
                yield gateway
            finally:
                gateway.stop()
    finally:
        guard.close()


def _secret_broker(config: GatewayConfig, guard: Guard) -> SecretBroker | None:
    """The secret broker, when the configuration or the policy speaks of secrets.

    Its log filter goes on the root logger's handlers: whatever is logged from here on has
    secrets redacted.
    """
    settings = config.secrets
    if settings is None and not guard.policy.spec.secrets:
        return None
    settings = settings or SecretsConfig()
    source = open_secret_source(
        config.path(config.data_dir),
        file=config.path(settings.file) if settings.file else None,
        key_file=config.path(settings.key_file) if settings.key_file else None,
        env=settings.env,
        env_prefix=settings.env_prefix,
    )
    broker = SecretBroker(source, lambda: guard.policy.spec.secrets)
    install_log_filter(broker)
    return broker


async def _until_signalled(scope: anyio.CancelScope) -> None:
    """Cancel ``scope`` on SIGTERM or SIGINT, so the audit log is sealed and children stopped."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("gateway: %s received, shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


async def serve_stdio(config: GatewayConfig) -> None:
    """Serve one MCP client on stdin/stdout until it closes them (or a signal arrives)."""
    async with open_gateway(config) as gateway:
        conn = Connection(config.identity, credential=stdio_credential(config))
        log.info("gateway ready on stdio; session %s", conn.session)
        server = build_server(gateway, conn)
        direct = DirectCalls(gateway, conn, server, enabled=config.direct_calls)
        gc.freeze()  # what start-up made lives as long as the gateway: keep it out of GC scans
        # A handshake-era client is told when the tools it can see change (2026-07-28 clients
        # would need a subscriptions/listen stream, which the gateway does not serve yet).
        options = server.create_initialization_options(NotificationOptions(tools_changed=True))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_signalled, tg.cancel_scope)
            async with wire_stdio(config.max_message_bytes, direct=direct) as (read, write):
                notify = write.clone()

                async def tools_changed() -> None:
                    if direct.handshake is not None:
                        note = types.JSONRPCNotification(
                            jsonrpc="2.0", method="notifications/tools/list_changed"
                        )
                        await notify.send(SessionMessage(note))

                gateway.listeners.append(tools_changed)
                try:
                    await server.run(read, write, options)
                finally:
                    gateway.listeners.remove(tools_changed)
                    notify.close()
            tg.cancel_scope.cancel()


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway's shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_http(config: GatewayConfig, *, ready: anyio.Event | None = None) -> None:
    """Serve MCP clients over Streamable HTTP at the configured host, port and path."""
    listen = config.listen
    assert listen is not None
    async with open_gateway(config) as gateway:
        server = build_server(gateway)
        app = server.streamable_http_app(
            streamable_http_path=listen.path,
            host=listen.host,
            max_request_body_size=config.max_message_bytes,
        )
        uv = _Uvicorn(
            uvicorn.Config(
                bearer_identity(config, app, gateway.guard),
                host=listen.host,
                port=listen.port,
                log_level="warning",
                lifespan="on",
            )
        )
        async with anyio.create_task_group() as tg:
            stop = anyio.CancelScope()

            async def watch() -> None:
                with stop:
                    await _until_signalled(stop)
                uv.should_exit = True

            tg.start_soon(watch)
            tg.start_soon(uv.serve)
            while not uv.started:
                await anyio.sleep(0.01)
            log.info("gateway ready on http://%s:%d%s", listen.host, listen.port, listen.path)
            if ready is not None:
                ready.set()

"""The egress proxy: an HTTP proxy on a UNIX socket that lets through only what a sandbox
profile's network allowlist allows, and records every connection it was asked for.

One :class:`EgressProxy` serves one sandboxed run.  It listens on a UNIX socket that is bound
into the sandbox (where :mod:`.forwarder` relays ``127.0.0.1:3128`` to it), runs an asyncio
loop on a thread of its own, and for each connection:

1. reads one request head (at most ``head_bytes``, within ``head_seconds``), and parses it
   (:func:`~.egress.parse_request`): ``CONNECT host:port`` opens a tunnel, an absolute
   ``http://`` URI is forwarded as one plain request (origin form, ``Host`` set to the
   destination, ``Connection: close``);
2. refuses IP-address targets, and names or ports the allowlist does not list (403);
3. resolves the name itself (the sandbox has no DNS) and refuses it if any address is
   loopback or private (unless ``allow_private``), link-local, a cloud metadata address,
   multicast, reserved or unspecified (403) — the address checked is the address connected
   to, so a name cannot be re-pointed between check and use;
4. connects, answers ``200`` (tunnel) or sends the request on, and relays bytes both ways.

Anything else — a malformed or oversized head, too many connections, a name that does not
resolve, a destination that does not answer — is refused with a status, an RFC 9209
``Proxy-Status`` header and a one-line reason, and the connection is closed.  What is said
inside a tunnel (TLS, its SNI and Host) is not inspected: an allowed name's address is
reachable for anything that address serves.

:meth:`EgressProxy.close` stops the proxy, closes every connection, and returns the
:class:`~.egress.EgressReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from ringfence.runtime.sandbox.egress import (
    Egress,
    EgressRecord,
    EgressReport,
    Refusal,
    Request,
    address_refusal,
    decide,
    forward_head,
    parse_request,
    refusal_response,
)

__all__ = ["EgressProxy", "ProxyLimits", "Resolver", "system_resolver"]

Resolver = Callable[[str, int], Sequence[str]]
"""Resolves a host name to IP address strings (blocking; run on a worker thread)."""

_CHUNK = 1 << 16
_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def system_resolver(host: str, port: int) -> list[str]:
    """The machine's resolver (``getaddrinfo``): each address once, in the order given."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class ProxyLimits:
    """What one proxy accepts: request head size and time, name resolution and connect time,
    connections open at once, and connection records kept (the rest are only counted)."""

    head_bytes: int = 8192
    head_seconds: float = 10.0
    resolve_seconds: float = 10.0
    connect_seconds: float = 10.0
    connections: int = 64
    records: int = 1000


@dataclass
class _Entry:
    """A record while its connection is open (the byte counts still grow)."""

    record: EgressRecord
    bytes_out: int = 0
    bytes_in: int = 0

    def done(self) -> EgressRecord:
        return replace(self.record, bytes_out=self.bytes_out, bytes_in=self.bytes_in)


class EgressProxy:
    """The proxy of one run: ``with EgressProxy(egress, path) as proxy: …`` or
    :meth:`start` / :meth:`close`.  ``resolver`` replaces the machine's resolver (tests)."""

    def __init__(
        self,
        egress: Egress,
        path: str,
        *,
        resolver: Resolver = system_resolver,
        limits: ProxyLimits | None = None,
    ) -> None:
        self.egress = egress
        self.path = path
        self.limits = limits or ProxyLimits()
        self._resolver = resolver
        self._entries: list[_Entry] = []
        self._dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._report: EgressReport | None = None
        self._folder: str | None = None

    @classmethod
    def in_private_folder(
        cls,
        egress: Egress,
        *,
        owner: tuple[int, int] | None = None,
        resolver: Resolver = system_resolver,
        limits: ProxyLimits | None = None,
    ) -> EgressProxy:
        """A started proxy whose socket is in a fresh folder of its own (mode 0700, removed by
        :meth:`close`).  ``owner``: uid and gid to give the folder and socket (the sandbox's
        user, when Ringfence runs as root).  OSError if it cannot be set up."""
        folder = tempfile.mkdtemp(prefix="ringfence-egress-")
        proxy = cls(egress, os.path.join(folder, "proxy.sock"), resolver=resolver, limits=limits)
        proxy._folder = folder
        try:
            proxy.start()
            if owner is not None:
                os.chown(proxy.path, *owner)
                os.chown(folder, *owner)
        except OSError:
            proxy.close()
            raise
        return proxy

    def __enter__(self) -> EgressProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind the socket (OSError if it cannot be) and start serving on a thread."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, name="ringfence-egress-proxy", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self.close()
            raise OSError(f"the egress proxy did not start: {self._error}")

    def close(self) -> EgressReport:
        """Stop, close every connection, and return what was asked for (idempotent)."""
        if self._report is not None:
            return self._report
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._report = EgressReport(tuple(e.done() for e in self._entries), self._dropped)
        return self._report

    # -- the loop ----------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        assert self._sock is not None
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_unix_server(
            self._handle, sock=self._sock, limit=self.limits.head_bytes
        )
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            if len(self._tasks) > self.limits.connections:
                raise Refusal(
                    503,
                    "connection_limit_reached",
                    f"more than {self.limits.connections} connections open at once",
                )
            request = parse_request(await self._head(reader))
            rule = decide(self.egress, request)
            address, up_reader, upstream = await self._connect(request, str(rule))
            allowed = EgressRecord(
                request.method, request.target, True, 200, f"allowed by {rule}", str(rule), address
            )
            entry = self._record(_Entry(allowed))
            if request.tunnel:
                writer.write(_ESTABLISHED)
            else:
                head = forward_head(request)
                upstream.write(head)
                entry.bytes_out += len(head)
            await _relay(reader, writer, up_reader, upstream, entry, tunnel=request.tunnel)
        except Refusal as refusal:
            await self._refuse(writer, refusal)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the sandbox side went away mid-relay
        except asyncio.CancelledError:
            # close() ends what is still open.  Ending quietly: asyncio 3.11 logs an error
            # for a client callback task that ends cancelled.
            pass
        except Exception as exc:  # a bug here must still refuse, and say so
            await self._refuse(
                writer, Refusal(502, "proxy_internal_error", f"proxy error: {exc!r}")
            )
        finally:
            writer.close()
            if upstream is not None:
                upstream.close()
            self._tasks.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: Refusal) -> None:
        """Record ``refusal`` and answer it (if the client still listens)."""
        r = refusal
        self._record(
            _Entry(EgressRecord(r.method, r.target, False, r.status, r.reason, r.rule, r.address))
        )
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            writer.write(refusal_response(refusal))
            await asyncio.wait_for(writer.drain(), 1.0)

    async def _head(self, reader: asyncio.StreamReader) -> bytes:
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.limits.head_seconds)
        except asyncio.LimitOverrunError:
            raise Refusal(
                431,
                "http_request_error",
                f"request head longer than {self.limits.head_bytes} bytes",
            ) from None
        except asyncio.IncompleteReadError:
            raise Refusal(
                400, "http_request_error", "connection closed before a complete request head"
            ) from None
        except TimeoutError:
            raise Refusal(
                408,
                "http_request_error",
                f"no complete request head within {self.limits.head_seconds:g} s",
            ) from None

    async def _connect(
        self, request: Request, rule: str
    ) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        where = f"{request.host}:{request.port}"

        def refuse(status: int, error: str, reason: str, address: str | None = None) -> Refusal:
            return Refusal(
                status,
                error,
                reason,
                method=request.method,
                target=request.target,
                rule=rule,
                address=address,
            )

        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(4, thread_name_prefix="ringfence-egress-dns")
        try:
            found = await asyncio.wait_for(
                loop.run_in_executor(self._pool, self._resolver, request.host, request.port),
                self.limits.resolve_seconds,
            )
        except TimeoutError:
            raise refuse(504, "dns_timeout", f"resolving {request.host} timed out") from None
        except Exception as exc:
            raise refuse(502, "dns_error", f"cannot resolve {request.host}: {exc}") from None
        addresses = list(found)
        if not addresses:
            raise refuse(502, "dns_error", f"{request.host} has no address")
        for address in addresses:
            why = address_refusal(address, allow_private=self.egress.allow_private)
            if why is not None:
                hint = "" if self.egress.allow_private else " (allow_private: true allows it)"
                if why.startswith(("a loopback", "a private")):
                    why += hint
                raise refuse(
                    403,
                    "destination_ip_prohibited",
                    f"{request.host} resolves to {address}, {why}",
                    address,
                )
        last = "no address answered"
        for address in addresses:
            try:
                up_reader, upstream = await asyncio.wait_for(
                    asyncio.open_connection(address, request.port, limit=_CHUNK),
                    self.limits.connect_seconds,
                )
            except TimeoutError:
                last = f"connecting to {where} ({address}) timed out"
            except OSError as exc:
                last = f"connecting to {where} ({address}) failed: {exc.strerror or exc}"
            else:
                return address, up_reader, upstream
        raise refuse(502, "destination_unavailable", last, addresses[-1])

    def _record(self, entry: _Entry) -> _Entry:
        if len(self._entries) < self.limits.records:
            self._entries.append(entry)
        else:
            self._dropped += 1
        return entry


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    entry: _Entry,
    *,
    tunnel: bool,
) -> None:
    """Copy both ways until both sides have ended (half-closes are passed on) or one fails.
    A plain-HTTP request ends when the destination has answered (it was sent with
    ``Connection: close``), even if a pooling client keeps its side open."""

    def count_out(n: int) -> None:
        entry.bytes_out += n

    def count_in(n: int) -> None:
        entry.bytes_in += n

    out = asyncio.ensure_future(_copy(reader, upstream, count_out))
    back = asyncio.ensure_future(_copy(up_reader, writer, count_in))
    try:
        pending = {out, back}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure on either side ends both
            if back in done and not tunnel:
                break
    finally:
        out.cancel()
        back.cancel()
        await asyncio.gather(out, back, return_exceptions=True)


async def _copy(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, count: Callable[[int], None]
) -> None:
    while data := await source.read(_CHUNK):
        sink.write(data)
        count(len(data))
        await sink.drain()
    if sink.can_write_eof():
        with contextlib.suppress(OSError):
            sink.write_eof()

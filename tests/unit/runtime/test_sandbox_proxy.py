"""The egress proxy over its real UNIX socket, on this machine (no sandbox): what it lets
through, everything it refuses, and that garbage does not stop it.  Destinations are local
echo servers reached through a fake resolver, so no test needs the internet or DNS.  No
timings are asserted; the only clock is the proxy's own head timeout, shortened."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence

import pytest

from ringfence.runtime.sandbox import Egress, EgressReport
from ringfence.runtime.sandbox.egress import parse_host_rule
from ringfence.runtime.sandbox.proxy import EgressProxy, ProxyLimits

TIMEOUT = 20.0  # a guard against hangs, not an assertion


class Echo:
    """A TCP server on 127.0.0.1: reads until EOF, answers ``echo:`` + what it read, closes.
    ``http``: reads one request head instead, answers ``200 ok`` at once, and closes."""

    def __init__(self, *, http: bool = False) -> None:
        self.http = http
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(TIMEOUT)
            data = b""
            with contextlib.suppress(OSError):
                while chunk := conn.recv(65536):
                    data += chunk
                    if self.http and b"\r\n\r\n" in data:
                        break
                self.received.append(data)
                if self.http:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                else:
                    conn.sendall(b"echo:" + data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def folder() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rf-proxy-")  # short: UNIX socket paths have 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


NAMES = {
    "svc.test": ["127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "private.test": ["10.20.30.40"],
    "mixed.test": ["93.184.215.14", "127.0.0.1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "empty.test": [],
}


def fake_resolver(host: str, port: int) -> Sequence[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


def _proxy(folder: str, *rules: str, allow_private: bool = True, **limits: float) -> EgressProxy:
    egress = Egress(tuple(parse_host_rule(r) for r in rules), allow_private=allow_private)
    proxy = EgressProxy(
        egress,
        os.path.join(folder, "p.sock"),
        resolver=fake_resolver,
        limits=ProxyLimits(**limits),  # type: ignore[arg-type]
    )
    proxy.start()
    return proxy


def _connect(proxy: EgressProxy) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(TIMEOUT)
    sock.connect(proxy.path)
    return sock


def _ask(proxy: EgressProxy, data: bytes, *, shut: bool = True) -> bytes:
    """Send ``data``, optionally end our side, and read everything until the proxy closes."""
    with _connect(proxy) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            out += chunk
    return out


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _closed(proxy: EgressProxy) -> EgressReport:
    report = proxy.close()
    assert not os.path.exists(proxy.path)
    return report


# -- allowed ---------------------------------------------------------------------------------


def test_connect_tunnel_to_an_allowed_name(folder: str, echo: Echo) -> None:
    proxy = _proxy(folder, f"svc.test:{echo.port}")
    answer = _ask(proxy, f"CONNECT svc.test:{echo.port} HTTP/1.1\r\n\r\nhello".encode())
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\necho:hello"
    (record,) = _closed(proxy).connections
    assert record.allowed and record.status == 200
    assert (record.method, record.target) == ("CONNECT", f"svc.test:{echo.port}")
    assert record.rule == f"svc.test:{echo.port}"
    assert record.reason == f"allowed by svc.test:{echo.port}"
    assert record.address == "127.0.0.1"
    assert (record.bytes_out, record.bytes_in) == (5, len(b"echo:hello"))


def test_tunnel_relays_a_large_body_both_ways_and_passes_the_half_close_on(
    folder: str, echo: Echo
) -> None:
    proxy = _proxy(folder, f"svc.test:{echo.port}")
    payload = random.Random(7).randbytes(3 << 20)
    with _connect(proxy) as sock:
        sock.sendall(f"CONNECT svc.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # the echo server answers only after our EOF
        answer = _read_all(sock)
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\necho:" + payload
    (record,) = _closed(proxy).connections
    assert (record.bytes_out, record.bytes_in) == (len(payload), len(payload) + 5)


def test_plain_http_is_forwarded_with_a_clean_head(folder: str, echo: Echo) -> None:
    proxy = _proxy(folder, f"svc.test:{echo.port}")
    request = (
        f"POST http://svc.test:{echo.port}/upload?x=1 HTTP/1.1\r\n"
        "Host: elsewhere.example\r\nProxy-Authorization: Basic c2VjcmV0\r\n"
        "Content-Length: 4\r\n\r\nbody"
    ).encode()
    answer = _ask(proxy, request)
    forwarded = (
        f"POST /upload?x=1 HTTP/1.1\r\nHost: svc.test:{echo.port}\r\n"
        "Content-Length: 4\r\nConnection: close\r\n\r\nbody"
    ).encode()
    assert answer == b"echo:" + forwarded
    (record,) = _closed(proxy).connections
    assert record.allowed and record.method == "POST"
    assert record.bytes_out == len(forwarded)


def test_plain_http_ends_when_answered_even_if_the_client_stays(folder: str) -> None:
    server = Echo(http=True)
    try:
        proxy = _proxy(folder, f"svc.test:{server.port}")
        head = f"GET http://svc.test:{server.port}/ HTTP/1.1\r\n\r\n".encode()
        answer = _ask(proxy, head, shut=False)  # like a pooling client: never ends its side
    finally:
        server.close()
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    (record,) = _closed(proxy).connections
    assert record.allowed and record.bytes_in == len(answer)


def test_wildcard_rule_and_ipv4_mapped_loopback(folder: str, echo: Echo) -> None:
    NAMES["a.svc.test"] = ["::ffff:127.0.0.1"]
    try:
        proxy = _proxy(folder, f"*.svc.test:{echo.port}")
        answer = _ask(proxy, f"CONNECT a.svc.test:{echo.port} HTTP/1.1\r\n\r\nx".encode())
    finally:
        del NAMES["a.svc.test"]
    assert _status(answer) == 200
    (record,) = _closed(proxy).connections
    assert record.rule == f"*.svc.test:{echo.port}"


# -- refused by the allowlist or the address -------------------------------------------------


@pytest.mark.parametrize(
    ("request_line", "status", "reason"),
    [
        ("CONNECT other.test:{port}", 403, "not in the sandbox profile's network allowlist"),
        ("CONNECT svc.test:1", 403, "svc.test:1 is not in"),
        ("CONNECT sub.svc.test:{port}", 403, "not in the sandbox profile's network allowlist"),
        ("GET http://other.test:{port}/", 403, "other.test:{port} is not in"),
        ("CONNECT 127.0.0.1:{port}", 403, "IP address"),
        ("CONNECT [::1]:{port}", 403, "IP address"),
        ("CONNECT 2130706433:{port}", 403, "IP address"),
        ("GET http://127.0.0.1:{port}/", 403, "IP address"),
        ("CONNECT 169.254.169.254:80", 403, "IP address"),
        ("GET / HTTP/1.1\r\nHost: svc.test:{port}\r\nX: y", 400, "not a proxy request"),
    ],
)
def test_refused_requests_never_reach_a_destination(
    folder: str, echo: Echo, request_line: str, status: int, reason: str
) -> None:
    proxy = _proxy(folder, f"svc.test:{echo.port}")
    line = request_line.format(port=echo.port)
    head = line + ("\r\n\r\n" if "HTTP/1.1" in line else " HTTP/1.1\r\n\r\n")
    answer = _ask(proxy, head.encode() + b"payload")
    assert _status(answer) == status
    expected = reason.format(port=echo.port)
    assert b"Proxy-Status: ringfence; error=" in answer
    assert expected.encode() in answer.split(b"\r\n\r\n", 1)[1]
    (record,) = _closed(proxy).connections
    assert not record.allowed and record.status == status
    assert expected in record.reason
    assert record.address is None and record.bytes_out == 0
    assert echo.received == []


@pytest.mark.parametrize(
    ("name", "allow_private", "reason"),
    [
        ("metadata.test", True, "resolves to 169.254.169.254, a cloud metadata address"),
        ("metadata.test", False, "resolves to 169.254.169.254, a cloud metadata address"),
        ("svc.test", False, "resolves to 127.0.0.1, a loopback address (allow_private: true"),
        ("mapped.test", False, "::ffff:127.0.0.1, a loopback address (IPv4 inside IPv6)"),
        ("private.test", False, "resolves to 10.20.30.40, a private (non-global) address"),
        ("mixed.test", False, "resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_names_resolving_to_forbidden_addresses_are_refused(
    folder: str, echo: Echo, name: str, allow_private: bool, reason: str
) -> None:
    proxy = _proxy(folder, f"{name}:{echo.port}", allow_private=allow_private)
    answer = _ask(proxy, f"CONNECT {name}:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert _status(answer) == 403
    assert b"error=destination_ip_prohibited" in answer
    (record,) = _closed(proxy).connections
    assert not record.allowed and record.status == 403
    assert record.reason.startswith(f"{name} resolves to ") and reason in record.reason
    assert record.rule == f"{name}:{echo.port}"  # the allowlist said yes; the address said no
    assert record.address is not None
    assert echo.received == []


def test_unresolvable_name_and_dead_destination_are_reported(folder: str, echo: Echo) -> None:
    dead = socket.create_server(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    NAMES["gone.test"] = ["127.0.0.1"]
    try:
        proxy = _proxy(folder, "nxdomain.test", "empty.test", f"gone.test:{dead_port}")
        answers = [
            _ask(proxy, b"CONNECT nxdomain.test:443 HTTP/1.1\r\n\r\n"),
            _ask(proxy, b"CONNECT empty.test:443 HTTP/1.1\r\n\r\n"),
            _ask(proxy, f"CONNECT gone.test:{dead_port} HTTP/1.1\r\n\r\n".encode()),
        ]
    finally:
        del NAMES["gone.test"]
    assert [_status(a) for a in answers] == [502, 502, 502]
    nxdomain, empty, gone = _closed(proxy).connections
    assert "cannot resolve nxdomain.test" in nxdomain.reason
    assert "empty.test has no address" in empty.reason
    assert f"connecting to gone.test:{dead_port} (127.0.0.1) failed" in gone.reason
    assert gone.rule == f"gone.test:{dead_port}" and not gone.allowed


# -- malformed input, limits, and survival ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)), 400, "closed before"),
        (b"\x00\xff\r\n\r\n", 400, "not ASCII"),
        (b"HELLO\r\n\r\n", 400, "request line"),
        (b"CONNECT svc.test HTTP/1.1\r\n\r\n", 400, "host:port"),
        (b"GET http://svc.test/ HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, "8192"),
        (b"A" * 100_000, 431, "longer than 8192"),
        (b"", 400, "closed before a complete request head"),
        (b"CONNECT svc.test:443 HTTP/1.1\r\n", 400, "closed before"),
    ],
)
def test_malformed_input_is_refused_and_recorded(
    folder: str, echo: Echo, data: bytes, status: int, reason: str
) -> None:
    proxy = _proxy(folder, "svc.test")
    answer = _ask(proxy, data)
    assert _status(answer) == status
    (record,) = _closed(proxy).connections
    assert (record.allowed, record.status) == (False, status)
    assert reason in record.reason
    assert echo.received == []


def test_slow_request_head_is_cut_off(folder: str) -> None:
    proxy = _proxy(folder, "svc.test", head_seconds=0.2)
    answer = _ask(proxy, b"CONNECT svc.te", shut=False)  # then nothing: the proxy gives up
    assert _status(answer) == 408
    (record,) = _closed(proxy).connections
    assert "no complete request head within 0.2 s" in record.reason


def test_connections_over_the_limit_are_refused(folder: str, echo: Echo) -> None:
    proxy = _proxy(folder, f"svc.test:{echo.port}", connections=2)
    held = []
    for _ in range(2):
        sock = _connect(proxy)
        sock.sendall(f"CONNECT svc.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        held.append(sock)
    answer = _ask(proxy, f"CONNECT svc.test:{echo.port} HTTP/1.1\r\n\r\n".encode())
    assert _status(answer) == 503
    report = _closed(proxy)  # also ends the tunnels still open
    for sock in held:
        assert _read_all(sock) == b""
        sock.close()
    assert [c.status for c in report.connections] == [200, 200, 503]
    assert "more than 2 connections" in report.connections[2].reason


def test_records_past_the_limit_are_counted(folder: str) -> None:
    proxy = _proxy(folder, "svc.test", records=3)
    for i in range(5):
        _ask(proxy, f"CONNECT other{i}.test:443 HTTP/1.1\r\n\r\n".encode())
    report = _closed(proxy)
    assert [c.target for c in report.connections] == [f"other{i}.test:443" for i in range(3)]
    assert report.dropped == 2
    assert report.summary()["dropped"] == 2


def test_proxy_survives_garbage_and_still_serves(folder: str, echo: Echo) -> None:
    proxy = _proxy(folder, f"svc.test:{echo.port}", head_seconds=0.3)
    rng = random.Random(2024)
    garbage = [rng.randbytes(rng.randrange(1, 20_000)) for _ in range(40)]
    garbage += [
        b"\r\n\r\n" * 100,
        b"CONNECT " + b"a." * 2000 + b"com:443 HTTP/1.1\r\n\r\n",
        b"GET http://svc.test:" + str(echo.port).encode() + b"/\r\n\r\n",
        b"CONNECT svc.test:443 HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n",
    ]
    for data in garbage:
        answer = _ask(proxy, data, shut=rng.random() < 0.5)
        assert answer == b"" or _status(answer) in (400, 403, 408, 431)
    # Some clients vanish mid-request.
    for _ in range(10):
        sock = _connect(proxy)
        sock.sendall(b"CONNECT svc.te")
        sock.close()
    answer = _ask(proxy, f"CONNECT svc.test:{echo.port} HTTP/1.1\r\n\r\nstill here".encode())
    assert answer.endswith(b"echo:still here")
    report = _closed(proxy)
    assert report.connections[-1].allowed
    assert not any(c.allowed for c in report.connections[:-1])
    assert len(report.connections) == len(garbage) + 11


def test_socket_in_use_is_an_error(folder: str) -> None:
    first = _proxy(folder, "svc.test")
    try:
        second = EgressProxy(Egress(()), first.path)
        with pytest.raises(OSError):
            second.start()
    finally:
        first.close()
    assert first.close() is first.close()  # idempotent


def test_context_manager(folder: str, echo: Echo) -> None:
    egress = Egress((parse_host_rule(f"svc.test:{echo.port}"),), allow_private=True)
    path = os.path.join(folder, "cm.sock")
    with EgressProxy(egress, path, resolver=fake_resolver) as proxy:
        assert _status(_ask(proxy, f"CONNECT svc.test:{echo.port} HTTP/1.1\r\n\r\n".encode()))
    assert len(proxy.close().connections) == 1
    assert not os.path.exists(path)


def test_a_failing_resolver_is_a_refusal_not_a_crash(folder: str) -> None:
    def broken(host: str, port: int) -> Sequence[str]:
        raise KeyError(host)

    egress = Egress((parse_host_rule("svc.test"),))
    with EgressProxy(egress, os.path.join(folder, "b.sock"), resolver=broken) as proxy:
        answer = _ask(proxy, b"CONNECT svc.test:443 HTTP/1.1\r\n\r\n")
    assert _status(answer) == 502
    (record,) = proxy.close().connections
    assert "cannot resolve svc.test: 'svc.test'" in record.reason


def test_private_folder_is_made_and_removed() -> None:
    egress = Egress((parse_host_rule("svc.test"),))
    proxy = EgressProxy.in_private_folder(egress, resolver=fake_resolver)
    folder = os.path.dirname(proxy.path)
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert _status(_ask(proxy, b"CONNECT nope.test:443 HTTP/1.1\r\n\r\n")) == 403
    proxy.close()
    assert not os.path.exists(folder)


def test_unusable_socket_path_is_an_error(folder: str) -> None:
    proxy = EgressProxy(Egress(()), os.path.join(folder, "x" * 200))  # past sun_path's 108
    with pytest.raises(OSError):
        proxy.start()
    proxy.close()

"""Per-host network egress for sandbox profiles: the allowlist, and the proxy's decisions.

This module is the I/O-free core of the egress proxy (:mod:`.proxy` is its edge, and
:mod:`.forwarder` the relay inside the sandbox).  It holds:

- :class:`HostRule` and :class:`Egress` — what a profile's ``network: {allow: [...]}`` allows,
  parsed once at load time by :func:`parse_host_rule`;
- :func:`parse_request` — one proxy request head (``CONNECT host:port`` or an absolute
  ``http://`` URI) to a :class:`Request`, or a :class:`Refusal` (malformed, IP literal, …);
- :func:`decide` — the allow entry a request matches, or a 403 :class:`Refusal`;
- :func:`address_refusal` — why a resolved address may not be connected to (loopback,
  private, link-local, cloud metadata, multicast, …), or None;
- :func:`forward_head` and :func:`refusal_response` — the bytes the proxy writes;
- :class:`EgressRecord` and :class:`EgressReport` — what a run's proxy let through or refused,
  carried on :class:`~ringfence.runtime.sandbox.profile.SandboxResult` into the audit record.

Host names are ASCII DNS names (IDNs in their ``xn--`` form), compared lower-cased without a
trailing dot.  ``*.example.com`` matches every name *below* ``example.com`` (any depth), not
``example.com`` itself.  An entry without a port allows ports 80 and 443.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_PORTS",
    "Egress",
    "EgressRecord",
    "EgressReport",
    "HostRule",
    "Refusal",
    "Request",
    "address_refusal",
    "decide",
    "forward_head",
    "parse_host",
    "parse_host_rule",
    "parse_request",
    "refusal_response",
]

DEFAULT_PORTS = (80, 443)
MAX_HEADERS = 100
MAX_TARGET = 2048

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_REQUEST_LINE = re.compile(r"^([A-Z]{1,16}) ([\x21-\x7e]+) (HTTP/1\.[01])$")
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: not sent on to the destination.
_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)

# Never connected to, whatever the profile says: cloud metadata services, link-local,
# "this host", multicast, broadcast and reserved ranges.
_METADATA = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32", "fd00:ec2::254/128")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class HostRule:
    """One allowlist entry: ``name`` (``wildcard``: every name below it) and ``port`` (None:
    80 and 443)."""

    name: str
    port: int | None = None
    wildcard: bool = False

    def __str__(self) -> str:
        text = f"*.{self.name}" if self.wildcard else self.name
        return text if self.port is None else f"{text}:{self.port}"

    def matches(self, host: str, port: int) -> bool:
        """True if this entry allows ``host`` (normalised by :func:`parse_host`) on ``port``."""
        if port not in (DEFAULT_PORTS if self.port is None else (self.port,)):
            return False
        if self.wildcard:
            return host.endswith("." + self.name)
        return host == self.name


@dataclass(frozen=True)
class Egress:
    """A profile's network allowlist.  ``allow_private``: names may resolve to loopback and
    private addresses (RFC 1918, ULA, CGNAT, …) — never to link-local or metadata ones."""

    allow: tuple[HostRule, ...]
    allow_private: bool = False

    def match(self, host: str, port: int) -> HostRule | None:
        """The first entry allowing ``host`` on ``port``, or None."""
        for rule in self.allow:
            if rule.matches(host, port):
                return rule
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready form, for logs and records."""
        return {"allow": [str(r) for r in self.allow], "allow_private": self.allow_private}


def parse_host(text: str) -> str:
    """``text`` as a normalised DNS name (lower case, no trailing dot); ValueError if it is
    not one, with a message saying why (IP addresses in any notation are refused)."""
    if not text:
        raise ValueError("empty host name")
    if not text.isascii():
        raise ValueError(f"{_shown(text)} is not ASCII: write the name's xn-- (IDNA) form")
    if _is_ip(text):
        raise ValueError(f"{_shown(text)} is an IP address: name a host instead")
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if len(name) > 253:
        raise ValueError("a host name has at most 253 characters")
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{_shown(text)} is not a host name (dot-separated labels of letters, digits and '-')"
        )
    if not labels[-1][0].isalpha():
        # 0x7f.1, 2130706433, 127.1: numbers that inet_aton reads as addresses
        raise ValueError(f"{_shown(text)} reads as an IP address: name a host instead")
    return name


def parse_host_rule(value: object) -> HostRule:
    """One allowlist entry (``api.example.com``, ``*.pypi.org``, ``files.example.com:8443``);
    ValueError with a message for the profile loader."""
    if not isinstance(value, str):
        raise ValueError("expected a host name such as api.example.com")
    text = value
    if text.startswith("[") or text.count(":") > 1:
        raise ValueError(f"{_shown(text)} is an IPv6 address: name a host instead")
    port: int | None = None
    if ":" in text:
        text, port_text = text.split(":")
        port = _port(port_text)
        if port is None:
            raise ValueError(f"{_shown(port_text)} is not a port (1-65535)")
    if text in {"*", "*.", "**"} or text.startswith("*.*"):
        raise ValueError("'*' would allow every host: name the hosts (or *.example.com)")
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    if "*" in name:
        raise ValueError(f"{_shown(value)}: '*' may only start an entry, as in *.example.com")
    name = parse_host(name)
    if wildcard and "." not in name:
        raise ValueError(f"*.{name} would allow a whole top-level domain: name a domain below it")
    return HostRule(name, port, wildcard)


# -- requests ------------------------------------------------------------------------------


class Refusal(Exception):
    """The proxy refuses a request: ``status`` and ``error`` (an RFC 9209 Proxy-Status error
    type) for the client, ``reason`` for the client and the record."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        *,
        method: str = "",
        target: str = "",
        rule: str | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.method = method
        self.target = target
        self.rule = rule
        self.address = address


@dataclass(frozen=True)
class Request:
    """A proxy request: a tunnel (``CONNECT``) or a plain-HTTP request in absolute form."""

    method: str
    host: str  # normalised
    port: int
    target: str  # as the client wrote it (for records)
    tunnel: bool
    path: str = ""  # origin form, for forwarding (plain HTTP only)
    version: str = "HTTP/1.1"
    headers: tuple[tuple[str, str], ...] = ()


def parse_request(head: bytes) -> Request:
    """Parse one request head (ending ``CRLF CRLF``); a :class:`Refusal` if it is malformed,
    not a proxy request, or aimed at an IP address."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise _bad("the request head is not ASCII") from None
    if not text.endswith("\r\n\r\n"):
        raise _bad("the request head does not end with an empty line")
    lines = text[:-4].split("\r\n")
    if any(c in line for line in lines for c in "\r\n\0"):
        raise _bad("bare CR, LF or NUL in the request head")
    m = _REQUEST_LINE.match(lines[0])
    if m is None:
        raise _bad(f"not an HTTP/1.x request line: {_shown(lines[0][:80])}")
    method, target, version = m.groups()
    if len(target) > MAX_TARGET:
        raise _bad(f"request target longer than {MAX_TARGET} characters", method=method)
    headers = _headers(lines[1:], method, target)
    if method == "CONNECT":
        host_text, port = _authority(target, method, None)
        return Request(method, _host(host_text, method, target), port, target, True)
    if not target.lower().startswith("http://"):
        if target.lower().startswith("https://"):
            reason = "https:// URLs go through a CONNECT tunnel, not a plain request"
        else:
            reason = "not a proxy request (expected CONNECT host:port or an http:// URL)"
        raise _bad(reason, method=method, target=target)
    rest = target[len("http://") :]
    cut = min((i for i in (rest.find(c) for c in "/?") if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:] or "/"
    if "#" in target:
        raise _bad("a fragment (#) in the request target", method=method, target=target)
    if "@" in authority:
        raise _bad("user information (@) in the URL", method=method, target=target)
    if path.startswith("?"):
        path = "/" + path
    host_text, port = _authority(authority, method, 80)
    host = _host(host_text, method, target)
    return Request(method, host, port, target, False, path, version, headers)


def decide(egress: Egress, request: Request) -> HostRule:
    """The allowlist entry that lets ``request`` through, or a 403 :class:`Refusal`."""
    rule = egress.match(request.host, request.port)
    if rule is None:
        raise Refusal(
            403,
            "http_request_denied",
            f"{request.host}:{request.port} is not in the sandbox profile's network allowlist",
            method=request.method,
            target=request.target,
        )
    return rule


def address_refusal(address: str, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be connected to (``"a loopback address"``, …), or None."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return "a Teredo address"
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            found = address_refusal(str(embedded), allow_private=allow_private)
            return None if found is None else f"{found} (IPv4 inside IPv6)"
    if any(ip in net for net in _METADATA):
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "an unspecified ('this host') address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:  # before "reserved": ::1 is in the reserved ::/8
        return None if allow_private else "a loopback address"
    if ip.is_reserved or ip == _BROADCAST:
        return "a reserved address"
    if allow_private:
        return None
    if not ip.is_global:
        return "a private (non-global) address"
    return None


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def forward_head(request: Request) -> bytes:
    """The head sent to the destination for a plain-HTTP request: origin form, ``Host`` set to
    the destination, hop-by-hop and proxy headers dropped, ``Connection: close``."""
    default = 80
    authority = request.host if request.port == default else f"{request.host}:{request.port}"
    lines = [f"{request.method} {request.path} {request.version}", f"Host: {authority}"]
    for name, value in request.headers:
        if name.lower() not in _HOP and name.lower() != "host":
            lines.append(f"{name}: {value}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


_STATUS_TEXT = {
    400: "Bad Request",
    403: "Forbidden",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def refusal_response(refusal: Refusal) -> bytes:
    """The proxy's answer to a refused request: the status, an RFC 9209 ``Proxy-Status``
    header, and the reason as a one-line text body."""
    reason = _shown(refusal.reason, quote=False)
    body = f"ringfence egress proxy: {reason}\n".encode("ascii")
    details = reason.replace("\\", "\\\\").replace('"', '\\"')
    head = (
        f"HTTP/1.1 {refusal.status} {_STATUS_TEXT.get(refusal.status, 'Error')}\r\n"
        f'Proxy-Status: ringfence; error={refusal.error}; details="{details}"\r\n'
        "Content-Type: text/plain; charset=us-ascii\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressRecord:
    """One connection the proxy was asked for.

    ``allowed``: the proxy connected it to ``address``.  ``status``: the proxy's own answer —
    200 (tunnel opened, or plain request forwarded), or the refusal's status.  ``reason``:
    the allow entry that matched, or why it was refused.  ``rule``: that entry, also when the
    destination then could not be reached.  ``bytes_out``/``bytes_in``: relayed from and to
    the sandbox.
    """

    method: str
    target: str
    allowed: bool
    status: int
    reason: str
    rule: str | None = None
    address: str | None = None
    bytes_out: int = 0
    bytes_in: int = 0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready form (for audit records)."""
        return {
            "method": self.method,
            "target": self.target,
            "allowed": self.allowed,
            "status": self.status,
            "reason": self.reason,
            "rule": self.rule,
            "address": self.address,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
        }


@dataclass(frozen=True)
class EgressReport:
    """Every connection one run's proxy was asked for, in order; past the proxy's record limit
    only counted (``dropped``)."""

    connections: tuple[EgressRecord, ...] = ()
    dropped: int = 0

    @property
    def refused(self) -> tuple[EgressRecord, ...]:
        """The connections that were not let through."""
        return tuple(c for c in self.connections if not c.allowed)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready form (for audit records)."""
        return {"connections": [c.summary() for c in self.connections], "dropped": self.dropped}


# -- helpers -------------------------------------------------------------------------------


def _bad(reason: str, *, method: str = "", target: str = "") -> Refusal:
    return Refusal(400, "http_request_error", reason, method=method, target=_shown(target, False))


def _headers(lines: list[str], method: str, target: str) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_HEADERS:
        raise _bad(f"more than {MAX_HEADERS} header fields", method=method, target=target)
    out = []
    lengths = 0
    chunked = False
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise _bad(f"malformed header field {_shown(line[:60])}", method=method, target=target)
        value = value.strip(" \t")
        if not _FIELD_VALUE.match(value):
            raise _bad(f"bad value in header {name}", method=method, target=target)
        lengths += name.lower() == "content-length"
        chunked = chunked or name.lower() == "transfer-encoding"
        out.append((name, value))
    if lengths > 1 or (lengths and chunked):
        # Two framings: the destination and the proxy could disagree where a request ends.
        raise _bad("ambiguous message framing (Content-Length)", method=method, target=target)
    return tuple(out)


def _authority(text: str, method: str, default_port: int | None) -> tuple[str, int]:
    if text.startswith("["):
        raise Refusal(
            403,
            "destination_ip_prohibited",
            f"{_shown(text)} is an IP address: the proxy connects to allowed host names only",
            method=method,
            target=text,
        )
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise _bad("CONNECT needs host:port", method=method, target=text)
        return host, default_port
    port = _port(port_text)
    if port is None:
        raise _bad(f"{_shown(port_text)} is not a port", method=method, target=text)
    return host, port


def _host(text: str, method: str, target: str) -> str:
    if _is_ip(text) or _looks_numeric(text):
        raise Refusal(
            403,
            "destination_ip_prohibited",
            f"{_shown(text)} is an IP address: the proxy connects to allowed host names only",
            method=method,
            target=target,
        )
    try:
        return parse_host(text)
    except ValueError as exc:
        raise _bad(str(exc), method=method, target=target) from None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _looks_numeric(text: str) -> bool:
    last = text.rstrip(".").rsplit(".", 1)[-1]
    return bool(last) and text.isascii() and not last[0].isalpha() and bool(_LABEL.match(last))


def _port(text: str) -> int | None:
    if not _PORT.match(text) or (len(text) > 1 and text[0] == "0"):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def _shown(text: str, quote: bool = True) -> str:
    """``text`` with anything but printable ASCII escaped, cut at 256 characters."""
    safe = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text[:256])
    if len(text) > 256:
        safe += "..."
    return repr(safe) if quote else safe

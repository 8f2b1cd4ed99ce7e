"""Network allowlists of sandbox profiles: loading, host rules, the proxy's request parsing and
address checks (the I/O-free core in runtime/sandbox/egress.py), tier rules, and the record
a run's connections leave.  No sockets, no sandbox."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.errors import ConfigError, SandboxError, SandboxUnavailable
from ringfence.runtime.audit import AuditLog
from ringfence.runtime.sandbox import (
    Availability,
    Egress,
    EgressRecord,
    EgressReport,
    HostRule,
    LocalSandbox,
    SandboxExecutor,
    SandboxProfile,
    SandboxResult,
    Tier,
    profiles_from_text,
    run_guarded,
    seccomp,
)
from ringfence.runtime.sandbox import local as local_mod
from ringfence.runtime.sandbox.bwrap import EGRESS_SOCKET, layout
from ringfence.runtime.sandbox.egress import (
    Refusal,
    Request,
    address_refusal,
    decide,
    forward_head,
    parse_host_rule,
    parse_request,
    refusal_response,
)

from ._support import GuardFactory, records_of


def _load(network: str, tier: str = "bwrap") -> SandboxProfile:
    text = f"sandbox:\n  profiles:\n    p:\n      tier: {tier}\n      network: {network}\n"
    return profiles_from_text(text, source="sb.yaml")["p"]


def _error(network: str, tier: str = "bwrap") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(network, tier)
    return info.value


# -- loading -------------------------------------------------------------------------------


def test_network_none_is_the_default_and_means_no_proxy() -> None:
    assert _load("none").network is None
    assert profiles_from_text("sandbox:\n  profiles:\n    p: {}\n")["p"].network is None


def test_allowlist_loads() -> None:
    profile = _load('{allow: [API.Example.com, "*.pypi.org", "files.example.com:8443"]}')
    assert profile.network == Egress(
        (
            HostRule("api.example.com"),
            HostRule("pypi.org", wildcard=True),
            HostRule("files.example.com", 8443),
        )
    )
    assert profile.network.allow_private is False
    assert [str(r) for r in profile.network.allow] == [
        "api.example.com",
        "*.pypi.org",
        "files.example.com:8443",
    ]
    hash(profile)  # runners cache by profile


def test_allow_private_must_be_said() -> None:
    profile = _load("{allow: [localhost], allow_private: true}")
    assert profile.network == Egress((HostRule("localhost"),), allow_private=True)


@pytest.mark.parametrize(
    ("network", "field", "message"),
    [
        ("full", "network", "'none' or {allow"),
        ("[pypi.org]", "network", "allow:"),
        ("{}", "network.allow", "non-empty list"),
        ("{allow: []}", "network.allow", "network: none"),
        ("{allow: pypi.org}", "network.allow", "non-empty list"),
        ("{allow: [a.com], ports: [22]}", "network.ports", "unknown key"),
        ("{allow: [a.com], allow_private: 'yes'}", "network.allow_private", "true or false"),
        ("{allow: [a.com, A.COM]}", "network.allow[1]", "listed twice"),
        ("{allow: [1]}", "network.allow[0]", "host name"),
        ("{allow: [null]}", "network.allow[0]", "host name"),
        ("{allow: ['*']}", "network.allow[0]", "every host"),
        ("{allow: ['*.*.com']}", "network.allow[0]", "every host"),
        ("{allow: ['*.com']}", "network.allow[0]", "top-level domain"),
        ("{allow: ['api.*.com']}", "network.allow[0]", "may only start"),
        ("{allow: ['*api.com']}", "network.allow[0]", "may only start"),
        ("{allow: [1.2.3.4]}", "network.allow[0]", "IP address"),
        ("{allow: ['10.0.0.1:443']}", "network.allow[0]", "IP address"),
        ("{allow: ['169.254.169.254']}", "network.allow[0]", "IP address"),
        ("{allow: ['[::1]:443']}", "network.allow[0]", "IPv6"),
        ("{allow: ['::1']}", "network.allow[0]", "IPv6"),
        ("{allow: ['0x7f.1']}", "network.allow[0]", "reads as an IP address"),
        ("{allow: ['2130706433']}", "network.allow[0]", "reads as an IP address"),
        ("{allow: ['127.1']}", "network.allow[0]", "reads as an IP address"),
        ("{allow: ['a.com:0']}", "network.allow[0]", "not a port"),
        ("{allow: ['a.com:65536']}", "network.allow[0]", "not a port"),
        ("{allow: ['a.com:https']}", "network.allow[0]", "not a port"),
        ("{allow: ['a.com:0443']}", "network.allow[0]", "not a port"),
        ("{allow: ['a.com:']}", "network.allow[0]", "not a port"),
        ("{allow: ['a_b.com']}", "network.allow[0]", "not a host name"),
        ("{allow: ['-a.com']}", "network.allow[0]", "not a host name"),
        ("{allow: ['a..com']}", "network.allow[0]", "not a host name"),
        ("{allow: ['a com']}", "network.allow[0]", "not a host name"),
        ("{allow: ['bücher.de']}", "network.allow[0]", "xn--"),
        ("{allow: ['']}", "network.allow[0]", "empty"),
        ("{allow: ['" + "a" * 64 + ".com']}", "network.allow[0]", "not a host name"),
        ("{allow: ['" + "a." * 127 + "com']}", "network.allow[0]", "253"),
    ],
)
def test_network_errors_name_the_field(network: str, field: str, message: str) -> None:
    exc = _error(network)
    assert exc.code == "config.sandbox.network"
    assert exc.source == "sb.yaml"
    assert exc.line == 5
    assert exc.field == f"sandbox.profiles.p.{field}"
    assert message in exc.reason


def test_process_tier_profile_with_an_allowlist_does_not_load() -> None:
    exc = _error("{allow: [pypi.org]}", tier="process")
    assert exc.code == "config.sandbox.network"
    assert exc.field == "sandbox.profiles.p.network"
    assert "process tier cannot enforce" in exc.reason
    assert _load("none", tier="process").network is None


# -- host rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "host", "port", "allowed"),
    [
        ("api.example.com", "api.example.com", 443, True),
        ("api.example.com", "api.example.com", 80, True),
        ("api.example.com", "api.example.com", 8443, False),
        ("api.example.com", "example.com", 443, False),
        ("api.example.com", "x.api.example.com", 443, False),
        ("api.example.com", "api.example.com.evil.net", 443, False),
        ("*.pypi.org", "files.pypi.org", 443, True),
        ("*.pypi.org", "a.b.pypi.org", 443, True),
        ("*.pypi.org", "pypi.org", 443, False),  # the apex is its own entry
        ("*.pypi.org", "evilpypi.org", 443, False),
        ("*.pypi.org", "pypi.org.evil.net", 443, False),
        ("files.example.com:8443", "files.example.com", 8443, True),
        ("files.example.com:8443", "files.example.com", 443, False),
        ("*.example.com:22", "git.example.com", 22, True),
    ],
)
def test_rule_matching(rule: str, host: str, port: int, allowed: bool) -> None:
    assert parse_host_rule(rule).matches(host, port) is allowed


def test_first_matching_rule_is_reported() -> None:
    egress = Egress((parse_host_rule("*.example.com"), parse_host_rule("api.example.com")))
    assert str(egress.match("api.example.com", 443)) == "*.example.com"
    assert egress.match("example.com", 443) is None
    assert egress.describe() == {
        "allow": ["*.example.com", "api.example.com"],
        "allow_private": False,
    }


@given(st.text(max_size=80))
def test_rule_parser_only_raises_value_errors(text: str) -> None:
    try:
        rule = parse_host_rule(text)
    except ValueError:
        return
    assert parse_host_rule(str(rule)) == rule  # what it accepts, it prints back the same
    assert "*" not in rule.name and ":" not in rule.name


# -- requests ------------------------------------------------------------------------------

EGRESS = Egress((parse_host_rule("api.example.com"), parse_host_rule("*.pypi.org")))


def _refusal(head: bytes) -> Refusal:
    with pytest.raises(Refusal) as info:
        parse_request(head)
    return info.value


def test_connect_request() -> None:
    request = parse_request(b"CONNECT API.example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert request == Request("CONNECT", "api.example.com", 443, "API.example.com:443", True)
    assert str(decide(EGRESS, request)) == "api.example.com"


def test_absolute_request_is_forwarded_in_origin_form() -> None:
    head = (
        b"POST http://files.pypi.org/simple/x?y=1 HTTP/1.1\r\n"
        b"Host: evil.example.net\r\nProxy-Authorization: Basic c2VjcmV0\r\n"
        b"Proxy-Connection: keep-alive\r\nConnection: keep-alive, x-drop\r\n"
        b"Content-Length: 3\r\nUser-Agent: t\r\n\r\n"
    )
    request = parse_request(head)
    assert (request.host, request.port, request.path, request.tunnel) == (
        "files.pypi.org",
        80,
        "/simple/x?y=1",
        False,
    )
    assert str(decide(EGRESS, request)) == "*.pypi.org"
    assert forward_head(request) == (
        b"POST /simple/x?y=1 HTTP/1.1\r\nHost: files.pypi.org\r\n"
        b"Content-Length: 3\r\nUser-Agent: t\r\nConnection: close\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("target", "path", "port"),
    [
        ("http://api.example.com", "/", 80),
        ("http://api.example.com?q", "/?q", 80),
        ("HTTP://api.example.com:443/a", "/a", 443),
        ("http://api.example.com./a", "/a", 80),
    ],
)
def test_absolute_targets(target: str, path: str, port: int) -> None:
    request = parse_request(f"GET {target} HTTP/1.0\r\n\r\n".encode())
    assert (request.host, request.path, request.port) == ("api.example.com", path, port)
    assert forward_head(request).startswith(f"GET {path} HTTP/1.0\r\nHost: ".encode())


def test_non_default_port_is_kept_in_the_host_header() -> None:
    request = parse_request(b"GET http://api.example.com:8080/ HTTP/1.1\r\n\r\n")
    assert b"\r\nHost: api.example.com:8080\r\n" in forward_head(request)


@pytest.mark.parametrize(
    "target",
    [
        "CONNECT 127.0.0.1:443",
        "CONNECT 169.254.169.254:80",
        "CONNECT [::1]:443",
        "CONNECT [fd00:ec2::254]:80",
        "CONNECT 2130706433:443",
        "CONNECT 0x7f.1:443",
        "CONNECT 127.1:443",
        "GET http://10.0.0.1/",
        "GET http://169.254.169.254/latest/meta-data/",
        "GET http://[::ffff:127.0.0.1]:8080/",
    ],
)
def test_ip_address_targets_are_refused(target: str) -> None:
    refusal = _refusal(f"{target} HTTP/1.1\r\n\r\n".encode())
    assert refusal.status == 403
    assert refusal.error == "destination_ip_prohibited"
    assert "IP address" in refusal.reason
    assert refusal.method == target.split(maxsplit=1)[0]


def test_hosts_off_the_list_are_refused() -> None:
    for head, where in [
        (b"CONNECT evil.example.net:443 HTTP/1.1\r\n\r\n", "evil.example.net:443"),
        (b"CONNECT api.example.com:22 HTTP/1.1\r\n\r\n", "api.example.com:22"),
        (b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n", "pypi.org:443"),
        (b"GET http://api.example.com:8080/ HTTP/1.1\r\n\r\n", "api.example.com:8080"),
    ]:
        with pytest.raises(Refusal) as info:
            decide(EGRESS, parse_request(head))
        assert info.value.status == 403
        assert info.value.error == "http_request_denied"
        assert info.value.reason.startswith(where)
        assert "allowlist" in info.value.reason


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "not ASCII"),
        (b"CONNECT api.example.com:443 HTTP/1.1\r\n", "empty line"),
        (b"\r\n\r\n", "request line"),
        (b"connect api.example.com:443 HTTP/1.1\r\n\r\n", "request line"),
        (b"CONNECT api.example.com:443 HTTP/2.0\r\n\r\n", "request line"),
        (b"CONNECT  api.example.com:443 HTTP/1.1\r\n\r\n", "request line"),
        (b"CONNECT api.example.com:443\r\n\r\n", "request line"),
        (b"CONNECT api.example.com HTTP/1.1\r\n\r\n", "host:port"),
        (b"CONNECT api.example.com:99999 HTTP/1.1\r\n\r\n", "not a port"),
        (b"CONNECT api.example.com:-1 HTTP/1.1\r\n\r\n", "not a port"),
        (b"CONNECT api_x.example.com:443 HTTP/1.1\r\n\r\n", "not a host name"),
        (b"CONNECT :443 HTTP/1.1\r\n\r\n", "empty host"),
        (b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", "not a proxy request"),
        (b"GET https://api.example.com/ HTTP/1.1\r\n\r\n", "CONNECT tunnel"),
        (b"GET ftp://api.example.com/ HTTP/1.1\r\n\r\n", "not a proxy request"),
        (b"GET http://api.example.com@evil.net/ HTTP/1.1\r\n\r\n", "user information"),
        (b"GET http://api.example.com/#x HTTP/1.1\r\n\r\n", "fragment"),
        (b"GET http://api.example.com/ HTTP/1.1\r\nX\r\n\r\n", "malformed header"),
        (b"GET http://api.example.com/ HTTP/1.1\r\n folded: x\r\n\r\n", "malformed header"),
        (b"GET http://api.example.com/ HTTP/1.1\r\nA: b\nC: d\r\n\r\n", "bare CR"),
        (b"GET http://api.example.com/ HTTP/1.1\r\nA: b\x00\r\n\r\n", "bare CR"),
        (b"GET http://api.example.com/ HTTP/1.1\r\nA: \x7f\r\n\r\n", "bad value"),
        (
            b"POST http://api.example.com/ HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\n",
            "framing",
        ),
        (
            b"POST http://api.example.com/ HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "framing",
        ),
        (b"GET http://api.example.com/" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n", "longer than"),
        (b"GET http://a.com/ HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n", "more than 100"),
    ],
)
def test_malformed_requests_are_refused(head: bytes, message: str) -> None:
    refusal = _refusal(head)
    assert refusal.status == 400
    assert refusal.error == "http_request_error"
    assert message in refusal.reason


@given(st.binary(max_size=300))
def test_request_parser_refuses_garbage_only_with_a_refusal(data: bytes) -> None:
    try:
        request = parse_request(data)
    except Refusal as refusal:
        assert refusal.status in (400, 403)
        assert refusal_response(refusal).startswith(f"HTTP/1.1 {refusal.status} ".encode())
        return
    assert request.host and 1 <= request.port <= 65535


@given(st.text(max_size=100))
def test_any_connect_target_is_parsed_or_refused(target: str) -> None:
    head = f"CONNECT {target} HTTP/1.1\r\n\r\n".encode("utf-8", "surrogatepass")
    try:
        request = parse_request(head)
    except Refusal:
        return
    assert request.tunnel
    assert EGRESS.match(request.host, request.port) is None or request.host.endswith(
        ("api.example.com", ".pypi.org")
    )


def test_refusal_response_cannot_inject_headers() -> None:
    refusal = Refusal(403, "http_request_denied", 'evil\r\nSet-Cookie: a=b "quoted" \\ ü')
    raw = refusal_response(refusal)
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 403 Forbidden"
    assert not any(line.startswith(b"Set-Cookie") for line in lines)
    assert lines[1].startswith(b"Proxy-Status: ringfence; error=http_request_denied; details=")
    assert b'\\"quoted\\"' in lines[1]
    assert body.startswith(b"ringfence egress proxy: evil\\x0d\\x0aSet-Cookie")
    assert f"Content-Length: {len(body)}".encode() in lines


# -- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why", "even_when_private_allowed"),
    [
        ("169.254.169.254", "metadata", True),
        ("169.254.170.2", "metadata", True),
        ("100.100.100.200", "metadata", True),
        ("fd00:ec2::254", "metadata", True),
        ("169.254.1.1", "link-local", True),
        ("fe80::1", "link-local", True),
        ("fe80::1%eth0", "link-local", True),
        ("0.0.0.0", "unspecified", True),
        ("0.1.2.3", "unspecified", True),
        ("::", "unspecified", True),
        ("224.0.0.1", "multicast", True),
        ("ff02::1", "multicast", True),
        ("240.0.0.1", "reserved", True),
        ("255.255.255.255", "reserved", True),
        ("::ffff:169.254.169.254", "metadata", True),
        ("64:ff9b::a9fe:a9fe", "metadata", True),
        ("2002:a9fe:a9fe::1", "metadata", True),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", True),
        ("127.0.0.1", "loopback", False),
        ("127.8.9.10", "loopback", False),
        ("::1", "loopback", False),
        ("::ffff:127.0.0.1", "loopback", False),
        ("10.1.2.3", "private", False),
        ("172.16.0.1", "private", False),
        ("192.168.1.1", "private", False),
        ("100.64.0.1", "private", False),
        ("198.18.0.1", "private", False),
        ("fc00::1", "private", False),
        ("64:ff9b::a00:1", "private", False),
    ],
)
def test_addresses_that_are_refused(
    address: str, why: str, even_when_private_allowed: bool
) -> None:
    refused = address_refusal(address, allow_private=False)
    assert refused is not None and why in refused
    with_private = address_refusal(address, allow_private=True)
    if even_when_private_allowed:
        assert with_private is not None and why in with_private
    else:
        assert with_private is None


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(address, allow_private=False) is None


# -- tiers, records, seccomp, bwrap arguments ----------------------------------------------

NET = Egress((HostRule("pypi.org"),))


def _sandbox(monkeypatch: pytest.MonkeyPatch, *available: Tier) -> LocalSandbox:
    def probe(self: LocalSandbox, tier: Tier) -> Availability:
        return Availability(tier, tier in available, "ok" if tier in available else "missing")

    monkeypatch.setattr(LocalSandbox, "_probe", probe)
    return LocalSandbox()


def test_process_tier_profile_with_an_allowlist_is_refused_at_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = _sandbox(monkeypatch, Tier.BWRAP, Tier.PROCESS)
    profile = SandboxProfile(name="p", tier=Tier.PROCESS, network=NET, allow_weaker=True)
    with pytest.raises(SandboxUnavailable, match="process tier cannot enforce"):
        box.tier_for(profile)
    with pytest.raises(SandboxUnavailable):
        box.run(profile, argv=["true"])


def test_allowlist_without_bwrap_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    box = _sandbox(monkeypatch, Tier.PROCESS)
    with pytest.raises(SandboxUnavailable, match="does not allow a weaker tier"):
        box.tier_for(SandboxProfile(name="p", network=NET))


def test_weaker_tier_runs_without_network_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    box = _sandbox(monkeypatch, Tier.PROCESS)
    profile = SandboxProfile(name="lenient", network=NET, allow_weaker=True)
    with caplog.at_level(logging.WARNING, logger="ringfence.sandbox"):
        assert box.tier_for(profile) is Tier.PROCESS
    (record,) = caplog.records
    assert "WEAKER process" in record.getMessage()
    assert "NO network" in record.getMessage()


def test_summary_carries_the_connections_only_when_a_proxy_ran() -> None:
    plain = SandboxResult(0, b"", b"", 1, Tier.BWRAP, "p")
    assert "egress" not in plain.summary()
    allowed = EgressRecord("CONNECT", "pypi.org:443", True, 200, "allowed by pypi.org")
    refused = EgressRecord("GET", "http://x.net/", False, 403, "x.net:80 is not in ...")
    result = SandboxResult(
        0, b"", b"", 1, Tier.BWRAP, "p", egress=EgressReport((allowed, refused), dropped=2)
    )
    assert result.egress is not None and result.egress.refused == (refused,)
    summary = result.summary()["egress"]
    assert summary["dropped"] == 2
    assert [c["allowed"] for c in summary["connections"]] == [True, False]
    assert summary["connections"][1] == refused.summary()


class _NetSandbox:
    """A Sandbox port whose runs report two connections (one refused)."""

    def tier_for(self, profile: SandboxProfile) -> Tier:
        return Tier.BWRAP

    def run(
        self,
        profile: SandboxProfile,
        *,
        argv: Sequence[str] | None = None,
        code: str | None = None,
        stdin: bytes = b"",
        env: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        report = EgressReport(
            (
                EgressRecord(
                    "CONNECT", "pypi.org:443", True, 200, "allowed", "pypi.org", "1.2.3.4"
                ),
                EgressRecord("CONNECT", "evil.net:443", False, 403, "evil.net:443 is not in ..."),
            )
        )
        return SandboxResult(0, b"", b"", 1, Tier.BWRAP, profile.name, egress=report)


POLICY = """\
version: 1
name: code
tools:
  run_python:
    args:
      type: object
      properties: {code: {type: string}}
      additionalProperties: false
rules:
  - id: code.sandboxed
    effect: allow
    tool: run_python
    sandbox: net
"""


def test_run_guarded_records_every_connection(
    make_guard: GuardFactory, memory_log: AuditLog
) -> None:
    guard = make_guard(POLICY)
    executor = SandboxExecutor(_NetSandbox(), {"net": SandboxProfile(name="net", network=NET)})
    action = guard.action("run_python", {"code": "1"})
    result = run_guarded(guard, action, guard.check(action), executor, code="1")
    assert result.egress is not None
    (outcome,) = records_of(memory_log, "outcome")
    connections = outcome["content"]["sandbox"]["egress"]["connections"]
    assert [(c["target"], c["allowed"], c["status"]) for c in connections] == [
        ("pypi.org:443", True, 200),
        ("evil.net:443", False, 403),
    ]
    assert connections[0]["address"] == "1.2.3.4"


def test_seccomp_inet_variant() -> None:
    closed = seccomp.build_filter(no_sockets=False, pin_process_group=False, machine="x86_64")
    inet = seccomp.build_filter(
        no_sockets=False, pin_process_group=False, inet=True, machine="x86_64"
    )
    assert len(inet) == len(closed) + 16  # two more families: AF_INET, AF_INET6
    with pytest.raises(ValueError, match="exclude"):
        seccomp.build_filter(no_sockets=True, pin_process_group=True, inet=True)


def test_bwrap_layout_binds_the_proxy_socket_and_keeps_the_network_namespace() -> None:
    profile = SandboxProfile(name="p", network=NET)
    args = layout(profile, egress_socket="/tmp/x/proxy.sock")
    assert "--unshare-all" in args
    assert "--share-net" not in args
    assert args[-5:] == ["--ro-bind", "/tmp/x/proxy.sock", EGRESS_SOCKET, "--remount-ro", "/"]
    assert EGRESS_SOCKET not in layout(profile)


def test_a_proxy_that_cannot_start_means_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(98, "Address already in use")

    def spawn(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sandbox must not start without its proxy")

    box = _sandbox(monkeypatch, Tier.BWRAP)
    monkeypatch.setattr(local_mod.EgressProxy, "in_private_folder", fail)
    monkeypatch.setattr(LocalSandbox, "_bwrap_spawn", spawn)
    with pytest.raises(SandboxError, match="egress proxy of sandbox profile 'p' could not be"):
        box.run(SandboxProfile(name="p", network=NET), argv=["true"])

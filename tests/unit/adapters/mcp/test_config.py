"""The gateway configuration file: what loads, and bad input named by file, line and field."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from ringfence.adapters.mcp.config import config_from_text, load_config
from ringfence.errors import ConfigError

GOOD = """
policy: policy.yaml
data_dir: state
identity: {agent: ide, roles: [dev], user: alice}
pinning: allowlist
scan: warn
record_results: content
servers:
  time:
    command: mcp-server-time
    args: [--local-timezone, UTC]
    env: {TZ: UTC}
    trusted: true
  web:
    url: https://mcp.example.com/mcp
    headers: {Authorization: Bearer x}
    labels: [web]
    timeout: 5
    tools:
      search: {labels: [search], proxies: {tool: name, arguments: args}, record_results: hash}
"""


def load(text: str, base: str = "/etc/rf") -> object:
    return config_from_text(textwrap.dedent(text).lstrip("\n"), source="gw.yaml", base=base)


def test_a_full_config_loads() -> None:
    c = config_from_text(GOOD.lstrip("\n"), source="gw.yaml", base="/etc/rf")
    assert c.identity.agent == "ide" and c.identity.roles == ("dev",) and c.identity.user == "alice"
    assert c.pinning == "allowlist" and c.scan == "warn" and c.record_results == "content"
    time, web = c.servers["time"], c.servers["web"]
    assert time.transport == "stdio" and time.args == ("--local-timezone", "UTC") and time.trusted
    assert web.transport == "http" and web.timeout == 5 and not web.trusted
    search = web.tools["search"]
    assert search.proxies is not None and search.proxies.tool == "name"
    assert c.path(c.policy) == Path("/etc/rf/policy.yaml")
    assert c.pins_path == Path("/etc/rf/state/mcp-pins.json")


def test_defaults_are_strict() -> None:
    c = load("policy: p.yaml\nservers: {a: {command: x}}\n")
    assert c.pinning == "tofu" and c.scan == "quarantine" and c.record_results == "hash"
    assert c.servers["a"].restart and not c.servers["a"].trusted and not c.servers["a"].inherit_env


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "policy: p\nservers:\n  a: {command: x, colour: red}\n",
            3,
            "servers.a.colour",
            "unknown key",
        ),
        (
            "policy: p\nservers:\n  a:\n    command: x\n    tools:\n      t: {lables: [x]}\n",
            6,
            "servers.a.tools.t.lables",
            "unknown key",
        ),
        ("policy: p\ncolour: red\nservers: {a: {command: x}}\n", 2, "colour", "unknown key"),
        (
            "policy: p\nservers:\n  a:\n    command: x\n    timeout: soon\n",
            5,
            "servers.a.timeout",
            "Expected `float",
        ),
        ("servers: {a: {command: x}}\n", 1, None, "policy"),
        ("policy: p\nservers: {}\n", 2, "servers", "at least one server"),
        ("policy: p\nservers:\n  a: {}\n", 3, "servers.a", "exactly one of 'command'"),
        (
            "policy: p\nservers:\n  a: {command: x, url: 'http://h/'}\n",
            3,
            "servers.a",
            "exactly one",
        ),
        (
            "policy: p\nservers:\n  a: {url: 'ftp://h/'}\n",
            3,
            "servers.a.url",
            "http:// or https://",
        ),
        ("policy: p\nservers:\n  A_b: {command: x}\n", 3, "servers.A_b", "server names"),
        ("policy: p\nservers:\n  a__b: {command: x}\n", 3, "servers.a__b", "server names"),
        (
            "policy: p\nservers:\n  a: {command: x, headers: {k: v}}\n",
            3,
            "servers.a.headers",
            "HTTP",
        ),
        ("policy: p\nservers:\n  a: {command: x, timeout: 0}\n", 3, "servers.a.timeout", "between"),
        (
            "policy: p\nservers:\n  a: {command: x, labels: [Bad Label]}\n",
            3,
            "servers.a.labels",
            "label",
        ),
        (
            "policy: p\npinning: sometimes\nservers: {a: {command: x}}\n",
            2,
            "pinning",
            "Invalid enum",
        ),
        (
            "policy: p\nmax_message_bytes: 1\nservers: {a: {command: x}}\n",
            2,
            "max_message_bytes",
            "1 KiB",
        ),
        ("policy: p\n__base__: /\nservers: {a: {command: x}}\n", 2, "__base__", "unknown key"),
        (
            "policy: p\nservers: {a: {command: x}}\nlisten: {tokens: {secret: {agent: a}}}\n",
            3,
            "listen.tokens.secret",
            "sha256",
        ),
    ],
)
def test_bad_config_names_line_and_field(
    text: str, line: int, field: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    err = info.value
    assert err.source == "gw.yaml"
    assert err.line == line
    assert err.field == field
    assert message in err.message
    assert err.code.startswith("config.")


@pytest.mark.parametrize(
    "text",
    [
        "policy: p\npolicy: q\nservers: {a: {command: x}}\n",  # duplicate key
        "policy: &x p\nservers: {a: {command: *x}}\n",  # alias
        "policy: [unclosed\n",
        "- a list\n",
        "",
    ],
)
def test_malformed_yaml_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    assert info.value.source == "gw.yaml"


def test_tokens_are_digests(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"tok").hexdigest()
    (tmp_path / "gw.yaml").write_text(
        "policy: p.yaml\nservers: {a: {command: x}}\n"
        f"listen: {{tokens: {{{digest}: {{agent: z}}}}}}\n"
    )
    c = load_config(tmp_path / "gw.yaml")
    assert c.listen is not None and c.listen.tokens[digest].agent == "z"
    assert c.base == str(tmp_path.resolve())


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")

"""The MCP gateway's configuration file: servers, policy, audit store, labels, identity.

A YAML file, read with the same strict loader as policies (duplicate keys, aliases and
non-JSON scalars are errors) and checked against the structs below: an unknown key, a wrong
type or a missing value is a :class:`~ringfence.errors.ConfigError` naming the file, line and
field.  Paths in it are relative to the file's folder.  Example::

    policy: policy.yaml
    data_dir: .ringfence            # audit log, keys, tool pins
    identity: {agent: ide-assistant, user: alice}   # or, with credentials: see below
    secrets: {file: secrets.enc}      # secret handles (docs/secrets.md); default: data_dir's
    pinning: tofu                   # or allowlist (pins.json must list every tool)
    scan: quarantine                # or warn
    servers:
      time:
        command: mcp-server-time
        labels: [trusted]
      web:
        url: http://127.0.0.1:8931/mcp
        labels: [untrusted]          # what its tools return is untrusted content
        tools:
          search: {proxies: {tool: name, arguments: args}}

With ``identity: {verify: true}`` clients present signed credentials (docs/identity.md)
instead of being given the configured identity: over Streamable HTTP as
``Authorization: Bearer <credential>``, over stdio from an environment variable
(``credential_env``, default ``RINGFENCE_CREDENTIAL``) or a file (``credential_file``, read
again whenever it changes).  Credentials are verified against the registry in
``registry`` (default ``<data_dir>/identity``) for ``audience`` (default ``ringfence``)::

    identity: {verify: true, audience: mcp-gateway}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from ringfence.core.policy import yamlsrc
from ringfence.errors import ConfigError, PolicyError

__all__ = [
    "SEPARATOR",
    "GatewayConfig",
    "GatewayIdentity",
    "HttpListen",
    "Identity",
    "ProxySpec",
    "SecretsConfig",
    "ServerConfig",
    "ToolConfig",
    "load_config",
]

SEPARATOR = "__"
"""Between server and tool in the names the gateway exposes (``time__get_current_time``).

Not a dot: several clients only accept ``[A-Za-z0-9_-]`` in tool names."""

DEFAULT_CREDENTIAL_ENV = "RINGFENCE_CREDENTIAL"
"""Where a stdio client's credential is read from when ``identity.verify`` names no source."""

T = TypeVar("T")
_SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")


class ProxySpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """A "meta" tool that runs another tool: which arguments name it and carry its arguments."""

    tool: str
    arguments: str | None = None
    server: str | None = None  # the argument naming the server, if the tool can reach others


class ToolConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Per-tool settings."""

    labels: tuple[str, ...] = ()
    trusted: bool | None = None  # overrides the server's setting
    proxies: ProxySpec | None = None
    record_results: Literal["hash", "content"] | None = None


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One upstream MCP server: a child process over stdio, or a Streamable HTTP URL."""

    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    inherit_env: bool = False
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    labels: tuple[str, ...] = ()
    # Results of an untrusted server's tools label the session "untrusted" (the default:
    # tool output from a third party is content the model must not take orders from).
    trusted: bool = False
    tools: dict[str, ToolConfig] = {}
    timeout: float = 60.0
    connect_timeout: float = 30.0
    restart: bool = True
    # How the gateway negotiates with the server: "auto" (the newest era the server speaks,
    # 2026-07-28 first) or "handshake" (the initialize handshake of the 2025 era), for a
    # server that misbehaves on the new era or answers it more slowly.
    protocol: Literal["auto", "handshake"] = "auto"

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "stdio" if self.command is not None else "http"


class Identity(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Who the connected client acts as."""

    agent: str = "mcp-client"
    roles: tuple[str, ...] = ()
    user: str | None = None


class GatewayIdentity(Identity, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``identity:``: the identity every client acts as, or (``verify: true``) where the
    credentials that say who a client is come from and how they are checked.

    With ``verify``, ``agent``, ``roles`` and ``user`` are never what an allowed request acts
    as: a request without a valid credential is refused (and the refusal names the
    configured ``agent``, which is all that is known of the caller).
    """

    verify: bool = False
    audience: str | None = None  # the audience credentials must name (default "ringfence")
    registry: str | None = None  # the identity registry folder (default <data_dir>/identity)
    credential_env: str | None = None  # stdio: the variable holding the client's credential
    credential_file: str | None = None  # stdio: or a file holding it (read again on change)

    @property
    def stdio_env(self) -> str | None:
        """The environment variable a stdio client's credential is read from, if any."""
        if self.credential_file is not None:
            return None
        return self.credential_env or DEFAULT_CREDENTIAL_ENV


class HttpListen(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Serving MCP clients over Streamable HTTP instead of stdio."""

    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/mcp"
    # sha256 hex of a bearer token -> the identity it stands for; none: every client gets
    # the default identity (only sensible on loopback).
    tokens: dict[str, Identity] = {}


class SecretsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Where secret values come from (the policy's ``secrets:`` section says where they may go).

    The encrypted file and its key file default to ``<data_dir>/secrets.enc`` and
    ``<data_dir>/keys/secrets.key``; ``RINGFENCE_SECRETS_KEY`` replaces the key file.
    ``env``: also read ``<env_prefix><NAME>`` variables (they win over the file).
    """

    file: str | None = None
    key_file: str | None = None
    env: bool = True
    env_prefix: str = "RINGFENCE_SECRET_"


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The whole gateway configuration (see the module docstring)."""

    policy: str
    servers: dict[str, ServerConfig]
    data_dir: str = ".ringfence"
    identity: GatewayIdentity = GatewayIdentity()
    pins: str | None = None
    pinning: Literal["tofu", "allowlist"] = "tofu"
    scan: Literal["warn", "quarantine"] = "quarantine"
    record_results: Literal["hash", "content"] = "hash"
    max_message_bytes: int = 4 << 20
    max_result_bytes: int = 16 << 20
    durability: Literal["process", "fsync"] = "process"
    # stdio: tool calls answered without the SDK server's dispatch, sent to stdio servers on
    # the connection's direct lane (adapters/mcp/fastpath.py, pipe.py); false: the SDK's path.
    direct_calls: bool = True
    listen: HttpListen | None = None
    secrets: SecretsConfig | None = None
    base: str = msgspec.field(default="", name="__base__")  # the file's folder, set on load

    def path(self, value: str) -> Path:
        """``value`` resolved against the configuration file's folder."""
        return Path(self.base, value) if self.base else Path(value)

    @property
    def registry_path(self) -> Path:
        """The identity registry clients' credentials are verified against."""
        registry = self.identity.registry
        return self.path(registry) if registry else self.path(self.data_dir) / "identity"

    @property
    def pins_path(self) -> Path:
        """Where tool pins are kept."""
        return self.path(self.pins) if self.pins else self.path(self.data_dir) / "mcp-pins.json"


def load_config(path: str | Path) -> GatewayConfig:
    """Read and check a gateway configuration file."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from None
    return config_from_text(raw, source=source, base=str(Path(path).resolve().parent))


def config_from_text(
    text: str | bytes, *, source: str = "<config>", base: str = ""
) -> GatewayConfig:
    """Parse configuration text; ``base`` is the folder relative paths start from."""
    try:
        doc = yamlsrc.parse(text, source)
    except PolicyError as exc:
        raise ConfigError(
            exc.reason, code="config.yaml", source=exc.source, line=exc.line, field=exc.field
        ) from None
    if not isinstance(doc.value, dict):
        raise ConfigError("the configuration must be a mapping", source=source, line=1)
    if "__base__" in doc.value:
        raise doc_error(doc, ("__base__",), "unknown key")
    raw = dict(doc.value)
    # Maps of structs are converted entry by entry: msgspec reports a map key as "[...]",
    # and the error must name the server (or tool, or token) and its line.
    servers = raw.get("servers")
    if isinstance(servers, dict):
        raw["servers"] = {
            name: _server(doc, value, ("servers", name)) for name, value in servers.items()
        }
    listen = raw.get("listen")
    if isinstance(listen, dict) and isinstance(listen.get("tokens"), dict):
        tokens = {
            key: _convert(doc, value, Identity, ("listen", "tokens", key))
            for key, value in listen["tokens"].items()
        }
        raw["listen"] = {**listen, "tokens": tokens}
    config = _convert(doc, {**raw, "__base__": base}, GatewayConfig, ())
    _check(doc, config)
    return config


def _server(doc: yamlsrc.Located, value: Any, at: yamlsrc.Path) -> Any:
    if isinstance(value, dict) and isinstance(value.get("tools"), dict):
        tools = {
            name: _convert(doc, tool, ToolConfig, (*at, "tools", name))
            for name, tool in value["tools"].items()
        }
        value = {**value, "tools": tools}
    return _convert(doc, value, ServerConfig, at)


def _convert(doc: yamlsrc.Located, value: Any, kind: type[T], at: yamlsrc.Path) -> T:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise _located(doc, str(exc), at) from None


def doc_error(doc: yamlsrc.Located, path: yamlsrc.Path, message: str) -> ConfigError:
    """A ConfigError at ``path`` of a parsed file."""
    return ConfigError(
        message, source=doc.source, line=doc.line(path), field=yamlsrc.dotted(path) or None
    )


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _located(doc: yamlsrc.Located, text: str, at: yamlsrc.Path) -> ConfigError:
    """Turn msgspec's "Expected `int`, got `str` - at `$.x.timeout`" into file:line: field."""
    m = _AT.match(text)
    assert m is not None
    path: list[str | int] = list(at)
    for key, index in _PART.findall(m["path"] or ""):
        path.append(int(index) if index else key)
    message = m["message"]
    unknown = re.match(r"Object contains unknown field `(.+)`$", message)
    if unknown:
        path.append(unknown[1])
        message = "unknown key"
    return doc_error(doc, tuple(path), message)


def _check(doc: yamlsrc.Located, config: GatewayConfig) -> None:
    if not config.servers:
        raise doc_error(doc, ("servers",), "at least one server is needed")
    for name, server in config.servers.items():
        at: yamlsrc.Path = ("servers", name)
        if not _SERVER_NAME.match(name) or SEPARATOR in name:
            raise doc_error(
                doc, at, "server names are 1-32 of a-z, 0-9 and '-' (they prefix tool names)"
            )
        if (server.command is None) == (server.url is None):
            raise doc_error(doc, at, "give exactly one of 'command' (stdio) or 'url' (HTTP)")
        if server.url is not None and not re.match(r"^https?://", server.url):
            raise doc_error(doc, (*at, "url"), "must be an http:// or https:// URL")
        if server.command is not None and server.headers:
            raise doc_error(doc, (*at, "headers"), "headers only apply to an HTTP server")
        if not 0 < server.timeout <= 3600 or not 0 < server.connect_timeout <= 3600:
            raise doc_error(doc, (*at, "timeout"), "timeouts are between 0 and 3600 seconds")
        for label in server.labels:
            _label(doc, (*at, "labels"), label)
        for tool, tc in server.tools.items():
            for label in tc.labels:
                _label(doc, (*at, "tools", tool, "labels"), label)
    for field in ("max_message_bytes", "max_result_bytes"):
        value = getattr(config, field)
        if not 1024 <= value <= 1 << 30:
            raise doc_error(doc, (field,), "must be between 1 KiB and 1 GiB")
    _check_identity(doc, config)
    if config.listen is not None:
        for digest in config.listen.tokens:
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise doc_error(
                    doc, ("listen", "tokens", digest), "token keys are sha256 hex digests"
                )


def _check_identity(doc: yamlsrc.Located, config: GatewayConfig) -> None:
    ident = config.identity
    settings = ("audience", "registry", "credential_env", "credential_file")
    if not ident.verify:
        for name in settings:
            if getattr(ident, name) is not None:
                raise doc_error(doc, ("identity", name), "only applies with 'verify: true'")
        return
    if config.listen is not None and config.listen.tokens:
        # Either every client proves who it is, or a token says so: both would let a
        # static token stand in for a credential that was revoked or has expired.
        raise doc_error(
            doc,
            ("listen", "tokens"),
            "static tokens cannot be used with identity 'verify: true' (clients present "
            "credentials)",
        )
    if ident.credential_env is not None and ident.credential_file is not None:
        raise doc_error(
            doc, ("identity", "credential_file"), "give 'credential_env' or 'credential_file'"
        )
    if ident.audience is not None and not 0 < len(ident.audience) <= 256:
        raise doc_error(doc, ("identity", "audience"), "an audience is 1-256 characters")
    env = ident.credential_env
    if env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", env):
        raise doc_error(doc, ("identity", "credential_env"), "not an environment variable name")


def _label(doc: yamlsrc.Located, at: yamlsrc.Path, label: str) -> None:
    if not _LABEL.match(label):
        raise doc_error(doc, at, f"label {label!r}: lower-case letters, digits, _ . : -")

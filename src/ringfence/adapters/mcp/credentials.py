"""Clients' credentials at the gateway: who a client is, proven on every request.

With ``identity: {verify: true}`` in the gateway configuration a client is not given the
configured identity: it presents a signed credential (docs/identity.md) — over Streamable
HTTP as ``Authorization: Bearer <credential>``, over stdio from an environment variable or a
file — and every request verifies it with the Guard's :class:`~ringfence.runtime.identity.Verifier`
(a cached check costs well under a microsecond; revocation and expiry take effect on the
next request).  A request whose credential fails is refused with the coded reason and that
refusal is recorded as a decision (rule ``ringfence:identity``); a verified one acts as the
credential's agent, user and roles, and each call is checked by the Guard *with* the
credential, so its scope and budgets apply and the decision record carries its id.

Here: opening the verifier (:func:`open_verifier`), verifying and recording refusals
(:class:`ClientCredentials`), the stdio client's credential (:class:`StdioCredential`, which
the stdio :class:`~ringfence.adapters.mcp.gateway.Connection` reads on every request) and
what a refused HTTP request asked for (:func:`describe_request`).  The transports use them in
``server.py`` and ``run.py``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ringfence.adapters.mcp.config import GatewayConfig, Identity
from ringfence.adapters.mcp.gateway import GatewayError
from ringfence.adapters.mcp.results import CREDENTIAL_REFUSED, credential_error
from ringfence.core.action import Action, ActionKind, argument_problem
from ringfence.errors import ConfigError, IdentityError
from ringfence.runtime.guard import IDENTITY_RULE, Guard
from ringfence.runtime.identity import VerifiedCredential, Verifier

__all__ = [
    "CREDENTIAL_REFUSED",
    "ClientCredentials",
    "StdioCredential",
    "close_verifier",
    "describe_request",
    "open_verifier",
    "stdio_credential",
]

log = logging.getLogger("ringfence.gateway")

MAX_CREDENTIAL_BYTES = 64 << 10
DEFAULT_AUDIENCE = "ringfence"
_decode = msgspec.json.decode


def open_verifier(config: GatewayConfig) -> Verifier | None:
    """The Verifier for clients' credentials, or None when ``identity.verify`` is off.

    The registry must exist (``ringfence identity create`` makes it).  Refuses a
    configuration that would hand a stdio client's credential, read from the environment,
    to an upstream server started with ``inherit_env``.
    """
    ident = config.identity
    if not ident.verify:
        return None
    env = ident.stdio_env
    if env is not None and os.environ.get(env):
        leaky = sorted(name for name, s in config.servers.items() if s.inherit_env)
        if leaky:
            raise ConfigError(
                f"server {leaky[0]!r} inherits the environment and would receive the "
                f"client's credential in {env}: set its inherit_env to false or use "
                "identity.credential_file",
                code="config.identity",
            )
    folder = config.registry_path
    if not (folder / "registry.sqlite").exists():
        raise ConfigError(
            f"identity.verify is on but there is no identity registry in {folder} "
            "(`ringfence identity create` makes one)",
            code="config.identity",
        )
    from ringfence.stores.identity import SQLiteIdentityRegistry

    registry = SQLiteIdentityRegistry(folder)
    try:
        return Verifier(registry, audience=ident.audience or DEFAULT_AUDIENCE)
    except BaseException:
        registry.close()
        raise


def close_verifier(verifier: Verifier | None) -> None:
    """Close the registry :func:`open_verifier` opened."""
    close = getattr(verifier.registry, "close", None) if verifier is not None else None
    if close is not None:
        close()


class ClientCredentials:
    """Verifies clients' credentials with the Guard's verifier and records refusals."""

    def __init__(
        self, guard: Guard, config: GatewayConfig, *, clock: Callable[[], int] = time.time_ns
    ) -> None:
        """``clock``: ns since the epoch; the Guard's (a test's clock), so both agree."""
        verifier = guard.verifier
        if verifier is None:
            raise ConfigError("identity.verify is on but the Guard has no credential verifier")
        self.guard = guard
        self.verifier = verifier
        self.unverified = config.identity
        self.clock = clock

    def verify(self, credential: str | None) -> VerifiedCredential:
        """The verified credential, or IdentityError with its coded reason (never raises
        anything else: a failure of the verifier is ``credential.error``)."""
        try:
            return self.verifier.verify(credential, self.clock())
        except IdentityError:
            raise
        except Exception:
            log.exception("credential verification failed")
            raise IdentityError("verification failed", code="credential.error") from None

    @staticmethod
    def identity(verified: VerifiedCredential) -> Identity:
        """Who a verified credential says the client is."""
        return Identity(agent=verified.agent, roles=verified.roles, user=verified.user)

    def refuse(
        self,
        problem: IdentityError,
        kind: str,
        tool: str,
        args: dict[str, Any],
        session: str | None = None,
    ) -> GatewayError:
        """Record the refusal of a request whose credential failed; the client's error.

        The record names the configured identity (nothing verified is known about the
        caller), the request's method or tool and its arguments (if they are plain JSON).
        """
        problem_args = argument_problem(args, self.guard.policy.limits)
        if problem_args is not None:
            args = {"[invalid]": problem_args}
        ident = self.unverified
        action = Action(
            kind=kind,
            tool=tool,
            args=args,
            agent=ident.agent,
            roles=ident.roles,
            user=ident.user,
            session=session,
            time_ns=self.clock(),
        )
        decision = self.guard.refuse(action, IDENTITY_RULE, problem.reason)
        return credential_error(problem.reason, problem.code, decision)


class StdioCredential:
    """The stdio client's credential: an environment variable (read once: it cannot change)
    or a file, read again whenever its size, time or inode changes, so a credential can be
    renewed without restarting the gateway."""

    def __init__(self, config: GatewayConfig) -> None:
        ident = config.identity
        self.file: Path | None = None
        self._value: str | None = None
        self._stamp: tuple[int, int, int] | None = None
        if ident.credential_file is not None:
            self.file = config.path(ident.credential_file)
        elif ident.stdio_env is not None:
            self._value = os.environ.get(ident.stdio_env, "").strip() or None
            if self._value is None:
                log.warning(
                    "identity.verify is on but %s is not set: every request will be refused "
                    "(credential.missing)",
                    ident.stdio_env,
                )

    def current(self) -> str | None:
        """The credential to present now (None: there is none)."""
        if self.file is None:
            return self._value
        try:
            st = os.stat(self.file)
        except OSError:
            self._stamp = self._value = None
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                with open(self.file, "rb") as f:
                    data = f.read(MAX_CREDENTIAL_BYTES + 1)
                text = data.decode("ascii").strip() if len(data) <= MAX_CREDENTIAL_BYTES else ""
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("cannot read the credential file %s: %s", self.file, exc)
                text = ""
            self._value = text or None
        return self._value


def stdio_credential(config: GatewayConfig) -> Callable[[], str | None] | None:
    """What the stdio client presents (for :class:`Connection`'s ``credential``): a reader of
    the configured variable or file, or None when ``identity.verify`` is off."""
    return StdioCredential(config).current if config.identity.verify else None


def describe_request(body: bytes | None, verb: str) -> tuple[Any, str, str, dict[str, Any]]:
    """What a refused HTTP request asked for: ``(JSON-RPC id, kind, tool, args)``.

    A ``tools/call`` is the tool call it names (``tool_call``, the tool, its arguments);
    any other JSON-RPC request is an ``mcp_request`` named by its method, with its params
    (``_meta`` left out); a request that is not one JSON-RPC message is named by the HTTP
    method (``GET``, ``DELETE``, …).
    """
    message: Any = None
    if body:
        try:
            message = _decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            message = None
    if type(message) is not dict or type(message.get("method")) is not str:
        return None, ActionKind.MCP_REQUEST, verb, {}
    rid = message.get("id")
    if type(rid) not in (str, int):
        rid = None
    method: str = message["method"][:256]
    params = message.get("params")
    params = params if type(params) is dict else {}
    name = params.get("name")
    if method == "tools/call" and type(name) is str:
        arguments = params.get("arguments")
        return rid, ActionKind.TOOL_CALL, name[:256], arguments if type(arguments) is dict else {}
    return rid, ActionKind.MCP_REQUEST, method, {k: v for k, v in params.items() if k != "_meta"}

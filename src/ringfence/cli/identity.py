"""``ringfence identity``: create, list, issue, delegate, verify, rotate, revoke, jwks.

The registry is ``<data>/identity`` (SQLite plus private key files, see
ringfence.stores.identity).  Credentials are printed to stdout and read from a file or
``-`` (stdin), so they can be piped: ``ringfence identity issue planner --tool 'read_*' |
ringfence identity delegate - researcher --tool read_file``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import IO, Any

import click

from ringfence.errors import IdentityError, InputError

DATA_HELP = "Ringfence data folder (the registry is its identity/ folder)."
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _registry(data: str, *, create: bool = False) -> Any:
    from ringfence.stores.identity import SQLiteIdentityRegistry

    folder = Path(data) / "identity"
    if not create and not (folder / "registry.sqlite").exists():
        raise IdentityError(
            f"no identity registry in {folder} (create an agent first)", code="identity.not_found"
        )
    return SQLiteIdentityRegistry(folder)


def _authority(data: str, trust_domain: str | None = None, *, create: bool = False) -> Any:
    from ringfence.runtime.authority import Authority

    return Authority(_registry(data, create=create), trust_domain=trust_domain)


def _ttl(text: str) -> int:
    m = _TTL.match(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise InputError(f"{text!r} is not a duration (900, 90s, 15m, 1h, 1d)", code="input.ttl")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _budgets(items: tuple[str, ...]) -> dict[str, int | float] | None:
    if not items:
        return None
    out: dict[str, int | float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"{item!r}: write --budget name=number", code="input.budget")
    return out


def _read(source: IO[str]) -> str:
    text = source.read().strip()
    if not text:
        raise IdentityError("no credential on input", code="credential.missing")
    return text


def _when(ns: int | None) -> str:
    return "" if ns is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9))


@click.group()
def identity() -> None:
    """Agent identities, credentials, delegation, key rotation and revocation."""


@identity.command()
@click.argument("name")
@click.option("--trust-domain", help="Trust domain of a new registry (e.g. corp.example).")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def create(name: str, trust_domain: str | None, data: str) -> None:
    """Register agent NAME with a new Ed25519 key pair; prints its id."""
    authority = _authority(data, trust_domain, create=True)
    record = authority.create_agent(name)
    click.echo(record.id)
    click.echo(f"  key {record.kid}", err=True)


@identity.command("list")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_(data: str, as_json: bool) -> None:
    """List agents and keys, with what is retired or revoked."""
    from ringfence.core.identity.records import RING

    state = _registry(data).state()
    revoked = {(r.kind, r.id): r for r in state.revocations}
    agents = [
        {
            "id": a.id,
            "kid": a.kid,
            "created": _when(a.created_ns),
            "status": "revoked" if ("agent", a.id) in revoked else "active",
        }
        for a in state.agents
    ]
    keys = [
        {
            "kid": k.kid,
            "owner": "(key ring)" if k.owner == RING else k.owner,
            "created": _when(k.created_ns),
            "status": "revoked"
            if ("key", k.kid) in revoked
            else ("active" if k.retired_ns is None else f"retired {_when(k.retired_ns)}"),
        }
        for k in state.keys
    ]
    credentials = [r.id for r in state.revocations if r.kind == "credential"]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "trust_domain": state.trust_domain,
                    "agents": agents,
                    "keys": keys,
                    "revoked_credentials": credentials,
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"trust domain: {state.trust_domain}")
    table = Table("agent", "key", "created (UTC)", "status")
    for a in agents:
        table.add_row(a["id"], a["kid"], a["created"], a["status"])
    console.print(table)
    table = Table("key", "owner", "created (UTC)", "status")
    for k in keys:
        table.add_row(k["kid"], k["owner"], k["created"], k["status"])
    console.print(table)
    if credentials:
        console.print(f"revoked credentials: {', '.join(credentials)}")


_scope_options = [
    click.option("--tool", "tools", multiple=True, help="Tool name or glob (repeatable)."),
    click.option(
        "--resource", "resources", multiple=True, help="type:glob, e.g. path:/data/** (repeatable)."
    ),
    click.option("--role", "roles", multiple=True, help="Role (repeatable)."),
    click.option("--budget", "budgets", multiple=True, help="name=number, e.g. max_calls=100."),
    click.option("--audience", "audience", multiple=True, help="Audience (repeatable)."),
    click.option("--delegable", type=int, help="How many levels of delegation may follow."),
]


def _with_scope(fn: Any) -> Any:
    for option in reversed(_scope_options):
        fn = option(fn)
    return fn


@identity.command()
@click.argument("agent")
@_with_scope
@click.option("--user", help="The user the agent acts for.")
@click.option("--ttl", default="15m", show_default=True, help="Lifetime (900, 15m, 1h).")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def issue(
    agent: str,
    tools: tuple[str, ...],
    resources: tuple[str, ...],
    roles: tuple[str, ...],
    budgets: tuple[str, ...],
    audience: tuple[str, ...],
    delegable: int | None,
    user: str | None,
    ttl: str,
    data: str,
) -> None:
    """Issue a root credential for AGENT (a name or id), signed by the key ring."""
    if not tools:
        raise InputError("name at least one --tool", code="input.scope")
    token = _authority(data).issue(
        agent,
        tools=tools,
        resources=resources,
        roles=roles,
        budgets=_budgets(budgets),
        audience=audience or ("ringfence",),
        user=user,
        ttl_s=_ttl(ttl),
        delegable=delegable or 0,
    )
    click.echo(token)


@identity.command()
@click.argument("credential", type=click.File("r"))
@click.argument("agent")
@_with_scope
@click.option("--ttl", help="Lifetime (default: the parent's remaining lifetime).")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def delegate(
    credential: IO[str],
    agent: str,
    tools: tuple[str, ...],
    resources: tuple[str, ...],
    roles: tuple[str, ...],
    budgets: tuple[str, ...],
    audience: tuple[str, ...],
    delegable: int | None,
    ttl: str | None,
    data: str,
) -> None:
    """Extend the chain in CREDENTIAL ('-': stdin) with a narrower credential for AGENT,
    signed by the parent agent's key.  What is not given is the parent's."""
    narrower: dict[str, Any] = {
        "tools": tools or None,
        "resources": resources or None,
        "roles": roles or None,
        "budgets": _budgets(budgets),
        "audience": audience or None,
        "delegable": delegable,
        "ttl_s": None if ttl is None else _ttl(ttl),
    }
    click.echo(_authority(data).delegate(_read(credential), agent, **narrower))


@identity.command()
@click.argument("credential", type=click.File("r"), default="-")
@click.option(
    "--audience", default="ringfence", show_default=True, help="Verify for this audience."
)
@click.option("--tool", help="Also check that this tool is in scope.")
@click.option("--resource", "resources", multiple=True, help="type:value to check (repeatable).")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the verified claims as JSON.")
def verify(
    credential: IO[str],
    audience: str,
    tool: str | None,
    resources: tuple[str, ...],
    data: str,
    as_json: bool,
) -> None:
    """Verify CREDENTIAL ('-': stdin) now; exit 0 if valid, 1 with the coded reason if not."""
    from ringfence.core.action import Resource
    from ringfence.runtime.identity import Verifier

    verifier = Verifier(_registry(data), audience=audience)
    try:
        verified = verifier.verify(_read(credential), time.time_ns())
        if any(":" not in r for r in resources):
            raise InputError("write --resource type:value", code="input.resource")
        res = tuple(Resource(*r.split(":", 1)) for r in resources)
        problem = verified.outside_scope(tool, res)
        if problem is not None:
            raise problem
    except IdentityError as exc:
        click.echo(f"DENY {exc.reason}")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({**verified.view, "chain": list(verified.chain.agents)}, indent=2))
    else:
        click.echo(f"OK {verified.agent}")
        for ancestor in reversed(verified.delegation):
            click.echo(f"  delegated by {ancestor}")
        click.echo(f"  user {verified.user}  expires {_when(verified.view['exp'] * 10**9)} UTC")


@identity.command()
@click.option("--agent", help="Rotate this agent's key instead of the key ring's.")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def rotate(agent: str | None, data: str) -> None:
    """Add a new signing key; the old one verifies what it signed until that expires."""
    authority = _authority(data)
    key = authority.rotate() if agent is None else authority.rotate_agent(agent)
    click.echo(key.kid)


@identity.command()
@click.argument("agent", required=False)
@click.option("--key", "kid", help="Revoke this key id instead.")
@click.option(
    "--credential", "credential", type=click.File("r"), help="Revoke this credential ('-': stdin)."
)
@click.option("--jti", help="Revoke the credential with this id.")
@click.option("--reason", default="", help="Why (recorded in the registry).")
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def revoke(
    agent: str | None,
    kid: str | None,
    credential: IO[str] | None,
    jti: str | None,
    reason: str,
    data: str,
) -> None:
    """Revoke AGENT, a --key, a --credential or a --jti; effective on the next check."""
    chosen = [x for x in (agent, kid, credential, jti) if x is not None]
    if len(chosen) != 1:
        raise InputError(
            "name exactly one of AGENT, --key, --credential, --jti", code="input.usage"
        )
    authority = _authority(data)
    if agent is not None:
        done = authority.revoke_agent(agent, reason)
    elif kid is not None:
        done = authority.revoke_key(kid, reason)
    else:
        text = _read(credential) if credential is not None else str(jti)
        done = authority.revoke_credential(text, reason)
    click.echo(f"revoked {done.kind} {done.id}")


@identity.command()
@click.option("--data", default=".ringfence", show_default=True, help=DATA_HELP)
def jwks(data: str) -> None:
    """Print the key ring's public keys as a JSON Web Key Set, for other services."""
    click.echo(json.dumps(_authority(data).jwks(), indent=2))

"""``ringfence init``: write the default policy pack into a folder and prove that it loads."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from ringfence.pack import (
    BASELINE,
    DEFAULT_ALLOWED_HOSTS,
    DEFAULT_INTERNAL_DOMAINS,
    FAMILIES,
    SETTINGS,
    families,
    render,
)

EXIT_REFUSED = 1


def _settings(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = int(raw.strip())
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: write NAME=NUMBER (settings: {', '.join(SETTINGS)})",
                param_hint="'--set'",
            ) from None
    return out


@click.command()
@click.option(
    "--family",
    "chosen",
    multiple=True,
    type=click.Choice(families()),
    help="A tool family to write (repeatable; default: all).",
)
@click.option("--all", "all_families", is_flag=True, help="Write every family.")
@click.option(
    "--out",
    default="policy",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write into (created if missing).",
)
@click.option(
    "--internal-domain",
    "internal_domains",
    multiple=True,
    metavar="DOMAIN",
    help=f"Your organisation's e-mail domain (repeatable; default {DEFAULT_INTERNAL_DOMAINS[0]}).",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST",
    help=f"A host HTTP writes may go to, or *.domain (default {DEFAULT_ALLOWED_HOSTS[0]}).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="NAME=N",
    help=f"A threshold ({', '.join(SETTINGS)}; repeatable).",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(
    chosen: tuple[str, ...],
    all_families: bool,
    out: Path,
    internal_domains: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
    settings: tuple[str, ...],
    force: bool,
) -> None:
    """Write the default policy pack (one YAML file per tool family, plus baseline.yaml)
    into --out, then load it to prove it is valid.  Review the parameters at the top of
    each file before you use it."""
    from ringfence.core.policy.load import load_policy
    from ringfence.errors import PolicyError

    if chosen and all_families:
        raise click.UsageError("give --family NAME ... or --all, not both")
    files = render(
        list(chosen) if chosen else families(),
        internal_domains=internal_domains or DEFAULT_INTERNAL_DOMAINS,
        allowed_hosts=allowed_hosts or DEFAULT_ALLOWED_HOSTS,
        settings=_settings(settings),
    )
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        click.echo(
            f"error: {', '.join(existing)} already exist in {out} (use --force to overwrite)",
            err=True,
        )
        sys.exit(EXIT_REFUSED)
    others = sorted(
        p.name for p in [*out.glob("*.yaml"), *out.glob("*.yml")] if p.name not in files
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in files]
    for path in paths:
        path.write_text(files[path.name], encoding="utf-8")
    try:
        policy = load_policy(paths)
    except PolicyError as exc:
        click.echo(exc.diagnostics(), err=True)
        sys.exit(EXIT_REFUSED)

    rules = Counter(Path(r.where.source).name for r in policy.rules)
    effects = Counter((Path(r.where.source).name, r.effect.value) for r in policy.rules)
    tools = Counter(Path(t.where.source).name for t in policy.tools.values())
    click.echo(f"wrote {len(paths)} files to {out}/:")
    for path in paths:
        family = path.stem
        what = FAMILIES.get(family, "session-wide loop and call caps for every tool")
        counts = ", ".join(
            f"{effects[path.name, e]} {e}"
            for e in ("allow", "require_approval", "deny")
            if effects[path.name, e]
        )
        tools_text = f"{tools[path.name]} tools, " if family != BASELINE else ""
        click.echo(f"  {path.name:<16} {tools_text}{rules[path.name]} rules ({counts}) - {what}")
    click.echo(
        f"ok: loads as one policy: {len(policy.rules)} rules, {len(policy.tools)} tools, "
        f"version {policy.version}"
    )
    if not internal_domains or not allowed_hosts:
        click.echo(
            "note: placeholders in use - set --internal-domain and --allow-host "
            "(or edit the parameters at the top of each file)"
        )
    if others:
        click.echo(f"note: {out} also holds {', '.join(others)}; a folder loads every *.yaml in it")

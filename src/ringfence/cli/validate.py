"""``ringfence validate``: load errors with file:line, then lint warnings."""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("policies", nargs=-1, required=True, type=click.Path())
@click.option("--strict", is_flag=True, help="Exit 1 when there are warnings, too.")
def validate(policies: tuple[str, ...], strict: bool) -> None:
    """Check POLICIES (files or folders): every load error, then shadowed, unreachable and
    over-broad rules."""
    from ringfence.core.policy.lint import lint
    from ringfence.core.policy.load import PolicyErrors, load_policy
    from ringfence.errors import PolicyError

    try:
        policy = load_policy(list(policies))
    except PolicyErrors as exc:
        for err in exc.errors:
            click.echo(f"error[{err.code}]: {err.message}", err=True)
        click.echo(f"{len(exc.errors)} error(s)", err=True)
        sys.exit(1)
    except PolicyError as exc:
        click.echo(exc.diagnostics(), err=True)
        sys.exit(1)
    warnings = lint(policy.spec)
    for w in warnings:
        click.echo(str(w))
    click.echo(
        f"ok: {len(policy.rules)} rules, {len(policy.tools)} tools, version {policy.version}"
        + (f", {len(warnings)} warning(s)" if warnings else "")
    )
    if strict and warnings:
        sys.exit(1)

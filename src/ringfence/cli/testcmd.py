"""``ringfence test``: run policy test files (action → expected effect and rules)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-v", "--verbose", is_flag=True, help="List passing cases too.")
def test(paths: tuple[str, ...], verbose: bool) -> None:
    """Run the policy tests in PATHS (YAML files, or folders of *_test.yaml / *.test.yaml)."""
    from ringfence.testing.policy_tests import load_cases, run_cases

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted({*p.rglob("*_test.yaml"), *p.rglob("*.test.yaml")}))
        else:
            files.append(p)
    if not files:
        click.echo("no test files found", err=True)
        sys.exit(2)
    passed = failed = 0
    by_effect: dict[str, int] = {}
    for f in files:
        policy, cases = load_cases(f)
        for r in run_cases(policy, cases):
            by_effect[r.case.expect.value] = by_effect.get(r.case.expect.value, 0) + 1
            where = f"{r.case.source}:{r.case.line}"
            if r.passed:
                passed += 1
                if verbose:
                    click.echo(f"PASS {where} {r.case.name}")
            else:
                failed += 1
                click.echo(f"FAIL {where} {r.case.name}: {r.problem}")
    detail = ", ".join(f"{n} {e}" for e, n in sorted(by_effect.items()))
    click.echo(f"{passed} passed, {failed} failed ({detail})")
    sys.exit(1 if failed else 0)

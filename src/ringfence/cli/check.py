"""``ringfence check``: one action (JSON) against a policy → the decision."""

from __future__ import annotations

import json
import sys
from typing import IO

import click

from ringfence.errors import InputError

EXIT_BY_EFFECT = {"allow": 0, "deny": 3, "require_approval": 4}


@click.command()
@click.option(
    "-p",
    "--policy",
    "policies",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Policy file or folder (repeatable).",
)
@click.argument("action_file", type=click.File("rb"), default="-")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def check(policies: tuple[str, ...], action_file: IO[bytes], as_json: bool) -> None:
    """Decide one ACTION_FILE (JSON; '-' for stdin) against the policy.

    Exit code: 0 allow, 3 deny, 4 require_approval, 2 bad input.
    """
    from ringfence.core.policy.load import load_policy
    from ringfence.runtime.ids import new_id_source
    from ringfence.testing.policy_tests import action_from_dict

    policy = load_policy(list(policies))
    raw = action_file.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"action is not valid JSON: {exc}", code="input.json") from None
    action = action_from_dict(data)
    decision = policy.evaluate(action, new_id_source()())
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2))
    else:
        click.echo(f"{decision.effect.value}  ({', '.join(decision.rules)})")
        for reason in decision.reasons:
            click.echo(f"  reason: {reason}")
        for error in decision.errors:
            click.echo(f"  error:  {error}")
        click.echo(f"  policy: {decision.policy_version}  decision: {decision.decision_id}")
    sys.exit(EXIT_BY_EFFECT[decision.effect.value])

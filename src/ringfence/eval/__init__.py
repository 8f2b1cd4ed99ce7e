"""The scenario suite: scripted agent sessions replayed through a policy (``ringfence eval``).

:func:`~ringfence.eval.scenario.load_scenarios` reads the scenario files (the built-in suite
lives in ``scenarios/`` beside this module), :func:`~ringfence.eval.runner.run_suite` replays
them and returns a :class:`~ringfence.eval.runner.Summary`, and :func:`default_policy` compiles
the default policy pack with every tool family.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from ringfence.core.policy.engine import Policy
from ringfence.core.policy.load import load_policy
from ringfence.eval.runner import (
    ATTACKED_TARGET,
    BENIGN_TARGET,
    ScenarioResult,
    StepResult,
    Summary,
    Verdict,
    run_scenario,
    run_suite,
)
from ringfence.eval.scenario import Scenario, Step, builtin_scenarios_dir, load_scenarios

__all__ = [
    "ATTACKED_TARGET",
    "BENIGN_TARGET",
    "SUITE_ALLOWED_HOSTS",
    "SUITE_INTERNAL_DOMAINS",
    "Scenario",
    "ScenarioResult",
    "Step",
    "StepResult",
    "Summary",
    "Verdict",
    "builtin_scenarios_dir",
    "default_policy",
    "load_scenarios",
    "run_scenario",
    "run_suite",
]


SUITE_INTERNAL_DOMAINS = ("brightwave.example",)
"""The e-mail domain of the organisation the built-in scenarios take place in (Brightwave);
what its ``ringfence init --internal-domain`` would say."""
SUITE_ALLOWED_HOSTS = ("brightwave.example", "*.brightwave.example")
"""The hosts its HTTP writes may go to (its own APIs)."""


def default_policy(
    internal_domains: Sequence[str] = SUITE_INTERNAL_DOMAINS,
    allowed_hosts: Sequence[str] = SUITE_ALLOWED_HOSTS,
) -> Policy:
    """The default policy pack with all tool families and the organisation's parameters,
    rendered to a temporary folder and loaded the way ``ringfence init`` output would be."""
    from ringfence import pack

    files = pack.render(
        pack.families(), internal_domains=internal_domains, allowed_hosts=allowed_hosts
    )
    with tempfile.TemporaryDirectory(prefix="ringfence-eval-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        return load_policy(tmp)

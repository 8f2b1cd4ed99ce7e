"""OWASP coverage is derived from the loaded policy and the features switched on."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from ringfence.cli.main import cli
from ringfence.core.policy.coverage import DEMONSTRATED, RISKS, Features, owasp_coverage
from ringfence.core.policy.load import policy_from_text

RICH = textwrap.dedent(
    """
    version: 1
    tools:
      send_email: {args: {type: object, properties: {to: {type: string}}}}
      run_shell: {args: {type: object, properties: {command: {type: string}}}}
    rules:
      - {id: mail, effect: allow, tool: send_email, role: assistant}
      - id: injected-recipient
        effect: deny
        tool: send_email
        when: {arg: to, provenance: untrusted_only}
      - id: tainted
        effect: require_approval
        tool: send_email
        when: {field: labels, contains: untrusted}
      - {id: loop, effect: deny, when: {field: state.repeats, ge: 3}}
      - {id: shell, effect: require_approval, tool: run_shell}
      - {id: delete, effect: require_approval, tool: delete_everything}
      - {id: peers, effect: deny, kind: agent_message, when: {field: delegation, contains: rogue}}
    """
).lstrip("\n")
BARE = "version: 1\nrules:\n  - {id: all, effect: allow, tool: read_file}\n"


def by_risk(policy_text: str, features: Features) -> dict[str, object]:
    return {c.risk: c for c in owasp_coverage(policy_from_text(policy_text), features)}


def test_every_risk_is_reported_in_order() -> None:
    items = owasp_coverage(policy_from_text(BARE), Features())
    assert [i.risk for i in items] == list(RISKS)


def test_a_bare_policy_leaves_the_flow_risks_uncovered() -> None:
    c = by_risk(BARE, Features())
    assert c["ASI01"].rules == [] and c["ASI01"].status == "partial"  # tripwires only
    assert c["ASI03"].status == "not covered"
    assert c["ASI04"].status == "not covered"
    assert c["ASI05"].status == "not covered"
    assert c["ASI07"].status == "not covered"
    assert c["ASI08"].status == "not covered"


def test_rules_of_the_loaded_policy_are_named_where_they_apply() -> None:
    c = by_risk(RICH, Features(approver=True))
    assert c["ASI01"].rules == ["injected-recipient (deny)", "tainted (require_approval)"]
    assert c["ASI03"].rules == ["mail (allow)"]
    assert c["ASI05"].rules == ["shell (require_approval)"]
    assert c["ASI07"].rules == ["peers (deny)"]
    assert c["ASI08"].rules == ["loop (deny)"]
    assert "delete (require_approval)" in c["ASI02"].rules
    assert "approval rules exist but no approver" not in " ".join(c["ASI09"].gaps)
    c = by_risk(RICH, Features(approver=False))
    assert "approval rules exist but no approver is configured: they deny" in c["ASI09"].gaps


def test_gateway_features_cover_the_supply_chain() -> None:
    c = by_risk(BARE, Features(gateway=True, pinning="tofu", scan="quarantine"))
    asi04 = c["ASI04"]
    assert asi04.status == "covered"
    assert asi04.controls == [
        "MCP tool definitions pinned (tofu); changes quarantined",
        "tool descriptions scanned for poisoning (quarantine)",
    ]


def test_demonstrating_tests_exist() -> None:
    root = Path(__file__).parents[4]
    for risk, paths in DEMONSTRATED.items():
        for ref in paths:
            path = ref.split(" ")[0]
            if path.startswith("tests/"):
                assert (root / path).exists(), f"{risk}: {path} does not exist"


def test_cli_table_and_json(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(RICH)
    runner = CliRunner()
    done = runner.invoke(cli, ["owasp", "-p", str(policy), "--json"])
    assert done.exit_code == 0, done.output
    assert '"risk": "ASI01"' in done.output and '"status"' in done.output
    done = runner.invoke(cli, ["owasp", "-p", str(policy)])
    assert done.exit_code == 0 and "ASI10 Rogue Agents" in done.output
    done = runner.invoke(cli, ["owasp"])
    assert done.exit_code == 2 and "give a policy" in done.output


def test_a_gateway_that_verifies_credentials_covers_identity(tmp_path: Path) -> None:
    import json

    (tmp_path / "p.yaml").write_text(RICH)

    def identity_gaps(identity: str) -> list[str]:
        config = tmp_path / "gateway.yaml"
        config.write_text(f"policy: p.yaml\nservers: {{a: {{command: x}}}}\n{identity}")
        done = CliRunner().invoke(cli, ["owasp", "--gateway", str(config), "--json"])
        assert done.exit_code == 0, done.output
        items = {i["risk"]: i for i in json.loads(done.output)}
        return [g for g in items["ASI03"]["gaps"] if "credential verifier" in g]

    assert identity_gaps("") != []
    assert identity_gaps("identity: {verify: true}\n") == []
